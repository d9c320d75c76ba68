"""Facts of a namespace: settings that decide what the stored state means, so every
worker of the namespace must share them (docs/decisions.md, S9). The time zone
(streams.state.timezone), the pseudonym key (streams.privacy), the segment map and
whether the spend cells are whole (here) are claimed the one way this module gives.

The first worker stores its value (SET NX: two workers starting at once agree on one).
A namespace that applied events before the fact was kept holds what rtba did then, the
``before`` value, whatever the worker's setting: that is what its state means.
"""

from __future__ import annotations

from streams.errors import ConfigError
from streams.state.keys import Keys

# Segment names given before S9 were the classic map's (repeat-aware came with S9)
MAP_BEFORE = "classic"


def text(value) -> str | None:
    """A Redis reply as text (clients with and without decode_responses)."""
    return value.decode() if isinstance(value, bytes) else value


def stored(client, key: str) -> str | None:
    """The namespace's value of one fact, or None when no worker has claimed it."""
    return text(client.get(key))


def claim(client, namespace: str, key: str, mine: str, before: str) -> str:
    """Store ``mine`` as the namespace's value of the fact kept at ``key`` unless it has
    one, and return the value in force (the caller refuses a value other than its own).

    ``before``: the value a namespace that applied events without the fact holds.
    """
    if client.get(key) is None:
        # events applied before the fact was kept were applied under the old behaviour
        stats = Keys(namespace).stats_keys
        applied = any(client.hget(key, "applied") is not None for key in stats)
        client.set(key, before if applied else mine, nx=True)
    return stored(client, key)


class SegmentMapMismatch(ConfigError):
    """RTBA_SEGMENT_MAP is not the map the namespace's segment names are given under."""


def claim_segment_map(settings, client) -> str:
    """A worker's start: store its RTBA_SEGMENT_MAP as the namespace's if it has none, and
    return it; raise SegmentMapMismatch when the namespace names segments under another
    map (two maps would relabel the same customers back and forth at each event)."""
    namespace = settings.namespace
    held = claim(client, namespace, Keys(namespace).segment_map, settings.segment_map,
                 MAP_BEFORE)  # fmt: skip
    if held != settings.segment_map:
        raise SegmentMapMismatch(
            f"namespace {namespace!r} names segments under the {held} map, not "
            f"RTBA_SEGMENT_MAP={settings.segment_map}: set RTBA_SEGMENT_MAP={held}, or replay "
            "the events into a fresh namespace to name them under another map"
        )
    return held


def segment_map_in_force(settings, client) -> str:
    """The map readers (CLI, API) segment under: the namespace's once a worker claimed
    one, else their own setting (nothing stored, nothing to disagree with). Never writes:
    the API's Redis user is read-only."""
    return stored(client, Keys(settings.namespace).segment_map) or settings.segment_map


KEPT = "kept"
# Families the writers keep whole from a namespace's first event on (streams.state.facts):
# the spend cells (Gamma-Gamma is fitted on them, else on the customer sample) and the
# day cells' members in the index (a new churn model wakes them by cell, else by a walk).
WHOLE_FAMILIES = ("spend_cells", "cell_members")


def claim_whole(client, namespace: str) -> dict[str, bool]:
    """A worker's start: mark each family of WHOLE_FAMILIES ``kept`` in a namespace that
    has applied no event yet (every write adds its customer's part); one that applied
    events before the family was kept is ``missing`` until `rtba verify --repair`
    rewrites it from the walk (mark_whole). Returns family -> whether it is whole."""
    keys = Keys(namespace)
    return {family: claim(client, namespace, getattr(keys, family), KEPT, "missing") == KEPT
            for family in WHOLE_FAMILIES}  # fmt: skip


def mark_whole(client, namespace: str) -> None:
    """Every family is whole: `rtba verify --repair` found or rewrote them from the walk of
    every stored state."""
    keys = Keys(namespace)
    for family in WHOLE_FAMILIES:
        client.set(getattr(keys, family), KEPT)


def is_whole(client, namespace: str, family: str) -> bool:
    """Whether ``family`` (one of WHOLE_FAMILIES) holds every customer."""
    return stored(client, getattr(Keys(namespace), family)) == KEPT

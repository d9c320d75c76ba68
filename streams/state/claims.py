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
        applied = client.hget(Keys(namespace).stats, "applied") is not None
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


SPEND_CELLS_KEPT = "kept"


def claim_spend_cells(client, namespace: str) -> bool:
    """A worker's start: mark a namespace that has applied no event yet as keeping whole
    spend cells (streams.state.facts; every write adds its customer's); one that applied
    events before them is ``missing`` until `rtba verify --repair` rewrites the cells
    (mark_spend_cells_kept). Returns whether the cells are whole."""
    held = claim(client, namespace, Keys(namespace).spend_cells, SPEND_CELLS_KEPT, "missing")
    return held == SPEND_CELLS_KEPT


def mark_spend_cells_kept(client, namespace: str) -> None:
    """The spend cells are whole: `rtba verify --repair` found or rewrote them from the
    walk of every stored state."""
    client.set(Keys(namespace).spend_cells, SPEND_CELLS_KEPT)


def spend_cells_kept(client, namespace: str) -> bool:
    """Whether the churn refit may fit Gamma-Gamma on the spend cells (else the sample)."""
    return stored(client, Keys(namespace).spend_cells) == SPEND_CELLS_KEPT

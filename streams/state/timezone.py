"""The namespace's time zone: RTBA_TIMEZONE decides what a purchase day is, so it is a
fact of the namespace, not of one process (docs/decisions.md, S9).

The first worker stores its zone in ``{ns}:timezone`` (SET NX: two workers starting at
once agree on one); a worker with another zone refuses to start with one line (exit 2)
rather than count the same customers' days two ways. A namespace that counted events
before zones existed holds UTC days, so that is what it is taken to have.
"""

from __future__ import annotations

from streams.errors import ConfigError
from streams.state.claims import claim
from streams.state.keys import Keys


class TimezoneMismatch(ConfigError):
    """RTBA_TIMEZONE is not the zone the namespace's purchase days were counted in."""


def claim_timezone(settings, client) -> str:
    """Store this process's zone as the namespace's if it has none, and return it; raise
    TimezoneMismatch when the namespace already counts days in another zone."""
    zone = settings.days().name  # the zone's canonical name: "Etc/UTC" and "UTC" are one
    # events counted before this setting existed were counted in UTC days
    stored = claim(client, settings.namespace, Keys(settings.namespace).timezone, zone, "UTC")
    if stored != zone:
        raise TimezoneMismatch(
            f"namespace {settings.namespace!r} counts purchase days in {stored}, not "
            f"RTBA_TIMEZONE={settings.timezone}: set RTBA_TIMEZONE={stored}, or replay the "
            "events into a fresh namespace to count them in another zone"
        )
    return stored

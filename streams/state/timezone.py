"""The namespace's time zone: RTBA_TIMEZONE decides what a purchase day is, so it is a
fact of the namespace, not of one process (docs/decisions.md, S9).

The first worker stores its zone in ``{ns}:timezone`` (SET NX: two workers starting at
once agree on one); a worker with another zone refuses to start with one line (exit 2)
rather than count the same customers' days two ways. A namespace that counted events
before zones existed holds UTC days, so that is what it is taken to have.
"""

from __future__ import annotations

from streams.errors import ConfigError
from streams.state.keys import Keys


class TimezoneMismatch(ConfigError):
    """RTBA_TIMEZONE is not the zone the namespace's purchase days were counted in."""


def _text(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def claim_timezone(settings, client) -> str:
    """Store this process's zone as the namespace's if it has none, and return it; raise
    TimezoneMismatch when the namespace already counts days in another zone."""
    keys = Keys(settings.namespace)
    zone = settings.days().name  # the zone's canonical name: "Etc/UTC" and "UTC" are one
    if client.get(keys.timezone) is None:
        # events counted before this setting existed were counted in UTC days
        counted = client.hget(keys.stats, "applied") is not None
        client.set(keys.timezone, "UTC" if counted else zone, nx=True)
    stored = _text(client.get(keys.timezone))
    if stored != zone:
        raise TimezoneMismatch(
            f"namespace {settings.namespace!r} counts purchase days in {stored}, not "
            f"RTBA_TIMEZONE={settings.timezone}: set RTBA_TIMEZONE={stored}, or replay the "
            "events into a fresh namespace to count them in another zone"
        )
    return stored

"""Calendar days in the shop's time zone (RTBA_TIMEZONE), for purchase days and the order
horizon's midnight.

A day is a local calendar date, numbered as days since 1970-01-01 (so in UTC the number
is ``ts // MS_PER_DAY``), and lasts from one local midnight to the next: 23 or 25 hours
on a daylight-saving change. Only what is counted per calendar day uses it (x, the
purchase days, the first purchase day's value, where orders are sealed); recency,
t_x, T and audience windows are elapsed time and do not depend on the zone
(docs/decisions.md, S9).

This is a hot path (every order change re-derives the purchase days of a customer's
orders), so a zone's UTC offset is looked up once per UTC day and cached; only the
few UTC days holding a change of offset are computed instant by instant.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

MS_PER_DAY = 86_400_000
_EPOCH = date(1970, 1, 1)
_MS = timedelta(milliseconds=1)


class Days:
    """Day numbers in UTC: the default, and exactly the day numbers before RTBA_TIMEZONE.

    >>> UTC_DAYS.of(0), UTC_DAYS.of(MS_PER_DAY - 1), UTC_DAYS.start_ms(2)
    (0, 0, 172800000)
    """

    name = "UTC"

    def of(self, ts_ms: int) -> int:
        """The day number of an epoch-millisecond time."""
        return ts_ms // MS_PER_DAY

    def start_ms(self, day: int) -> int:
        """The first instant (epoch ms) of day number ``day``."""
        return day * MS_PER_DAY


UTC_DAYS = Days()


class LocalDays(Days):
    """Day numbers of the local calendar dates of an IANA time zone.

    >>> ny = LocalDays("America/New_York")
    >>> t = 1_700_006_400_000  # 2023-11-15 00:00 UTC: 19:00 the day before in New York
    >>> ny.of(t) == UTC_DAYS.of(t) - 1, ny.of(t - 120_000) == ny.of(t)
    (True, True)
    >>> ny.start_ms(ny.of(t)) == t - 19 * 3_600_000
    True
    """

    def __init__(self, zone: str | tzinfo) -> None:
        self.zone = ZoneInfo(zone) if isinstance(zone, str) else zone
        self.name = str(self.zone)
        # UTC day -> its offset (ms) when one offset holds all day, else None
        self._day_offset = lru_cache(maxsize=4096)(self._offset_of_utc_day)

    def _offset_ms(self, ts_ms: int) -> int:
        when = datetime.fromtimestamp(ts_ms // 1000, self.zone)
        return when.utcoffset() // _MS

    def _offset_of_utc_day(self, utc_day: int) -> int | None:
        start = utc_day * MS_PER_DAY
        first, last = self._offset_ms(start), self._offset_ms(start + MS_PER_DAY - 1)
        return first if first == last else None

    def of(self, ts_ms: int) -> int:
        offset = self._day_offset(ts_ms // MS_PER_DAY)
        if offset is None:  # the offset changes during this UTC day: ask for this instant
            offset = self._offset_ms(ts_ms)
        return (ts_ms + offset) // MS_PER_DAY

    def start_ms(self, day: int) -> int:
        # A midnight skipped by a change (clocks 00:00 -> 01:00) reads with the offset before
        # it (PEP 495, fold=0), which lands on the day's first instant, 01:00.
        midnight = datetime.combine(_EPOCH + timedelta(days=day), time(0), self.zone)
        return (midnight - datetime(1970, 1, 1, tzinfo=UTC)) // _MS


def day_number(iso_date: str) -> int:
    """The day number of a local date written in ISO (the same in every calendar: day 0
    is 1970-01-01). Raises ``ValueError`` for text that is not one.

    >>> day_number("1970-01-02"), day_number("2026-01-10")
    (1, 20463)
    """
    return (date.fromisoformat(iso_date) - _EPOCH).days


def days_in(zone: str) -> Days:
    """The day numbers of an IANA zone name; UTC's own arithmetic for UTC (the default),
    so a UTC namespace computes exactly what it did before time zones. Raises
    ``ValueError`` for a name the zone database does not hold.

    >>> days_in("UTC") is UTC_DAYS, days_in("Europe/Paris").name
    (True, 'Europe/Paris')
    >>> days_in("Mars/Olympus")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown time zone 'Mars/Olympus': expected an IANA name such as ...
    """
    if zone in ("UTC", "Etc/UTC", "Z"):
        return UTC_DAYS
    try:
        return LocalDays(zone)
    except (ValueError, OSError, KeyError) as e:  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(
            f"unknown time zone {zone!r}: expected an IANA name such as Europe/Paris or "
            "America/New_York"
        ) from e

"""RFM scores (1-5) and the named RFM segments.

Scores come from ascending bin edges: a value is scored by how many edges it
reaches. Recency is reversed (recent is good). Segments come from a segment map,
a complete, non-overlapping grid over R and FM, where FM = round-half-up of
(F + M) / 2, so every one of the 125 (R, F, M) cells maps to exactly one segment.
The default map, "repeat-aware", first sets one-time buyers (one order) apart by
recency alone, so that the grid's names (At Risk, Loyal, ...) mean repeat buyers;
"classic" is the grid for everyone (docs/segments.md has both tables).
"""

from __future__ import annotations

import copy
from bisect import bisect_right
from collections.abc import Sequence

from online_models.days import MS_PER_DAY, UTC_DAYS, day_number, days_in

# The classic map. Rows: R = 5 .. 1; columns: FM = 1 .. 5.
_GRID = {
    5: ("New", "Potential Loyalists", "Potential Loyalists", "Champions", "Champions"),
    4: ("Promising", "Potential Loyalists", "Potential Loyalists", "Loyal", "Loyal"),
    3: ("About to Sleep", "About to Sleep", "Need Attention", "Loyal", "Loyal"),
    2: ("Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"),
    1: ("Lost", "Lost", "At Risk", "At Risk", "Can't Lose Them"),
}
# The repeat-aware map: repeat buyers (two orders or more) on the classic grid, except
# that nobody with a second order is "New" (R = 5, FM = 1 is "Promising", as at R = 4) ...
_REPEAT_GRID = {**_GRID, 5: ("Promising", *_GRID[5][1:])}
# ... and one-time buyers by R alone: the F and M of a single order say nothing of loyalty.
_ONE_TIME = {5: "New", 4: "One-time Recent", 3: "One-time Lapsed", 2: "One-time Lapsed",
             1: "One-time Lapsed"}  # fmt: skip

SEGMENT_MAPS = ("repeat-aware", "classic")
DEFAULT_SEGMENT_MAP = "repeat-aware"

# Every name either map gives, in display order (one-time buyers after the repeat buyers
# of about the same recency). Names only ever get added: stored states hold them.
SEGMENTS = (
    "Champions",
    "Loyal",
    "Potential Loyalists",
    "New",
    "Promising",
    "One-time Recent",
    "Need Attention",
    "About to Sleep",
    "At Risk",
    "Can't Lose Them",
    "Hibernating",
    "Lost",
    "One-time Lapsed",
)
_ONE_TIME_ONLY = frozenset(_ONE_TIME.values()) - {"New"}


def check_segment_map(segment_map: str) -> str:
    """The map's name, or ValueError with the names there are."""
    if segment_map not in SEGMENT_MAPS:
        raise ValueError(f"segment map is one of {', '.join(SEGMENT_MAPS)}, not {segment_map!r}")
    return segment_map


def segments_of(segment_map: str = DEFAULT_SEGMENT_MAP) -> tuple[str, ...]:
    """The names a segment map gives, in display order.

    >>> len(segments_of("classic")), len(segments_of("repeat-aware"))
    (11, 13)
    """
    check_segment_map(segment_map)
    if segment_map == "classic":
        return tuple(s for s in SEGMENTS if s not in _ONE_TIME_ONLY)
    return SEGMENTS


def fm_score(f: int, m: int) -> int:
    """Combined frequency-monetary score: (F + M) / 2 rounded half up.

    >>> fm_score(4, 5), fm_score(1, 2), fm_score(3, 3)
    (5, 2, 3)
    """
    return (f + m + 1) // 2


def segment_of(r: int, f: int, m: int, orders: float | None = None, *,
               segment_map: str) -> str:  # fmt: skip
    """The named segment of an (R, F, M) score triple under ``segment_map``; the
    repeat-aware map also needs the customer's number of ``orders`` (at most one: a
    one-time buyer). The map has no default: RFMScorer's is repeat-aware, a lone default
    here would name the same scores another way.

    >>> segment_of(5, 5, 5, segment_map="classic")
    'Champions'
    >>> segment_of(1, 1, 1, segment_map="classic")
    'Lost'
    >>> segment_of(2, 5, 5, segment_map="classic")
    "Can't Lose Them"
    >>> segment_of(2, 1, 5, orders=1, segment_map="repeat-aware")
    'One-time Lapsed'
    >>> segment_of(5, 1, 1, orders=2, segment_map="repeat-aware")
    'Promising'
    """
    for score in (r, f, m):
        if not 1 <= score <= 5:
            raise ValueError(f"RFM scores are 1..5, got {(r, f, m)}")
    check_segment_map(segment_map)
    if segment_map == "classic":
        return _GRID[r][fm_score(f, m) - 1]
    if orders is None:
        raise ValueError("the repeat-aware segment map needs the number of orders")
    if orders <= 1:
        return _ONE_TIME[r]
    return _REPEAT_GRID[r][fm_score(f, m) - 1]


class RFMScorer:
    """Scores recency, frequency and monetary value on a 1-5 scale.

    Parameters
    ----------
    recency_edges
        Four ascending day counts; a recency of at most ``recency_edges[0]``
        days scores 5, above ``recency_edges[3]`` scores 1.
    frequency_edges
        Four ascending purchase counts; reaching ``frequency_edges[i]``
        purchases earns score ``i + 2``.
    monetary_edges
        Four ascending money amounts, scored like frequency.
    segment_map
        ``"repeat-aware"`` (one-time buyers named apart; the default) or ``"classic"``.
    recency_timezone
        Recency edges in whole dates of this time zone's calendar (the shop's RTBA_TIMEZONE;
        with ``recency_edges`` alone: the distances published earlier in S10, still read
        until the next refresh publishes cut dates): R compares the number of dates from the last
        purchase's date to today's with each edge, so R is the same all day long and an
        edge moves only when a cut date (or today's date) does. None: elapsed days,
        ``recency_days > edge`` (the configured edges).
    recency_cut_dates
        The adaptive edges since S10: four absolute local dates (ISO, of
        ``recency_timezone``, UTC if None), newest first. R = 5 minus the number of cut
        dates strictly after the last purchase's date, whatever the time: R never changes
        as time passes, so a silent customer has no recency crossing. ``recency_edges`` is
        then None; score through :meth:`at`.

    Examples
    --------
    >>> scorer = RFMScorer()
    >>> scorer.score(recency_days=3.0, frequency=9, monetary=2500)
    (5, 5, 5)
    >>> scorer.score(recency_days=400.0, frequency=1, monetary=20)
    (1, 1, 1)
    >>> scorer.segment(recency_days=10.0, frequency=1, monetary=20)
    'New'
    >>> scorer.segment(recency_days=200.0, frequency=1, monetary=5000)
    'One-time Lapsed'
    >>> RFMScorer(segment_map="classic").segment(recency_days=200.0, frequency=1, monetary=5000)
    'At Risk'
    """

    def __init__(
        self,
        recency_edges: Sequence[float] = (30.0, 90.0, 180.0, 365.0),
        frequency_edges: Sequence[float] = (2, 3, 5, 8),
        monetary_edges: Sequence[float] = (100.0, 300.0, 750.0, 2000.0),
        segment_map: str = DEFAULT_SEGMENT_MAP,
        recency_timezone: str | None = None,
        recency_cut_dates: Sequence[str] | None = None,
    ):
        if recency_cut_dates is not None:
            recency_timezone = recency_timezone or "UTC"
        for name, edges in (
            ("recency_edges", recency_edges),
            ("frequency_edges", frequency_edges),
            ("monetary_edges", monetary_edges),
        ):
            if len(edges) != 4 or list(edges) != sorted(edges):
                raise ValueError(f"{name} must be 4 ascending numbers, got {edges!r}")
        self.recency_edges = tuple(recency_edges)
        self.frequency_edges = tuple(frequency_edges)
        self.monetary_edges = tuple(monetary_edges)
        self.segment_map = check_segment_map(segment_map)
        self.segments = segments_of(segment_map)
        self.recency_timezone = recency_timezone
        self.recency_whole_days = recency_timezone is not None
        if self.recency_whole_days and any(e != int(e) for e in self.recency_edges):
            raise ValueError(f"whole-day recency edges must be whole, got {self.recency_edges!r}")
        self.days = days_in(recency_timezone) if self.recency_whole_days else UTC_DAYS
        self._cuts: tuple[int, tuple[int, ...]] | None = None
        self.recency_cut_dates = None
        if recency_cut_dates is not None:
            self._use_cut_dates(recency_cut_dates)

    def _use_cut_dates(self, cut_dates: Sequence[str]) -> None:
        """Absolute cut dates: their first instants, once (they never move with time)."""
        try:
            numbers = [day_number(d) for d in cut_dates]
        except (TypeError, ValueError) as error:
            raise ValueError(f"recency cut dates are ISO dates, got {cut_dates!r}") from error
        if len(numbers) != 4 or numbers != sorted(numbers, reverse=True):
            raise ValueError(f"recency cut dates are 4 dates, newest first, got {cut_dates!r}")
        self.recency_cut_dates = tuple(cut_dates)
        self.recency_edges = None  # no fixed ages: they grow with time (see at())
        self._cut_starts = tuple(self.days.start_ms(n) for n in numbers)

    def at(self, now_ms: int) -> RFMScorer:
        """The scorer that scores ``recency_days`` at event time ``now_ms`` as this one
        means it. Whole-day edges become the exact ages at ``now_ms`` of the first instant
        of their cut dates (today's date minus the edge), so ``recency_days > edge`` reads
        "the last purchase's date is more than ``edge`` dates before today's"; elapsed-day
        edges stay as they are.

        >>> day = 86_400_000
        >>> s = RFMScorer(recency_edges=(5, 15, 25, 35), recency_timezone="UTC")
        >>> s.at(45 * day + day // 2).recency_edges
        (5.5, 15.5, 25.5, 35.5)
        >>> [s.at(t).score((t - (30 * day - 1)) / day, 1, 1)[0] for t in (45 * day, 46 * day - 1)]
        [3, 3]
        """
        if not self.recency_whole_days:
            return self
        if self.recency_cut_dates is not None:
            return self._elapsed_at(now_ms, self._cut_starts)
        today = self.days.of(now_ms)
        cached = self._cuts  # (today, its cut dates' first instants): one date at a time
        if cached is None or cached[0] != today:
            cached = today, tuple(self.days.start_ms(today - int(e)) for e in self.recency_edges)
            self._cuts = cached
        return self._elapsed_at(now_ms, cached[1])

    def _elapsed_at(self, now_ms: int, cut_starts: tuple[int, ...]) -> RFMScorer:
        """An elapsed-day scorer for this instant (its edges are ages, no longer dates)."""
        scorer = copy.copy(self)
        scorer.recency_timezone, scorer.recency_whole_days = None, False
        scorer.recency_cut_dates = None
        # One division of an exact integer, as recency_days: a last purchase 1 ms before a
        # cut date's first instant is always past its edge, one on it never.
        scorer.recency_edges = tuple((now_ms - start) / MS_PER_DAY for start in cut_starts)
        return scorer

    def recency_crossings_ms(self, last_purchase_ms: int) -> list[int]:
        """The event times at which a customer silent since ``last_purchase_ms`` passes each
        recency edge (R falls by one at each): the first instant with ``recency_days > edge``
        (elapsed days), or the first instant of the date ``edge + 1`` dates after the last
        purchase's (whole days).

        >>> day = 86_400_000
        >>> RFMScorer().recency_crossings_ms(day // 2)[0] == day // 2 + 30 * day + 1
        True
        >>> RFMScorer(recency_timezone="UTC", recency_edges=(1, 2, 3, 4)).recency_crossings_ms(
        ...     day // 2) == [2 * day, 3 * day, 4 * day, 5 * day]
        True
        """
        if not self.recency_whole_days:
            return [last_purchase_ms + round(edge * MS_PER_DAY) + 1 for edge in self.recency_edges]
        if self.recency_cut_dates is not None:  # absolute dates: R never falls with time
            return []
        bought = self.days.of(last_purchase_ms)
        return [self.days.start_ms(bought + int(edge) + 1) for edge in self.recency_edges]

    def score(self, recency_days: float, frequency: float, monetary: float) -> tuple[int, int, int]:
        if self.recency_cut_dates is not None:
            raise ValueError("recency cut dates score at an instant: use .at(now_ms)")
        # A recency exactly on an edge still earns the better score.
        r = 5 - sum(1 for edge in self.recency_edges if recency_days > edge)
        f = 1 + bisect_right(self.frequency_edges, frequency)
        m = 1 + bisect_right(self.monetary_edges, float(monetary))
        return r, f, m

    def segment(self, recency_days: float, frequency: float, monetary: float) -> str:
        """The segment of a customer with ``frequency`` orders (one: a one-time buyer)."""
        scores = self.score(recency_days, frequency, monetary)
        return segment_of(*scores, orders=frequency, segment_map=self.segment_map)

    def with_edges(self, edges: dict | None) -> RFMScorer:
        """The same segment map with other edges (the adaptive ones); None: this scorer."""
        if not edges:
            return self
        return RFMScorer(**edges, segment_map=self.segment_map)

    def __repr__(self) -> str:
        return (
            f"RFMScorer(recency_edges={self.recency_edges}, "
            f"recency_cut_dates={self.recency_cut_dates}, "
            f"frequency_edges={self.frequency_edges}, monetary_edges={self.monetary_edges}, "
            f"segment_map={self.segment_map!r})"
        )

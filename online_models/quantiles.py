"""Mergeable bucket histograms for population quantiles, and the adaptive RFM
edges derived from them.

A histogram counts customers per bucket. Buckets are fixed functions of the
value, so histograms from any number of workers merge by adding counts, and a
customer whose value moves is a -1 in one bucket and +1 in another: the
population's distribution is kept exactly, at bucket resolution, with no
per-worker guess. Linear buckets suit integers and day numbers; log buckets
(DDSketch-style, relative accuracy ``alpha``) suit money.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal

import numpy as np

from online_models.days import MS_PER_DAY, UTC_DAYS, Days


class BucketHistogram:
    """Counts per bucket, mergeable with ``+=``.

    Parameters
    ----------
    kind
        ``"linear"`` (bucket = floor(value / width)) or ``"log"`` (bucket = ceil(log_g(value));
        values <= 0 share one bucket). The log grid has a whole number of buckets per power
        of ten, g = 10^(1/n) with n the nearest to (1 + alpha) / (1 - alpha), so a change of
        money unit by a power of ten (cents, thousands) moves every value by the same whole
        number of buckets and adaptive M scores do not change (docs/segments.md).
    width
        Bucket width of a linear histogram.
    alpha
        Relative accuracy of a log histogram.

    Examples
    --------
    >>> h = BucketHistogram("linear")
    >>> for v in [1, 1, 1, 2, 2, 3, 5, 8, 13, 21]:
    ...     h.update(v)
    >>> h.quantile(0.5), h.quantile(0.9), h.count
    (2.0, 13.0, 10)
    >>> m = BucketHistogram("log", alpha=0.01)
    >>> m.update(100.0); m.update(1000.0)
    >>> abs(m.quantile(1.0) - 1000) <= 1000 * 0.0102  # within (g - 1) / (g + 1) = 1.01%
    True
    >>> both = BucketHistogram("linear"); both += h; both += h
    >>> both.count, both.quantile(0.5)
    (20, 2.0)
    """

    def __init__(self, kind: str = "linear", width: float = 1.0, alpha: float = 0.01):
        if kind not in ("linear", "log"):
            raise ValueError(f"kind is 'linear' or 'log', not {kind!r}")
        self.kind = kind
        self.width = width
        self.alpha = alpha
        # buckets per power of ten: 115 for alpha = 0.01 (g = 1.020225 against 1.020202)
        self.per_decade = max(1, round(math.log(10) / math.log((1 + alpha) / (1 - alpha))))
        self._gamma = 10 ** (1 / self.per_decade)
        self.counts: Counter[int] = Counter()

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    def bucket(self, value: float) -> int:
        if self.kind == "linear":
            return math.floor(value / self.width)
        if value <= 0:
            return -(2**31)  # one bucket for zero and negative money (refunded customers)
        return self._log_bucket(value)

    def _log_bucket(self, value: float | Decimal) -> int:
        # value = mantissa * 10^exponent in decimal, exactly: scaling by a power of ten
        # changes the exponent alone, so the bucket moves by exactly per_decade buckets
        # (a float is read by its shortest repr, the decimal it was written from)
        exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        exponent = exact.adjusted()
        mantissa = float(exact.scaleb(-exponent))  # in [1, 10)
        return exponent * self.per_decade + math.ceil(math.log10(mantissa) * self.per_decade)

    def _power(self, bucket: int) -> float:
        """g^bucket, exact at powers of ten."""
        return 10 ** (bucket / self.per_decade)

    def value(self, bucket: int) -> float:
        """A representative value of a bucket (its lower edge, or the log midpoint)."""
        if self.kind == "linear":
            return bucket * self.width
        if bucket == -(2**31):
            return 0.0
        return 2 * self._power(bucket) / (self._gamma + 1)

    def update(self, value: float, weight: int = 1) -> None:
        b = self.bucket(value)
        self.counts[b] += weight
        if self.counts[b] == 0:
            del self.counts[b]

    def __iadd__(self, other: BucketHistogram) -> BucketHistogram:
        self.counts.update(other.counts)
        return self

    def lower_bound(self, bucket: int) -> float:
        """The least value that falls in ``bucket`` or above (as an RFM edge: reach it to
        score higher)."""
        if self.kind == "linear":
            return bucket * self.width
        if bucket == -(2**31):
            return -math.inf
        # bucket b holds (g^(b-1), g^b]: the least value above g^(b-1)
        return math.nextafter(self._power(bucket - 1), math.inf)

    def quantile_bucket(self, q: float) -> int | None:
        """The bucket of the value below or at which a fraction ``q`` of the population lies."""
        total = self.count
        if total <= 0:
            return None
        rank = max(1, math.ceil(q * total))
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                return b
        return max(self.counts)

    def quantile(self, q: float) -> float | None:
        """The value below or at which a fraction ``q`` of the population lies."""
        bucket = self.quantile_bucket(q)
        return None if bucket is None else self.value(bucket)


def rfm_histograms() -> dict[str, BucketHistogram]:
    """The population histograms behind adaptive RFM scores: last purchase (the shop's
    calendar day number), frequency (orders) and monetary value (1% relative accuracy)."""
    return {
        "lp": BucketHistogram("linear", 1.0),
        "f": BucketHistogram("linear", 1.0),
        "m": BucketHistogram("log", alpha=0.01),
    }


def adaptive_edges(
    last_purchase_day: BucketHistogram,
    frequency: BucketHistogram,
    monetary: BucketHistogram,
    as_of_day: float,
    minimum_customers: int = 20,
    days: Days = UTC_DAYS,
) -> dict[str, tuple[float, ...]] | None:
    """RFM edges that split the population fairly into five scores, in RFMScorer's terms.

    R, F and M follow one rule, :func:`fair_cuts` over the histogram's distinct values:
    customers tied on a value share a score, and the five scores are as close to a fifth
    each as the ties allow. R = 5 for the most recent group of last-purchase days. None
    while fewer than ``minimum_customers`` have bought: too few to speak of fifths.

    The last-purchase histogram counts ``days`` (the shop's calendar, UTC by default); a
    recency edge is the exact age, at ``as_of_day``, of the first instant of its day, so
    everyone who last bought on one local day shares an R score, daylight saving or not.

    >>> lp, f, m = BucketHistogram(), BucketHistogram(), BucketHistogram("log")
    >>> for i in range(100):
    ...     lp.update(i); f.update(1 + i // 20); m.update(10.0 * (i + 1))
    >>> e = adaptive_edges(lp, f, m, as_of_day=100)
    >>> e["recency_edges"], e["frequency_edges"]
    ((20.0, 40.0, 60.0, 80.0), (2.0, 3.0, 4.0, 5.0))
    """
    if last_purchase_day.count < minimum_customers:
        return None
    return {
        "recency_edges": tuple(
            max(0.0, as_of_day - days.start_ms(day) / MS_PER_DAY)
            for day in recency_cut_days(last_purchase_day)
        ),
        "frequency_edges": fair_edges(frequency),
        "monetary_edges": fair_edges(monetary),
    }


def recency_cut_days(last_purchase_day: BucketHistogram) -> tuple[int, ...]:
    """The four cut dates of R (day numbers of the histogram's calendar), in the order of
    the recency edges: a last purchase dated before ``cuts[k]`` scores at most 4 - k, so
    R = 5 - (how many cut dates the last purchase's date is before). The tie rule itself,
    with no "now" in it.

    >>> lp = BucketHistogram()
    >>> for i in range(100):
    ...     lp.update(i)
    >>> recency_cut_days(lp)
    (80, 60, 40, 20)
    """
    # recency <= edge_k earns 5 - k: the edge is the age of the first day of score 5 - k
    cut_days = fair_edges(last_purchase_day)
    present = [b for b, n in last_purchase_day.counts.items() if n > 0]
    if len(present) == 1:  # everyone bought last on one day: nobody less recent, all R = 5
        cut_days = (last_purchase_day.lower_bound(present[0]),) * 4
    return tuple(round(day) for day in reversed(cut_days))


def recency_cut_dates(last_purchase_day: BucketHistogram) -> tuple[str, ...]:
    """The four cut dates of :func:`recency_cut_days` as ISO dates (RFMScorer's
    ``recency_cut_dates``, S10): absolute, so they move only when the population does.

    >>> lp = BucketHistogram()
    >>> for i in range(20_000, 20_100):
    ...     lp.update(i)
    >>> recency_cut_dates(lp)
    ('2024-12-23', '2024-12-03', '2024-11-13', '2024-10-24')
    """
    epoch = date(1970, 1, 1)  # day number 0 of the histogram's calendar
    return tuple(
        (epoch + timedelta(days=day)).isoformat() for day in recency_cut_days(last_purchase_day)
    )


def whole_day_recency_edges(last_purchase_day: BucketHistogram, today: int) -> tuple[float, ...]:
    """The recency edges in whole dates (RFMScorer's ``recency_timezone``) as of the date
    ``today``: each cut date's distance from today, so that "more than ``edge`` dates
    before today" is "dated before the cut", all day long. They move only when a cut date
    or today's date does. (0 for a cut dated today or later, as adaptive_edges clamps.)

    >>> lp = BucketHistogram()
    >>> for i in range(100):
    ...     lp.update(i)
    >>> whole_day_recency_edges(lp, today=100)
    (20.0, 40.0, 60.0, 80.0)
    """
    return tuple(float(max(0, today - day)) for day in recency_cut_days(last_purchase_day))


def fair_edges(hist: BucketHistogram, scores: int = 5) -> tuple[float, ...]:
    """Ascending score edges (reach an edge to score higher) from :func:`fair_cuts` over the
    histogram's distinct values (buckets with customers).

    >>> f = BucketHistogram()
    >>> for value, n in ((1, 86), (2, 8), (3, 3), (4, 2), (6, 1)):  # 86% one-time buyers
    ...     f.update(value, n)
    >>> fair_edges(f)
    (2.0, 3.0, 4.0, 6.0)
    >>> g = BucketHistogram()
    >>> for value, n in ((1, 90), (2, 9), (3, 1)):
    ...     g.update(value, n)
    >>> fair_edges(g)
    (2.0, 3.0, 3.0, 3.0)
    """
    present = sorted(b for b, n in hist.counts.items() if n > 0)
    if not present:
        return ()
    if len(present) == 1:  # one value: nothing to tell apart, everyone scores 1
        return tuple(hist.lower_bound(present[0] + 1) for _ in range(scores - 1))
    cuts = fair_cuts([hist.counts[b] for b in present], scores)
    return tuple(hist.lower_bound(present[i]) for i in cuts)


def fair_cuts(counts: list[int], groups: int = 5) -> tuple[int, ...]:
    """Where to cut a row of tied groups (customers per distinct value, ascending) into
    ``groups`` scores: ``groups - 1`` indices, score s + 1 starting at value ``cuts[s - 1]``.

    The fair split (docs/segments.md, "Ties"): ties are never split; with at least
    ``groups`` distinct values every score gets at least one, and among those splits the
    one with the least sum of squared score sizes is taken (the score shares closest to
    equal: sum of (share - 1/groups)^2 is least), ties between equally fair splits going to
    the lowest cuts, last cut first. With fewer distinct values each value is its own
    score, 1 .. k - 1, and the highest scores ``groups`` (the cuts after it repeat).

    >>> fair_cuts([45, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5])  # a sale day holding 45%
    (1, 3, 6, 9)
    >>> fair_cuts([70, 29, 1])
    (1, 2, 2, 2)
    """
    k = len(counts)
    if k < groups:
        return tuple(min(s, k - 1) for s in range(1, groups))
    total = np.concatenate(([0], np.cumsum(np.asarray(counts, dtype=np.int64))))
    # best[j - s]: the least sum of squares of s groups covering the first j values
    best = total[1 : k - groups + 2] ** 2  # s = 1: one group, the first j values
    back = [np.zeros(len(best), dtype=np.int64)]
    for s in range(2, groups):
        # j: the first j values in s groups, leaving a value for each group still to come
        ends = range(s, k - (groups - s) + 1)
        layer = np.empty(len(ends), dtype=np.int64)
        arg = np.empty(len(ends), dtype=np.int64)
        for n, j in enumerate(ends):
            # the previous group ends at i in s - 1 .. j - 1 (best is indexed from s - 1)
            cost = best[: j - s + 1] + (total[j] - total[s - 1 : j]) ** 2
            arg[n] = int(np.argmin(cost)) + s - 1  # argmin: the lowest of equal costs
            layer[n] = cost[arg[n] - s + 1]
        best, back = layer, [*back, arg]
    last = best + (total[k] - total[groups - 1 : k]) ** 2
    cuts = [int(np.argmin(last)) + groups - 1]
    for s in range(groups - 1, 1, -1):
        cuts.append(int(back[s - 1][cuts[-1] - s]))
    return tuple(reversed(cuts))

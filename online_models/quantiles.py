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
from bisect import bisect_right
from collections import Counter


class BucketHistogram:
    """Counts per bucket, mergeable with ``+=``.

    Parameters
    ----------
    kind
        ``"linear"`` (bucket = floor(value / width)) or ``"log"`` (bucket = ceil(log_g(value))
        with g = (1 + alpha) / (1 - alpha); values <= 0 share one bucket).
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
    >>> abs(m.quantile(1.0) - 1000) <= 1000 * 0.01  # within the relative accuracy
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
        self._gamma = (1 + alpha) / (1 - alpha)
        self.counts: Counter[int] = Counter()

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    def bucket(self, value: float) -> int:
        if self.kind == "linear":
            return math.floor(value / self.width)
        if value <= 0:
            return -(2**31)  # one bucket for zero and negative money (refunded customers)
        return math.ceil(math.log(value, self._gamma))

    def value(self, bucket: int) -> float:
        """A representative value of a bucket (its lower edge, or the log midpoint)."""
        if self.kind == "linear":
            return bucket * self.width
        if bucket == -(2**31):
            return 0.0
        return 2 * self._gamma**bucket / (self._gamma + 1)

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
        return math.nextafter(self._gamma ** (bucket - 1), math.inf)

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
    """The population histograms behind adaptive RFM scores: last purchase (UTC day
    number), frequency (orders) and monetary value (1% relative accuracy)."""
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
) -> dict[str, tuple[float, ...]] | None:
    """RFM edges at the population's quintiles, in RFMScorer's terms.

    R = 5 for the most recent fifth of buyers (by last purchase day); F and M by
    :func:`tied_edges`: quintiles where the data allow, every score the data can support
    where ties pile customers on a few values. None while fewer than
    ``minimum_customers`` have bought: too few to speak of quintiles.

    >>> lp, f, m = BucketHistogram(), BucketHistogram(), BucketHistogram("log")
    >>> for i in range(100):
    ...     lp.update(i); f.update(1 + i // 20); m.update(10.0 * (i + 1))
    >>> e = adaptive_edges(lp, f, m, as_of_day=100)
    >>> e["recency_edges"], e["frequency_edges"]
    ((21.0, 41.0, 61.0, 81.0), (2.0, 3.0, 4.0, 5.0))
    """
    if last_purchase_day.count < minimum_customers:
        return None
    quintiles = (0.2, 0.4, 0.6, 0.8)
    # recency <= edge_k earns 5 - k: the edge is the age of the (1 - k/5) quantile of last days
    recency = tuple(as_of_day - last_purchase_day.quantile(1 - q) for q in quintiles)
    return {
        "recency_edges": tuple(max(0.0, r) for r in recency),
        "frequency_edges": tied_edges(frequency, quintiles),
        "monetary_edges": tied_edges(monetary, quintiles),
    }


def tied_edges(hist: BucketHistogram, quantiles: tuple[float, ...]) -> tuple[float, ...]:
    """Ascending score edges (reach an edge to score higher) at the population's quantiles,
    made to use every score the data can support when ties pile customers on few values.

    The rule, over the distinct values present (buckets with customers):
    1. a quantile's edge is the next distinct value *above* it, so customers tied on a value
       share a score and the lowest value always scores 1;
    2. each edge is a distinct value above the previous edge, and no higher than leaves
       room for the edges after it: with k >= 5 distinct values all five scores are used;
    3. with k < 5 distinct values each value is its own score group, 1 .. k-1, and the
       highest value scores 5 (the edges after the last one repeat it).

    >>> f = BucketHistogram()
    >>> for value, n in ((1, 86), (2, 8), (3, 3), (4, 2), (6, 1)):  # 86% one-time buyers
    ...     f.update(value, n)
    >>> tied_edges(f, (0.2, 0.4, 0.6, 0.8))
    (2.0, 3.0, 4.0, 6.0)
    >>> g = BucketHistogram()
    >>> for value, n in ((1, 90), (2, 9), (3, 1)):
    ...     g.update(value, n)
    >>> tied_edges(g, (0.2, 0.4, 0.6, 0.8))
    (2.0, 3.0, 3.0, 3.0)
    """
    present = sorted(b for b, n in hist.counts.items() if n > 0)
    n = len(present)
    if n < 2:  # one value: nothing to tell apart, everyone scores 1
        return tuple(hist.lower_bound(present[0] + 1) for _ in quantiles) if present else ()
    chosen, previous, slots = [], 0, len(quantiles) + 1
    for k, q in enumerate(quantiles, start=1):
        above = bisect_right(present, hist.quantile_bucket(q))  # index of the next value up
        highest = n - slots + k if n >= slots else min(k, n - 1)
        previous = min(max(above, previous + 1), highest)
        chosen.append(present[previous])
    return tuple(hist.lower_bound(b) for b in chosen)

"""Adaptive recency edges in whole dates (S10): R is the fair split's tie rule (dated
before each cut date or not) at every instant of the date the edges were derived on, the
same R as the elapsed-day edges of S9 gave at their refresh instant, and a silent customer
is due exactly when its R falls.

The oracle is tests/reference.py's fair split over UTC dates (ms // DAY here).
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from online_models.quantiles import BucketHistogram, adaptive_edges, whole_day_recency_edges
from online_models.rfm import RFMScorer
from tests.reference import reference_scores

DAY = 86_400_000
START = 20_000 * DAY  # 2024-10-04


def population(offsets: list[int]) -> tuple[list[int], BucketHistogram]:
    """Last purchases at START + offset ms, and their UTC-date histogram."""
    lps = [START + o for o in offsets]
    hist = BucketHistogram("linear")
    for lp in lps:
        hist.update(lp // DAY)
    return lps, hist


def r_of(scorer: RFMScorer, lp: int, t: int) -> int:
    return scorer.at(t).score((t - lp) / DAY, 1, Decimal(1))[0]


purchases = st.lists(st.integers(0, 120 * DAY), min_size=20, max_size=80)


@settings(max_examples=150, deadline=None)
@given(purchases, st.integers(0, 30 * DAY), st.floats(0, 1, exclude_max=True))
def test_r_is_the_tie_rule_all_day_and_s9s_r_at_the_refresh(offsets, after, later):
    lps, hist = population(offsets)
    as_of = max(lps) + after  # the watermark of the refresh
    today = as_of // DAY
    whole = RFMScorer(whole_day_recency_edges(hist, today), recency_timezone="UTC")
    elapsed = RFMScorer(**adaptive_edges(hist, hist, hist, as_of / DAY))  # S9's, at as_of
    want = [r for r, _, _ in reference_scores(
        [{"last_purchase_ms": lp, "purchases": 1, "monetary": "1"} for lp in lps])]  # fmt: skip
    t = as_of + int(later * ((today + 1) * DAY - as_of))  # any later instant of that date
    assert [r_of(whole, lp, as_of) for lp in lps] == want
    assert [r_of(whole, lp, t) for lp in lps] == want
    # S9's edge as_of / DAY - start / DAY rounds: a purchase at a date's first instant
    # could land past it (R one lower); whole dates have no such instant. Elsewhere: equal.
    s9 = [elapsed.score((as_of - lp) / DAY, 1, Decimal(1))[0] for lp in lps]
    assert [a for a, lp in zip(s9, lps, strict=True) if lp % DAY] == [
        w for w, lp in zip(want, lps, strict=True) if lp % DAY]  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(purchases, st.integers(0, 5 * DAY), st.integers(0, 400 * DAY))
def test_a_silent_customer_is_due_exactly_when_its_r_falls(offsets, after, bought):
    lps, hist = population(offsets)
    as_of = max(lps) + after
    scorer = RFMScorer(whole_day_recency_edges(hist, as_of // DAY), recency_timezone="UTC")
    lp = START + bought
    # R by the test's own reading: more than `edge` dates between the purchase's and t's
    edges = [int(e) for e in scorer.recency_edges]

    def r(t: int) -> int:
        return 5 - sum(t // DAY - lp // DAY > e for e in edges)

    crossings = sorted(set(scorer.recency_crossings_ms(lp)))
    for c in crossings:  # R falls at each crossing, not a millisecond later or earlier
        assert r(c) < r(c - 1)
        assert r_of(scorer, lp, c) == r(c) and r_of(scorer, lp, c - 1) == r(c - 1)
    for a, b in zip([lp, *crossings], [*crossings, crossings[-1] + 3 * DAY], strict=True):
        assert r(a) == r(b - 1) == r_of(scorer, lp, (a + b) // 2)  # and nowhere in between

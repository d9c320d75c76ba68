"""Adaptive recency edges as absolute cut dates (S10): R = 5 minus the number of cut dates
strictly after the last purchase's date, at every instant, so a silent customer never has
a recency crossing; configured edges keep elapsed days and their crossings.

Oracles: tests/reference.py's fair split (R of a population), and the cut-date rule
written out here over UTC dates (ms // DAY) and New York dates (zoneinfo).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from online_models.rfm import RFMScorer
from tests.reference import reference_scores

DAY = 86_400_000
START = 20_000 * DAY  # 2024-10-04, UTC
EPOCH = date(1970, 1, 1)


def iso(day: int) -> str:
    return (EPOCH + timedelta(days=day)).isoformat()


def r_of(scorer: RFMScorer, lp: int, t: int) -> int:
    return scorer.at(t).score((t - lp) / DAY, 1, Decimal(1))[0]


def test_configured_edges_keep_elapsed_days_and_crossings():
    scorer = RFMScorer()
    assert scorer.recency_cut_dates is None and scorer.recency_edges == (30.0, 90.0, 180.0, 365.0)
    assert scorer.recency_crossings_ms(DAY // 2) == [
        DAY // 2 + e * DAY + 1 for e in (30, 90, 180, 365)
    ]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 200), min_size=4, max_size=4, unique=True),
       st.integers(0, 300 * DAY), st.integers(0, 2_000 * DAY))  # fmt: skip
def test_r_counts_the_cut_dates_after_the_purchase_date_at_any_time(cuts, bought, later):
    cut_days = sorted((20_000 + c for c in cuts), reverse=True)
    scorer = RFMScorer(recency_cut_dates=[iso(d) for d in cut_days], recency_timezone="UTC")
    lp = START + bought
    want = 5 - sum(1 for d in cut_days if d > lp // DAY)
    for t in (lp, lp + later, max(lp, (cut_days[0] + 1) * DAY) + later):
        assert r_of(scorer, lp, t) == want
    assert scorer.recency_crossings_ms(lp) == []  # R never falls with time


def test_cut_dates_are_local_dates_of_the_zone():
    ny = ZoneInfo("America/New_York")
    cuts = ["2024-11-03", "2024-10-01", "2024-09-01", "2024-08-01"]  # 11-03: DST ends
    scorer = RFMScorer(recency_cut_dates=cuts, recency_timezone="America/New_York")
    first = int(datetime(2024, 11, 3, tzinfo=ny).timestamp() * 1000)  # 04:00 UTC
    t = first + 400 * DAY
    assert r_of(scorer, first, t) == 5  # on the cut date: not after it
    assert r_of(scorer, first - 1, t) == 4  # 23:59:59.999 local on 11-02
    # 02:00 UTC on 11-03 is still 11-02 in New York
    utc_midnight = int(datetime(2024, 11, 3, 2, tzinfo=UTC).timestamp() * 1000)
    assert r_of(scorer, utc_midnight, t) == 4


def test_population_r_is_the_fair_split():
    from online_models.quantiles import BucketHistogram, recency_cut_dates

    lps = [START + (d * 7919) % (90 * DAY) for d in range(60)]
    hist = BucketHistogram("linear")
    for lp in lps:
        hist.update(lp // DAY)
    scorer = RFMScorer(recency_cut_dates=recency_cut_dates(hist), recency_timezone="UTC")
    want = [r for r, _, _ in reference_scores(
        [{"last_purchase_ms": lp, "purchases": 1, "monetary": "1"} for lp in lps])]  # fmt: skip
    for t in (max(lps), max(lps) + 3 * DAY + 5, max(lps) + 365 * DAY):
        assert [r_of(scorer, lp, t) for lp in lps] == want


@pytest.mark.parametrize(
    "cuts",
    [
        ["2024-01-01"] * 3,
        ["2024-01-01", "2024-02-01", "2023-01-01", "2022-01-01"],
        ["x", "y", "z", "w"],
    ],
)
def test_bad_cut_dates_are_one_clear_error(cuts):
    with pytest.raises(ValueError, match="cut dates"):
        RFMScorer(recency_cut_dates=cuts, recency_timezone="UTC")

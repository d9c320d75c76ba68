"""The bands a new set of RFM edges can move customers in (streams.state.edge_bands):
every customer whose R or M score differs between the old and the new edges (scored
here, by the rules docs/segments.md states) lies in a band."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.state.edge_bands import bands

EPOCH = date(1970, 1, 1)


def r_score(last_day: int, cut_dates: list[str]) -> int:
    """5 minus the cut dates strictly after the last purchase's date."""
    return 5 - sum(date.fromisoformat(c) > EPOCH + timedelta(days=last_day) for c in cut_dates)


def m_score(money: Decimal, edges: list[float]) -> int:
    """1 plus the edges reached (money at or above them)."""
    return 1 + sum(money >= Decimal(str(e)) for e in edges)


def iso(day: int) -> str:
    return (EPOCH + timedelta(days=day)).isoformat()


CUTS = st.lists(st.integers(20_000, 20_060), min_size=4, max_size=4).map(
    lambda d: [iso(x) for x in sorted(d, reverse=True)]
)
EDGES = st.lists(
    st.decimals(Decimal("0"), Decimal("500"), places=2).map(float), min_size=4, max_size=4
).map(sorted)


@settings(max_examples=400, deadline=None)
@given(
    old_cuts=CUTS,
    new_cuts=CUTS,
    old_money=EDGES,
    new_money=EDGES,
    customers=st.lists(
        st.tuples(
            st.integers(19_990, 20_070), st.decimals(Decimal("0"), Decimal("600"), places=2)
        ),  # fmt: skip
        max_size=30,
    ),
)
def test_every_customer_whose_r_or_m_moves_is_in_a_band(
    old_cuts, new_cuts, old_money, new_money, customers
):
    old = {"recency_cut_dates": old_cuts, "recency_timezone": "UTC",
           "frequency_edges": [2, 3, 5, 8], "monetary_edges": old_money}  # fmt: skip
    new = {**old, "recency_cut_dates": new_cuts, "monetary_edges": new_money}
    found = bands(old, new, "UTC")
    for last_day, money in customers:
        in_days = any(lo <= last_day <= hi for lo, hi in found.days)
        in_money = any(lo <= money <= hi for lo, hi in found.money)
        if r_score(last_day, old_cuts) != r_score(last_day, new_cuts):
            assert in_days, (last_day, found.days)
        if m_score(money, old_money) != m_score(money, new_money):
            assert in_money, (money, found.money)
    # and no band where nothing moved
    assert (found.days == []) == (old_cuts == new_cuts)
    assert (found.money == []) == (old_money == new_money)


def test_only_a_walk_tells_who_a_frequency_edge_or_another_calendar_moves():
    old = {"recency_cut_dates": ["2026-01-10"] * 4, "recency_timezone": "UTC",
           "frequency_edges": [2, 3, 5, 8], "monetary_edges": [10.0, 20.0, 30.0, 40.0]}  # fmt: skip
    assert bands({**old, "frequency_edges": [2, 3, 5, 9]}, old, "UTC") is None
    assert bands(old, {**old, "recency_timezone": "Europe/Paris"}, "Europe/Paris") is None
    assert bands(old, old, "Europe/Paris") is None  # the cells count days in another zone
    assert bands({"recency_edges": [30, 90, 180, 365], "frequency_edges": [2, 3, 5, 8],
                  "monetary_edges": [1.0, 2.0, 3.0, 4.0]}, old, "UTC") is None  # fmt: skip
    assert bands(None, old, "UTC") is None

"""The churn-risk ranking's two pure steps (streams.read.risk_ranking): a day cell's
P(alive) bounds hold every customer the cell can have, and the cells chosen for a page
hold every customer of that page, against a brute-force ranking written here."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from online_models.churn import BGNBD, ModifiedBGNBD
from online_models.churn_risk import ChurnScorer
from online_models.customer import CustomerState
from online_models.days import UTC_DAYS
from streams.read.risk_ranking import CellTable, candidate_cells, cell_table, parse_cursor
from streams.state.facts import cell_of
from tests.reference_btyd import p_alive as reference_p_alive
from tests.reference_btyd import summary_weeks

DAY = 86_400_000
PARAMS = st.fixed_dictionaries(
    {
        "r": st.floats(0.05, 5),
        "alpha": st.floats(0.1, 50),
        "a": st.floats(0.01, 5),
        "b": st.floats(0.01, 20),
    }
)


def scorer_for(model: str, params: dict) -> ChurnScorer:
    fitted = (BGNBD if model == "bgnbd" else ModifiedBGNBD)()
    fitted.params = dict(params)
    return ChurnScorer(fitted)


@settings(max_examples=300, deadline=None)
@given(
    model=st.sampled_from(["bgnbd", "mbgnbd"]),
    params=PARAMS,
    first_day=st.integers(20_000, 20_300),
    gaps=st.lists(st.integers(0, 200), max_size=6),
    times=st.lists(st.integers(0, DAY - 1), min_size=7, max_size=7),
    quiet_ms=st.integers(-5 * DAY, 400 * DAY),
)
def test_a_cells_bounds_hold_each_of_its_customers(model, params, first_day, gaps, times, quiet_ms):
    """Two orders on one day, a customer ranked as of a moment before its last purchase,
    every time of day: its P(alive) (the reference's, from its own purchase times) lies
    within its cell's bounds."""
    days = [first_day]
    for gap in gaps:
        days.append(days[-1] + gap)  # a 0 gap: a second order on the same day
    bought = [d * DAY + t for d, t in zip(days, times, strict=False)]
    state = CustomerState("c1")
    for k, ts in enumerate(bought):
        state.apply_purchase(ts, Decimal("10"), f"o{k}")
    as_of = max(bought) + quiet_ms
    scorer = scorer_for(model, params)
    table = cell_table([{cell_of(state): 1}], scorer, as_of, UTC_DAYS)
    want = reference_p_alive(model, params, *summary_weeks(bought, as_of))
    got = scorer.p_alive(state, as_of)
    assert got == np.float64(got) and abs(got - want) <= 1e-9 * max(want, 1e-300)
    assert table.lo[0] <= got <= table.hi[0]
    assert 0 <= table.lo[0] <= table.hi[0] <= 1


def brute_force_page(members: list[tuple[float, str, int]], need: int, after=None) -> set[int]:
    """The cells of the first ``need`` customers by (P(alive), id) after ``after``."""
    ranked = sorted(m for m in members if after is None or m[:2] > after)
    return {cell for _, _, cell in ranked[:need]}


@settings(max_examples=500, deadline=None)
@given(
    cells=st.lists(
        st.tuples(st.floats(0, 1), st.floats(0, 1), st.integers(1, 6)), min_size=1, max_size=12
    ),
    picks=st.data(),
    need=st.integers(1, 40),
)
def test_the_chosen_cells_hold_every_customer_of_the_page(cells, picks, need):
    """Customers anywhere within their cell's bounds, ties of P(alive) across cells, a
    cursor anywhere: every customer the page needs is in a chosen cell."""
    lo = np.array([min(a, b) for a, b, _ in cells])
    hi = np.array([max(a, b) for a, b, _ in cells])
    members = []
    for k, (_, _, n) in enumerate(cells):
        for j in range(n):
            p = picks.draw(st.sampled_from([lo[k], hi[k], (lo[k] + hi[k]) / 2]))
            members.append((float(p), f"c{k}-{j}", k))
    counts = np.array([n for _, _, n in cells])
    table = CellTable([f"{k}" for k in range(len(cells))], lo, hi, counts, [[0]] * len(cells))
    after = None
    if picks.draw(st.booleans()):
        p, cid, _ = picks.draw(st.sampled_from(members))
        after = (p, cid)
    chosen = set(candidate_cells(table, need, None if after is None else after[0]).tolist())
    assert brute_force_page(members, need, after) <= chosen


def test_the_chosen_cells_follow_the_page_not_the_population():
    """10,000 cells of 100 customers, spread over P(alive): the first page needs a few."""
    lo = np.linspace(0, 0.99, 10_000)
    table = CellTable([str(k) for k in range(10_000)], lo, lo + 0.0002,
                      np.full(10_000, 100), [[0]] * 10_000)  # fmt: skip
    assert len(candidate_cells(table, 101)) <= 4
    assert len(candidate_cells(table, 101, after_p=0.5)) <= 8  # and those straddling it


def test_a_cursor_no_page_gave_is_refused_with_its_shape():
    assert parse_cursor("1:2:0.5:a:b") == (1, 2, 0.5, "a:b")
    for bad in ("x", "1:2:half:c", "1:2:0.5:", "c001"):
        try:
            parse_cursor(bad)
        except ValueError as exc:
            assert "<as-of ms>" in str(exc)
        else:
            raise AssertionError(f"{bad!r} was taken")


def test_a_cell_straddling_the_cursor_counts_for_none_of_the_page():
    """Six customers of a cell reaching past the cursor are all before it: the page is the
    next cell's customer, which a count of the six would have cut off."""
    table = CellTable(["a", "b", "d"], np.array([0.1, 0.5, 0.55]), np.array([0.52, 0.5, 0.56]),
                      np.array([6, 1, 1]), [[0]] * 3)  # fmt: skip
    members = [(0.1, f"a{j}", 0) for j in range(6)] + [(0.5, "b0", 1), (0.55, "d0", 2)]
    chosen = set(candidate_cells(table, 1, after_p=0.5).tolist())
    assert brute_force_page(members, 1, (0.5, "b0")) == {2} and 2 in chosen


@settings(max_examples=50, deadline=None)
@given(model=st.sampled_from(["bgnbd", "mbgnbd"]), params=PARAMS, seed=st.integers(0, 10**6))
def test_p_alive_of_many_states_at_once_is_each_ones_to_the_bit(model, params, seed):
    """The ranking scores its candidates in one array; the profile shows each one's own."""
    rng = np.random.default_rng(seed)
    states = [CustomerState("nobody")]  # no purchase: None
    for i in range(60):
        state = CustomerState(f"c{i}")
        for k, day in enumerate(sorted(rng.integers(20_000, 20_300, rng.integers(1, 6)))):
            state.apply_purchase(int(day) * DAY + int(rng.integers(0, DAY)), Decimal("5"), f"o{k}")
        states.append(state)
    scorer = scorer_for(model, params)
    as_of = 20_400 * DAY
    assert scorer.p_alive_each(states, as_of) == [scorer.p_alive(s, as_of) for s in states]

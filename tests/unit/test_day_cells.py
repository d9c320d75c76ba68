"""The day cells (S10 item 3): customers counted per (x, first purchase day, last purchase
day), kept by the writers beside the population facts, and the churn fit on them.

The expected cells are counted here (tests/reference_facts.cells, from the states'
attributes); the fit is checked against the MBG/NBD likelihood written out here from
Batislam, Denizel & Filiztekin (2007), summed over the states one customer at a time,
and against the unweighted fit on the rows repeated. Nothing of rtba computes the oracles.
"""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from online_models import churn_risk
from online_models.churn import BGNBD, ModifiedBGNBD
from online_models.customer import CustomerState
from online_models.days import days_in
from streams.state import facts
from tests.reference_facts import cells as reference_cells

DAY = 86_400_000
WEEK = 7 * DAY
AS_OF = 1_760_000_000_000 // DAY * DAY + 17 * 3_600_000  # 17:00 UTC
TOKYO_MS = 9 * 3_600_000  # Asia/Tokyo: UTC+9, no daylight saving


def customer(cid: str, purchases: list[int]) -> CustomerState:
    state = CustomerState(cid)
    for i, ts in enumerate(purchases):
        assert state.apply_purchase(ts, Decimal("12.50"), f"o{i}")
    return state


# purchase times: up to 6 per customer, anywhere in the 200 days before AS_OF
purchase_lists = st.lists(st.integers(AS_OF - 200 * DAY, AS_OF), min_size=0, max_size=6)


@settings(max_examples=60, deadline=None)
@given(st.lists(purchase_lists, min_size=1, max_size=25))
def test_the_cells_are_the_customers_counted_per_x_and_first_and_last_day(population):
    states = [customer(f"c{i}", times) for i, times in enumerate(population)]
    for days, offset in ((None, 0), (days_in("Asia/Tokyo"), TOKYO_MS)):
        got: dict[str, int] = {}
        for state in states:
            cell = facts.cell_of(state) if days is None else facts.cell_of(state, days)
            if cell is not None:
                got[cell] = got.get(cell, 0) + 1
        assert got == reference_cells(states, offset)


def test_a_written_contribution_carries_the_cell_and_the_scripts_get_it_apart():
    state = customer("c1", [AS_OF - 30 * DAY, AS_OF - 3 * DAY, AS_OF - 3 * DAY + 60_000])
    first, last = (AS_OF - 30 * DAY) // DAY, (AS_OF - 3 * DAY) // DAY
    written = facts.written_contribution(state)
    # its money-rank entry: 37.50 spent, in micro-units, subtracted from 24 nines
    money = f"m:{'9' * 16}62499999:c1"
    # one repeat day worth 25.00: its spend cell; its day cell's member entry
    member = f"d:1:{first}:{last}:c1"
    assert written == {**facts.contribution(state), f"cell:1:{first}:{last}": 1,
                       "cell:gg:1:25e0": 1, f"idx:{money}": 1, f"idx:{member}": 1}  # fmt: skip
    args = facts.script_args(facts.delta(None, written))
    f = args[0]
    # g, then the cells' pairs; h, then the index entry's
    assert args[1 + 2 * f :] == [2, f"1:{first}:{last}", 1, "gg:1:25e0", 1,
                                 2, money, 1, member, 1]  # fmt: skip
    assert "cell:" not in " ".join(map(str, args[: 1 + 2 * f]))  # never in the facts hash
    assert facts.written_contribution(CustomerState("c2")) == {
        "customers": 1, "without_purchase": 1, f"idx:m:{'9' * 24}:c2": 1}  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(purchase_lists.filter(bool), st.integers(0, DAY - 1))
def test_a_cells_t_x_and_t_are_the_states_to_the_day(times, later):
    """t_x off by under a day (times of day are not kept), T by at most half a day."""
    state = customer("c1", times)
    as_of = AS_OF + later
    x, t_x, big_t, weights = churn_risk.cell_rows({facts.cell_of(state): 1}, as_of)
    purchase_days = sorted({t // DAY for t in times})
    want_x = len(purchase_days) - 1
    want_t_x = (max(times) - min(times)) / WEEK if want_x else 0.0
    want_t = (as_of - min(times)) / WEEK
    assert (x[0], weights[0]) == (want_x, 1)
    assert abs(t_x[0] - want_t_x) < 1 / 7
    assert abs(big_t[0] - want_t) <= 0.5 / 7 + 1e-12 and big_t[0] >= t_x[0]


def mbgnbd_log_likelihood(params: dict, x: int, t_x: float, big_t: float) -> float:
    """One customer's MBG/NBD log-likelihood (Batislam et al. 2007, eq. 8), in weeks."""
    r, alpha, a, b = params["r"], params["alpha"], params["a"], params["b"]
    head = (math.lgamma(r + x) - math.lgamma(r) + r * math.log(alpha)
            + math.lgamma(a + b) + math.lgamma(b + x + 1) - math.lgamma(b)
            - math.lgamma(a + b + x + 1))  # fmt: skip
    alive = -(r + x) * math.log(alpha + big_t)
    died = math.log(a / (b + x)) - (r + x) * math.log(alpha + t_x)
    top = max(alive, died)
    return head + top + math.log(math.exp(alive - top) + math.exp(died - top))


def noon_shop(n: int, seed: int) -> list[CustomerState]:
    """Customers whose every purchase is at 12:00 UTC: their day cells hold their (x, t_x,
    T) exactly (T from the middle of the first day, t_x between whole days)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        age = int(rng.integers(1, 300))
        first = (AS_OF // DAY - age) * DAY + DAY // 2
        days = [0]
        if rng.random() < 0.45:
            days += sorted(rng.choice(np.arange(1, age + 1), int(rng.integers(1, 6))).tolist())
        out.append(customer(f"c{i}", [first + d * DAY for d in days]))
    return out


def test_the_cell_fit_maximises_the_likelihood_of_everyone():
    """On a shop whose purchases are at noon, the fit on its cells is the maximum of the
    MBG/NBD likelihood summed over the customers one by one: its log-likelihood is that
    sum at its parameters (to 1e-9), and no nudge of a parameter raises the sum."""
    states = noon_shop(400, seed=3)
    cells = reference_cells(states)
    assert len(cells) < len(states)  # customers share cells
    scorer = churn_risk.fit_on_cells(cells, AS_OF, states[:50], "mbgnbd")
    model = scorer.model
    assert model.converged and model.customers == len(states)

    rows = []
    for s in states:
        x = s.purchase_days - 1
        t_x = (s.last_purchase_ms - s.first_purchase_ms) / WEEK
        rows.append((x, t_x, (AS_OF - s.first_purchase_ms) / WEEK))

    def total(params):
        return sum(mbgnbd_log_likelihood(params, *row) for row in rows)

    best = total(model.params)
    assert math.isclose(model.log_likelihood, best, rel_tol=1e-9)
    # up to the optimiser's own stopping tolerance (L-BFGS-B: ~1e-8 relative in the
    # objective): a and b lie on a flat ridge here, where a nudge moves the sum by ~1e-8;
    # where it stops on that ridge depends on the machine's floating point (a nudge of
    # alpha gained 2.3e-7 of the sum on one 2-core VM, under 1e-7 on another)
    for name in model.params:
        for step in (1 + 1e-3, 1 - 1e-3):
            nudged = total({**model.params, name: model.params[name] * step})
            assert nudged <= best + 1e-6 * abs(best), name
    # and it is the fit on the states themselves, one row a customer
    on_states = churn_risk.fit(states, AS_OF, "mbgnbd").model.params
    for name, value in on_states.items():
        assert math.isclose(model.params[name], value, rel_tol=1e-6), name


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 10_000))
def test_a_weighted_fit_is_the_fit_on_its_rows_repeated(seed):
    rng = np.random.default_rng(seed)
    x, t_x, big_t = BGNBD.simulate({"r": 0.6, "alpha": 5.0, "a": 0.7, "b": 3.0},
                                   rng.uniform(2, 60, 60).round(1), seed)  # fmt: skip
    counts = rng.integers(0, 5, len(x))  # a cell of 0 customers counts for nothing
    for model in (ModifiedBGNBD, BGNBD):
        weighted = model().fit(x, t_x, big_t, counts)
        repeated = model().fit(*(np.repeat(c, counts) for c in (x, t_x, big_t)))
        assert weighted.customers == repeated.customers == counts.sum()
        for name, value in repeated.params.items():
            assert math.isclose(weighted.params[name], value, rel_tol=1e-6), name
        assert math.isclose(weighted.log_likelihood, repeated.log_likelihood, rel_tol=1e-9)


def test_a_negative_cell_is_named_not_fitted():
    states = noon_shop(40, seed=1)
    cells = {**reference_cells(states), "0:5:5": -1}
    with pytest.raises(ValueError, match=r"^day cell 0:5:5 holds -1 customers \(`rtba verify`\)$"):
        churn_risk.fit_on_cells(cells, AS_OF, states)

"""The spend cells: repeat customers counted per (x, mean repeat value to three
significant digits), kept by the writers beside the day cells, and Gamma-Gamma fitted on
them instead of on a sample of states.

The expected cells are written out here from the states' attributes with exact fractions
(tests/reference_facts.spend_cell); the fit is checked against the unweighted fit on the
rows repeated and against the fit on every customer's exact mean, on a population drawn
here from the Gamma-Gamma model itself (Fader, Hardie & Lee 2005).
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from online_models import churn_risk
from online_models.churn import GammaGamma
from online_models.customer import CustomerState
from streams.state import facts
from tests.reference_facts import spend_cell, three_digits

DAY = 86_400_000
AS_OF = 1_760_000_000_000 // DAY * DAY

# amounts with cents, $0 included, from a cent to ten million: every order of magnitude
# and the halfway cases three digits round to even (12.35, 1.005e3 ...)
amounts = st.one_of(
    st.integers(0, 10**9).map(lambda cents: Decimal(cents) / 100),
    st.sampled_from(["12.35", "12.45", "1005", "999.5", "0.995", "100.5"]).map(Decimal),
)
# (day, amount) purchases, several on one day allowed
purchases = st.lists(st.tuples(st.integers(0, 40), amounts), min_size=0, max_size=8)


def customer(cid: str, bought: list[tuple[int, Decimal]]) -> CustomerState:
    state = CustomerState(cid)
    for i, (day, amount) in enumerate(bought):
        state.apply_purchase(AS_OF - (60 - day) * DAY + i, amount, f"o{i}")
    return state


@settings(max_examples=300, deadline=None)
@given(purchases)
def test_the_spend_cell_is_the_mean_repeat_value_to_three_digits(bought):
    state = customer("c1", bought)
    assert facts.spend_cell_of(state) == spend_cell(state)


@settings(max_examples=100, deadline=None)
@given(purchases, st.integers(0, 7))
def test_a_refund_moves_the_spend_cell_as_the_reference_says(bought, which):
    state = customer("c1", bought)
    if bought:
        i = which % len(bought)
        state.apply_refund(AS_OF, bought[i][1] / 2, f"o{i}", "r1")
    assert facts.spend_cell_of(state) == spend_cell(state)


def test_the_cell_names_ties_and_carries_as_written():
    # 12.35 is a tie: to even, 12.4; 999.5 carries to 1.00e3, written 1e3
    state = customer("c1", [(0, Decimal(5)), (3, Decimal("12.35"))])
    assert facts.spend_cell_of(state) == "gg:1:124e-1"
    state = customer("c1", [(0, Decimal(5)), (3, Decimal("999.5"))])
    assert facts.spend_cell_of(state) == "gg:1:1e3"
    # two repeat days: the mean of 10 and 0.01 is 5.005, a tie: 5.00, written 5e0
    state = customer("c1", [(0, Decimal(5)), (3, Decimal(10)), (9, Decimal("0.01"))])
    assert facts.spend_cell_of(state) == "gg:2:5e0"
    # none: a single purchase day (two orders on it), or repeats worth $0
    assert facts.spend_cell_of(customer("c1", [(0, Decimal(5)), (0, Decimal(7))])) is None
    assert facts.spend_cell_of(customer("c1", [(0, Decimal(5)), (4, Decimal(0))])) is None
    assert three_digits(Fraction("5.005")) == (5, 0)


def drawn_population(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, exact mean repeat value in cents) of ``n`` repeat customers: nu ~ Gamma(q,
    gamma), each repeat value ~ Gamma(p, nu), x ~ 1 + Geometric."""
    rng = np.random.default_rng(seed)
    x = rng.geometric(0.45, n)
    nu = rng.gamma(4.0, 1 / 40.0, n)
    m = np.array([rng.gamma(6.0, 1 / v, k).mean() for v, k in zip(nu, x, strict=True)])
    return x.astype(float), np.maximum(np.round(m, 2), 0.01)


def counted(x: np.ndarray, m: np.ndarray) -> dict[str, int]:
    """Spend cells of (x, m) rows, by the reference's rounding."""
    out: dict[str, int] = {}
    for k, mean in zip(x, m, strict=True):
        digits, exponent = three_digits(Fraction(f"{mean:.2f}"))
        name = f"gg:{int(k)}:{digits}e{exponent}"
        out[name] = out.get(name, 0) + 1
    return out


def test_gamma_gamma_on_the_cells_is_the_fit_on_their_rows_repeated():
    x, m = drawn_population(3000, seed=5)
    cells = counted(x, m)
    cx, cm, weights = churn_risk.spend_cell_rows(cells)
    weighted = GammaGamma().fit(cx, cm, weights)
    times = weights.astype(int)
    repeated = GammaGamma().fit(np.repeat(cx, times), np.repeat(cm, times))
    assert weighted.customers == repeated.customers == 3000
    for name, value in repeated.params.items():
        assert math.isclose(weighted.params[name], value, rel_tol=1e-6), name
    assert math.isclose(weighted.log_likelihood, repeated.log_likelihood, rel_tol=1e-9)


def test_gamma_gamma_on_the_cells_is_within_a_tenth_of_a_percent_of_the_exact_fit():
    """Three digits put each mean within 0.5% of its own; the parameters move far less
    (measured here at 20k drawn customers: docs/segments.md quotes the figure)."""
    x, m = drawn_population(20_000, seed=11)
    exact = GammaGamma().fit(x, m)
    cells = counted(x, m)
    assert len(cells) < 20_000 / 2  # they do gather customers
    on_cells = GammaGamma().fit(*churn_risk.spend_cell_rows(cells))
    assert exact.converged and on_cells.converged
    for name, value in exact.params.items():
        assert math.isclose(on_cells.params[name], value, rel_tol=1e-3), name


def test_fit_on_cells_takes_gamma_gamma_from_the_spend_cells_without_a_state():
    x, m = drawn_population(400, seed=2)
    spend = counted(x, m)
    day = {"0:100:100": 600, "2:90:120": 150, "5:40:130": 250}
    scorer = churn_risk.fit_on_cells({**day, **spend}, 140 * DAY, None, "mbgnbd")
    alone = GammaGamma().fit(*churn_risk.spend_cell_rows(spend))
    assert scorer.spend.params == alone.params
    assert scorer.model.customers == 1000  # the spend cells are not BTYD rows
    with pytest.raises(ValueError, match=r"^spend cell gg:1:5e0 holds -2 customers"):
        churn_risk.fit_on_cells({**day, **spend, "gg:1:5e0": -2}, 140 * DAY, None)

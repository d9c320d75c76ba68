"""Wake-ups by day cell (streams.state.due_cells; S10 item 2).

A cell's bounds hold the churn crossing of every customer in it, and tightly; a new
model's plan has, for every customer whose due time the new model could make late, an
entry in its shard no later than its crossing, and leaves out the cells whose customers
all crossed before the watermark. The crossings here are the reference's: the first
millisecond at which 1 - P(alive) (tests/reference_btyd, from the papers) reaches the
level, found by bisection; the cells are counted here too.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from online_models.churn import MODELS
from online_models.churn_risk import ChurnScorer
from online_models.days import UTC_DAYS, days_in
from streams.audiences.definitions import AudienceSet
from streams.audiences.evaluate import churn_thresholds
from streams.state import due_cells
from tests.reference_btyd import reference_crossing

DAY = 86_400_000
TOKYO_MS = 9 * 3_600_000


def scorer(model: str, params: dict, threshold: float = 0.7) -> ChurnScorer:
    fitted = MODELS[model]()
    fitted.params = dict(params)
    return ChurnScorer(fitted, threshold=threshold)


params_st = st.fixed_dictionaries({
    "r": st.floats(0.1, 3.0), "alpha": st.floats(0.5, 30.0),
    "a": st.floats(0.05, 0.95), "b": st.floats(0.5, 8.0),
})  # fmt: skip


@settings(max_examples=80, deadline=None)
@given(model=st.sampled_from(["bgnbd", "mbgnbd"]), params=params_st,
       x=st.integers(0, 12), first_day=st.integers(19_000, 20_000),
       span=st.integers(1, 400), level=st.floats(0.2, 0.95),
       tokyo=st.booleans(), seed=st.integers(0, 2**16))  # fmt: skip
def test_a_cells_bounds_hold_every_customer_in_it_and_tightly(model, params, x, first_day,
                                                             span, level, tokyo, seed):  # fmt: skip
    days = days_in("Asia/Tokyo") if tokyo else UTC_DAYS
    offset = TOKYO_MS if tokyo else 0
    last_day = first_day + (span if x > 0 else 0)
    f0, f1 = first_day * DAY - offset, (first_day + 1) * DAY - offset - 1
    l0, l1 = last_day * DAY - offset, (last_day + 1) * DAY - offset - 1
    assert days.start_ms(first_day) == f0 and days.start_ms(last_day) == l0
    rng = np.random.default_rng(seed)
    customers = [(f1, l0), (f0, l1)]  # the corners: the earliest and the latest crossing
    for _ in range(6):
        first = int(rng.integers(f0, f1 + 1))
        last = int(rng.integers(l0, l1 + 1)) if x > 0 else int(rng.integers(first, f1 + 1))
        customers.append((first, last))
    if x == 0:  # one purchase day: the corners are its first purchase's
        customers[:2] = [(f0, f0), (f1, f1)]

    got = scorer(model, params).crossing_bounds_ms(
        np.array([x]), (np.array([f0]), np.array([f1])), (np.array([l0]), np.array([l1])),
        level)  # fmt: skip
    lo, hi = float(got[0][0]), float(got[1][0])
    crossings = [reference_crossing(model, params, x, first, last, level)
                 for first, last in customers]  # fmt: skip
    for crossing in crossings:
        if crossing is None:
            assert hi == math.inf  # one may never cross: no latest time
        else:
            assert lo <= crossing <= hi
    if all(c is None for c in crossings[:1]):  # the earliest corner never crosses: nobody
        assert lo == math.inf
    earliest, latest = crossings[:2]
    if earliest is not None:
        assert earliest - lo <= 3 * due_cells_slack()
    if latest is not None:
        assert hi - latest <= 3 * due_cells_slack()


def due_cells_slack() -> int:
    from online_models.churn_risk import CROSSING_SLACK_MS

    return CROSSING_SLACK_MS


OLD = {"r": 0.6, "alpha": 9.0, "a": 0.45, "b": 2.5}
NEW = {"r": 0.5, "alpha": 6.0, "a": 0.6, "b": 2.0}  # its customers die sooner, mostly
AS_OF = 20_300 * DAY + 15 * 3_600_000


def population(n: int, seed: int) -> list[tuple[int, int, int, int, str]]:
    """(shard, x, first, last, cell) of ``n`` customers in 4 shards: most bought once or
    twice long ago, some are recent and frequent."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        age = int(rng.integers(1, 700))
        first = AS_OF - age * DAY + int(rng.integers(0, DAY))
        x = int(rng.choice([0, 1, 2, 5, 9], p=[0.5, 0.2, 0.15, 0.1, 0.05]))
        if x == 0:
            last = first + int(rng.integers(0, (AS_OF - first) % DAY + 1))
            last = min(last, (first // DAY + 1) * DAY - 1)
        else:
            last = first + int(rng.integers(1, age + 1)) * DAY
            last = min(last, AS_OF)
            if last // DAY == first // DAY:
                x = 0
        out.append((i % 4, x, first, last, f"{x}:{first // DAY}:{last // DAY}"))
    return out


@pytest.mark.parametrize("model", ["bgnbd", "mbgnbd"])
def test_the_plan_wakes_every_customer_a_new_model_could_make_late(model):
    customers = population(600, seed=11)
    shard_cells: list[dict[str, int]] = [{} for _ in range(4)]
    for shard, *_, cell in customers:
        shard_cells[shard][cell] = shard_cells[shard].get(cell, 0) + 1
    shard_cells[2]["gg:1:25e0"] = 7  # a spend cell: not a day cell, never planned
    levels = ([0.7, 0.4], [0.7, 0.4])  # the alert's and an audience's churn_risk >= 0.4
    wake = due_cells.plan(shard_cells, scorer(model, OLD), scorer(model, NEW), levels,
                          AS_OF, UTC_DAYS)  # fmt: skip

    must, left_out = 0, 0
    for shard, x, first, last, cell in customers:
        for level in levels[1]:
            old = reference_crossing(model, OLD, x, first, last, level)
            new = reference_crossing(model, NEW, x, first, last, level)
            # its due time holds the old crossing, still ahead; the new one may be earlier
            if new is not None and (old is None or old > AS_OF):
                must += 1
                assert wake[due_cells.entry(shard, cell)] <= new, (shard, cell, level)
    for shard, cells in enumerate(shard_cells):
        for cell in cells:
            if cell.startswith("gg:"):
                assert due_cells.entry(shard, cell) not in wake
            elif due_cells.entry(shard, cell) not in wake:
                left_out += 1
    assert set(wake) <= {due_cells.entry(s, c) for s, cells in enumerate(shard_cells)
                         for c in cells}  # fmt: skip
    assert must > 20 and left_out > 20  # both kinds are here: it is not "every cell"


def test_without_an_old_model_every_cell_that_can_cross_is_planned():
    """The first model: nobody has a churn due time yet; BG/NBD's one-day customers
    never cross (no repeat purchase), so their cells need nothing."""
    customers = population(200, seed=5)
    shard_cells: list[dict[str, int]] = [{} for _ in range(4)]
    for shard, *_, cell in customers:
        shard_cells[shard][cell] = 1
    wake = due_cells.plan(shard_cells, None, scorer("bgnbd", NEW), ([], [0.7]), AS_OF,
                          UTC_DAYS)  # fmt: skip
    want = {due_cells.entry(shard, cell) for shard, x, *_, cell in customers if x > 0}
    assert set(wake) == want
    for shard, x, first, last, cell in customers:
        if x > 0:
            crossing = reference_crossing("bgnbd", NEW, x, first, last, 0.7)
            assert crossing is None or wake[due_cells.entry(shard, cell)] <= crossing


def test_an_empty_or_spend_only_shard_plans_nothing():
    assert due_cells.plan([{}, {"gg:2:5e1": 3}], None, scorer("bgnbd", NEW), ([], [0.7]),
                          AS_OF, UTC_DAYS) == {}  # fmt: skip


def audiences(*fields: dict) -> AudienceSet:
    defined = [{"id": f"a{i}", "name": f"a{i}", "when": leaf} for i, leaf in enumerate(fields)]
    return AudienceSet.model_validate({"audiences": defined})


def test_the_levels_are_the_alerts_and_each_churn_conditions():
    alert = scorer("bgnbd", NEW, threshold=0.7)
    assert churn_thresholds(None, alert) == [0.7]
    both = audiences({"field": "churn_risk", "gte": 0.5}, {"field": "p_alive", "lt": 0.2},
                     {"field": "frequency", "gte": 3})  # fmt: skip
    assert churn_thresholds(both, alert) == pytest.approx([0.5, 0.7, 0.8])
    # CLV turns at a time no day cell bounds (the spend counts): customer by customer
    assert churn_thresholds(audiences({"field": "clv", "gte": 100}), alert) is None

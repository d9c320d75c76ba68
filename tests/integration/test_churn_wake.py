"""A new churn model wakes its customers by day cell (S10 item 2), against a real Redis:
customers bought through the worker's batch processing (their ``d:`` index entries
written with their state), a model published, the cells planned (no state read), and
the leader's ticks then alert each armed customer at the first tick whose watermark
reaches its crossing under the model in force: never later, whatever the model before
said. The crossings are tests/reference_btyd's (from the papers, by bisection).
"""

from __future__ import annotations

import numpy as np
import pytest

from online_models.churn import BGNBD
from online_models.churn_risk import ChurnScorer
from streams.processing import worker
from streams.processing.worker import Rescorer
from streams.state.claims import claim_whole
from streams.state.store import publish_churn_model, read_churn_model, read_stats, write_due
from tests.integration.test_rfm_refresh import Shop
from tests.reference_btyd import reference_crossing

pytestmark = pytest.mark.integration

DAY = 86_400_000
AS_OF = 20_300 * DAY + 15 * 3_600_000
OLD = {"r": 1.0, "alpha": 2.0, "a": 0.9, "b": 1.0}
NEW = {"r": 0.9, "alpha": 1.5, "a": 0.95, "b": 0.9}  # its customers die sooner, mostly
TICKS = [AS_OF + k * 5 * DAY for k in range(80)]  # 400 days of ticks, 5 days apart


def purchases(n: int, seed: int) -> dict[str, list[int]]:
    """Each customer's purchase times (ms): 1 to 7 purchase days within the 300 days
    before AS_OF, at any millisecond of the day."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        start = AS_OF // DAY - int(rng.integers(5, 300))
        days = sorted(
            {
                start,
                *(
                    start + int(d)
                    for d in rng.integers(0, AS_OF // DAY - start, int(rng.integers(0, 7)))
                ),
            }
        )
        out[f"w{i:03d}"] = [d * DAY + int(rng.integers(0, DAY)) for d in days]  # fmt: skip
    return out


def crossing(params: dict, times: list[int]) -> int | None:
    days = {t // DAY for t in times}
    return reference_crossing("bgnbd", params, len(days) - 1, min(times), max(times), 0.7)


def publish(shop: Shop, params: dict) -> dict:
    """Publish a BG/NBD with ``params`` (alert at 0.7, re-arm below 0.5) as the refit does,
    and plan its wake-ups: what the refit's result reports of them."""
    old = read_churn_model(shop.client, shop.keys)
    model = BGNBD()
    model.params = dict(params)
    scorer = ChurnScorer(model, threshold=0.7, rearm_below=0.5)
    scorer.version = publish_churn_model(shop.client, shop.keys, scorer, {"as_of_ms": AS_OF})
    models = worker.current_models(shop.client, shop.keys, shop.settings, churn=scorer)
    return worker.wake_for_model(shop.client, shop.keys, shop.settings, old, models, AS_OF)


def tick_until(shop: Shop, watermark: int) -> dict[str, int]:
    """The leader's ticks at ``watermark`` until nobody is due: customer -> alert time."""
    shop.at(watermark)
    alerts = {}
    for _ in range(10):
        out = shop.run(Rescorer(shop.processor, share=1.0).tick())
        alerts.update({a.customer_id: a.at_ms for a in out.alerts})
        if not out.states:
            break
    return alerts


@pytest.mark.parametrize("by", ["cells", "walk"])
def test_a_new_model_alerts_each_customer_at_the_first_tick_past_its_crossing(
    settings, redis_client, monkeypatch, by
):
    """By day cell in a fresh namespace (no state read), and by the walk that stands in
    for it where the cell members are not whole: the same alerts at the same ticks."""
    if by == "cells":
        assert all(claim_whole(redis_client, settings.namespace).values())  # a fresh one
    shop = Shop(settings, redis_client)
    bought = purchases(150, seed=21)
    shop.buy([(cid, t) for cid, times in bought.items() for t in times])
    if by == "cells":
        monkeypatch.setattr(worker, "read_states_sync", lambda *a: pytest.fail("a state read"))

    # The first model: nobody had a churn due time; every cell that can cross is planned.
    first = publish(shop, OLD)
    assert first["rescheduled_by"] == by and first.get("cell_entries", 1) > 0
    alerted = tick_until(shop, AS_OF)
    old = {cid: crossing(OLD, times) for cid, times in bought.items()}
    assert set(alerted) == {cid for cid, c in old.items() if c is not None and c <= AS_OF}
    assert 10 < len(alerted) < 140  # some crossed already, some did not
    for cid, at in alerted.items():  # walked to its crossing, or at the watermark
        assert abs(at - old[cid]) <= 1_000 or at == AS_OF

    # Everyone evaluated at the watermark (as an audience backfill does): a crossing the
    # next model puts before it is behind their clocks, and must still wake them.
    write_due(redis_client, shop.keys, dict.fromkeys(bought, AS_OF), mode="lt")
    assert tick_until(shop, AS_OF) == {}
    # Another model: the customers still armed cross when it says, many of them earlier
    # than the due times the first one gave them.
    second = publish(shop, NEW)
    assert second["rescheduled_by"] == by
    new = {cid: crossing(NEW, times) for cid, times in bought.items()}
    armed = [cid for cid in bought if cid not in alerted]
    earlier = [cid for cid in armed if new[cid] is not None and (old[cid] is None or
                                                                  new[cid] < old[cid])]  # fmt: skip
    assert len(earlier) > 20  # the case the cells are for
    seen: dict[str, tuple[int, int]] = {}
    for k, watermark in enumerate(TICKS):
        for cid, at in tick_until(shop, watermark).items():
            seen.setdefault(cid, (k, at))
    for cid in armed:
        c = new[cid]
        if c is None or c > TICKS[-1]:
            assert cid not in seen, cid
            continue
        k = next(k for k, w in enumerate(TICKS) if w >= c)
        assert seen[cid][0] == k, (cid, c, seen.get(cid))  # the first tick past it, not later
        assert abs(seen[cid][1] - c) <= 1_000 or seen[cid][1] == TICKS[k]
    assert (read_stats(redis_client, shop.keys).get("woken_by_cell", 0) > 0) == (by == "cells")
    assert redis_client.zcard(shop.keys.due_cells) == 0 or all(
        score > TICKS[-1] for _, score in redis_client.zrange(shop.keys.due_cells, 0, -1,
                                                              withscores=True))  # fmt: skip


def test_without_whole_cell_members_the_new_model_walks(settings, redis_client):
    """A namespace whose index may lack customers' cells (it applied events before they
    were kept, and `rtba verify --repair` has not run) re-schedules by a walk."""
    shop = Shop(settings, redis_client)
    bought = purchases(20, seed=3)
    shop.buy([(cid, t) for cid, times in bought.items() for t in times])
    result = publish(shop, OLD)
    assert result == {"rescheduled_by": "walk", "rescheduled": result["rescheduled"]}
    assert result["rescheduled"] > 0 and redis_client.zcard(shop.keys.due_cells) == 0

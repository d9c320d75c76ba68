"""Customers ranked by churn risk from the day cells (S10), against a real Redis: the
customers bought through the worker's batch processing, a model published, then every
page (by cursor and by offset, through the reader and the API) equal to the test's own
ranking: P(alive) from tests/reference_btyd on each customer's own purchase times,
ascending (churn risk descending), ties by id. The walk that stands in where the cells
do not hold everyone ranks the same.
"""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from online_models.churn import BGNBD, ModifiedBGNBD
from online_models.churn_risk import ChurnScorer
from streams.api.app import create_api
from streams.processing.schemas import iso
from streams.read.reader import StateReader
from streams.read.risk_ranking import page as risk_page
from streams.state.claims import claim_whole, mark_whole
from streams.state.store import publish_churn_model
from tests.integration.test_rfm_refresh import Shop
from tests.reference_btyd import p_alive, summary_weeks

pytestmark = pytest.mark.integration

DAY = 86_400_000
AS_OF = 20_300 * DAY + 15 * 3_600_000
PARAMS = {"r": 0.9, "alpha": 6.0, "a": 0.8, "b": 2.5}


def purchases(seed: int) -> dict[str, list[int]]:
    """Purchase times (ms): 40 first-time buyers of one day (the largest cell), 80
    customers with 1 to 7 purchase days in the 300 days before AS_OF at any millisecond,
    one with two orders on its only day, two regulars long gone."""
    rng = np.random.default_rng(seed)
    out = {f"one{i:02d}": [20_250 * DAY + int(rng.integers(0, DAY))] for i in range(40)}
    for i in range(80):
        start = AS_OF // DAY - int(rng.integers(5, 300))
        repeats = rng.integers(0, AS_OF // DAY - start, int(rng.integers(0, 7)))
        days = {start, *(start + int(d) for d in repeats)}
        out[f"w{i:02d}"] = sorted(d * DAY + int(rng.integers(0, DAY)) for d in days)
    out["twice"] = [20_200 * DAY + 1_000, 20_200 * DAY + 5_000_000]
    # two regulars long gone, both shown churn risk 1.0: P(alive) still ranks the one gone
    # longer first, though its id comes second
    for cid, start in (("gone-b", 700), ("gone-a", 650)):
        out[cid] = [(AS_OF // DAY - start + d) * DAY + 7 for d in range(30)]
    return out


def expected(model: str, bought: dict[str, list[int]], as_of: int) -> list[tuple[float, str]]:
    return sorted((p_alive(model, PARAMS, *summary_weeks(times, as_of)), cid)
                  for cid, times in bought.items())  # fmt: skip


@pytest.fixture(params=["bgnbd", "mbgnbd"])
def ranked_shop(request, settings, redis_client):
    assert all(claim_whole(redis_client, settings.namespace).values())  # a fresh namespace
    shop = Shop(settings, redis_client)
    bought = purchases(seed=5)
    shop.buy([(cid, t) for cid, times in bought.items() for t in times])
    shop.at(AS_OF)
    model = (BGNBD if request.param == "bgnbd" else ModifiedBGNBD)()
    model.params = dict(PARAMS)
    scorer = ChurnScorer(model, threshold=0.7, rearm_below=0.5)
    scorer.version = publish_churn_model(redis_client, shop.keys, scorer, {"as_of_ms": AS_OF})
    return shop, request.param, bought, scorer


def test_every_page_by_cursor_and_offset_is_the_reference_ranking(ranked_shop):
    shop, model, bought, scorer = ranked_shop
    reader = StateReader(shop.settings, shop.client)
    for as_of in (AS_OF, AS_OF + 90 * DAY):
        want = expected(model, bought, as_of)
        for limit in (1, 7, 50):
            seen, after = [], None
            while True:
                rows, after, total = reader.by_churn_risk(as_of, limit, after)
                assert total == len(bought) and len(rows) <= limit
                seen += [(row["p_alive"], row["customer_id"]) for row in rows]
                if after is None:
                    break
            assert [c for _, c in seen] == [c for _, c in want]
            assert np.allclose([p for p, _ in seen], [p for p, _ in want], rtol=1e-9, atol=0)
        for offset in range(0, len(bought) + 13, 13):
            rows, _, _ = reader.by_churn_risk(as_of, 13, None, offset)
            assert [r["customer_id"] for r in rows] == [c for _, c in want[offset : offset + 13]]
    # the first page reads the cells it needs, not everyone (the one-day cell is 40 of 123)
    first = risk_page(shop.client, shop.keys, scorer, shop.settings.days(), AS_OF, 5)
    assert first.read < len(bought) // 2


def test_the_api_pages_by_cursor_and_the_walk_ranks_alike(ranked_shop):
    shop, model, bought, scorer = ranked_shop
    want = [c for _, c in expected(model, bought, AS_OF)]
    with TestClient(create_api(shop.settings), base_url="http://127.0.0.1:8000") as api:
        seen, after = [], None
        while True:
            params = {"order_by": "churn_risk", "limit": 9} | ({"after": after} if after else {})
            page = api.get("/customers", params=params).json()
            assert page["as_of"] == iso(AS_OF) and page["total"] == len(bought)
            seen += [row["customer_id"] for row in page["customers"]]
            # churn risk shown descending; equal shown risks keep P(alive)'s order
            risks = [row["churn_risk"] for row in page["customers"]]
            assert risks == sorted(risks, reverse=True)
            after = page["next"]
            if after is None:
                break
        assert seen == want
        top = api.get("/customers", params={"order_by": "churn_risk", "limit": 2}).json()
        assert [(r["customer_id"], r["churn_risk"]) for r in top["customers"]] == [
            ("gone-b", 1.0), ("gone-a", 1.0)]  # fmt: skip
        cursor = api.get("/customers", params={"order_by": "churn_risk", "limit": 3}).json()
        # a cursor carries its moment: another as_of is refused, not mixed
        mixed = api.get("/customers", params={"order_by": "churn_risk", "after": cursor["next"],
                                               "as_of": iso(AS_OF + DAY)})  # fmt: skip
        assert mixed.status_code == 422 and "as_of" in mixed.json()["detail"]
        made_up = api.get("/customers", params={"order_by": "churn_risk", "after": "w01"})
        assert made_up.status_code == 422 and "next" in made_up.json()["detail"]
        # the index without every cell's members (an older namespace): the walk, same order
        shop.client.delete(shop.keys.cell_members)
        walked = api.get("/customers", params={"order_by": "churn_risk", "limit": 1000}).json()
        assert [row["customer_id"] for row in walked["customers"]] == want
        refused = api.get("/customers", params={"order_by": "churn_risk", "after": cursor["next"]})
        assert refused.status_code == 422 and "verify --repair" in refused.json()["detail"]
        mark_whole(shop.client, shop.settings.namespace)  # as `rtba verify --repair` does
        # a refit between pages: the old cursor is refused, said how to go on
        scorer.version = publish_churn_model(shop.client, shop.keys, scorer, {"as_of_ms": AS_OF})
        stale = api.get("/customers", params={"order_by": "churn_risk", "after": cursor["next"]})
        assert stale.status_code == 422 and "start again" in stale.json()["detail"]

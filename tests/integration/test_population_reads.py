"""Reads whose cost does not grow with the population (S10): an audience's members page is
one ZRANGE by rank; `GET /segments`, the dashboard sample and `rtba segments` read the
population facts, never the customers' states. On the session's real Redis, in a namespace
of each test's own; no worker (the shop run through the real worker: test_api.py)."""

from __future__ import annotations

import json

import pytest

from streams.audiences.definitions import parse
from streams.processing.schemas import iso
from streams.read.audiences import member_rows
from streams.state.keys import Keys
from streams.state.store import publish_audiences

pytestmark = pytest.mark.integration


def test_an_audience_page_is_one_zrange_by_rank_in_entry_order(settings, redis_client):
    keys = Keys(settings.namespace)
    when = {"field": "monetary", "gte": 1}
    publish_audiences(redis_client, keys, parse(json.dumps(
        {"audiences": [{"id": "big", "name": "Big", "when": when}]})))  # fmt: skip
    entered = {"c3": 1_000, "c1": 2_000, "c2": 2_000, "c0": 3_000, "c9": 4_000}
    redis_client.zadd(keys.audience_members("big"), entered)
    ranges = []
    zrange = redis_client.zrange

    def spy(name, start, end, **kw):
        ranges.append((start, end))
        return zrange(name, start, end, **kw)

    redis_client.zrange = spy
    # by entry time, ties by customer id: c3, then c1 and c2 (both at 2,000), c0, c9
    page = member_rows(redis_client, keys, "big", offset=1, limit=3)
    assert page == [{"customer_id": c, "entered": iso(entered[c])} for c in ("c1", "c2", "c0")]
    assert ranges == [(1, 3)]  # the page's ranks only, not the whole set
    everyone = member_rows(redis_client, keys, "big")
    assert [r["customer_id"] for r in everyone] == ["c3", "c1", "c2", "c0", "c9"]
    assert member_rows(redis_client, keys, "big", offset=5, limit=10) == []


DAY = 86_400_000
T0 = 1_780_000_000_000  # the watermark the test sets
# The test's own population: (segment or None, last purchase ms, purchases, cents, cluster)
CUSTOMERS = [
    ("Champions", T0 - 2 * DAY, 9, 270_000, 1),
    ("Champions", T0 - 4 * DAY, 5, 100_050, 1),
    ("Lost", T0 - 400 * DAY, 1, 5_000, 2),
    ("At Risk", T0 - 100 * DAY, 3, 12_345, 2),
    (None, None, 0, 0, 2),  # clicks only
    (None, None, 0, 0, None),  # no cluster yet
]


def write_facts(client, keys: Keys) -> None:
    """The population's facts, spread over two shards by the test (no state anywhere)."""
    for i, (segment, last_ms, purchases, cents, cluster) in enumerate(CUSTOMERS):
        shard = keys.facts(0 if i % 2 else 5)
        client.hincrby(shard, "customers", 1)
        if segment is None:
            client.hincrby(shard, "without_purchase", 1)
        else:
            for field, value in (("", 1), (":lp_ms", last_ms), (":purchases", purchases),
                                 (":cents", cents)):  # fmt: skip
                client.hincrby(shard, f"seg:{segment}{field}", value)
        if cluster is not None:
            client.hincrby(shard, f"cluster:{cluster}", 1)


def expected_segments(as_of_ms: int) -> dict[str, dict]:
    """Size and means of each segment the test's customers are in, customer by customer."""
    out = {}
    for name in {c[0] for c in CUSTOMERS if c[0]}:
        inside = [c for c in CUSTOMERS if c[0] == name]
        n = len(inside)
        out[name] = {"segment": name, "customers": n,
                     "mean_recency_days": sum((as_of_ms - c[1]) / DAY for c in inside) / n,
                     "mean_frequency": sum(c[2] for c in inside) / n,
                     "mean_monetary": sum(c[3] for c in inside) / 100 / n}  # fmt: skip
    return out


def put_snapshot(client, keys: Keys, ids: list[int]) -> None:
    import numpy as np

    from online_models.clusters import FEATURES, ClusterSnapshot

    width = len(FEATURES)
    snap = ClusterSnapshot(2, ids, np.eye(len(ids), width), np.zeros(width), np.ones(width))
    client.hset(keys.cluster_model, "json", json.dumps(snap.to_dict()))


def same(got: dict, want: dict) -> bool:
    close = {k: pytest.approx(v, rel=1e-12) if isinstance(v, float) else v
             for k, v in want.items()}  # fmt: skip
    return got == close


def test_segments_the_sample_and_metrics_read_the_facts_not_the_states(rtba_env, settings,
                                                                        redis_client):  # fmt: skip
    """The namespace holds facts and no customer state at all: every population figure
    still shows, so none of them walks the states (a walk would find nobody)."""
    from fastapi.testclient import TestClient

    from streams.api.app import create_api
    from streams.api.history import sizes_sample
    from streams.read.reader import StateReader
    from streams.state.store import all_customer_ids
    from tests.conftest import run_rtba

    keys = Keys(settings.namespace)
    write_facts(redis_client, keys)
    put_snapshot(redis_client, keys, [1, 2, 3])
    redis_client.hset(keys.watermark, "p:0", T0)  # one partition's mark: the watermark
    assert all_customer_ids(redis_client, keys) == []  # nobody to walk
    reader = StateReader(settings)
    assert reader.as_of() == T0

    api = TestClient(create_api(settings, reader), base_url="http://127.0.0.1:8000")
    summary = api.get("/segments").json()
    rows = {r["segment"]: r for r in summary["rfm"] if r["customers"]}
    want = expected_segments(T0)
    assert rows.keys() == want.keys() and all(same(rows[s], want[s]) for s in want)
    assert (summary["customers"], summary["without_purchase"]) == (6, 2)
    assert {r["id"]: r["customers"] for r in summary["clusters"]} == {1: 2, 2: 3, 3: 0}
    # as_of moves the mean recency, not the sizes
    later = api.get("/segments", params={"as_of": "2026-05-30T00:00:00Z"}).json()
    moved = expected_segments(1_780_099_200_000)
    assert all(same(r, moved[r["segment"]]) for r in later["rfm"] if r["customers"])
    # /clusters has the sizes too; /metrics the gauges
    assert [(c["id"], c["customers"]) for c in api.get("/clusters").json()["clusters"]] == [
        (1, 2), (2, 3), (3, 0)]  # fmt: skip
    metrics = api.get("/metrics").text
    assert "rtba_customers 6.0" in metrics
    assert 'rtba_segment_customers{segment="Champions"} 2.0' in metrics
    assert 'rtba_cluster_customers{cluster="2"} 3.0' in metrics
    # the dashboard's sample
    sample = sizes_sample(reader, 0, None)
    assert {k: v for k, v in sample["segments"].items() if v} == {
        s: w["customers"] for s, w in want.items()}  # fmt: skip
    assert sample["clusters"] == {"1": 2, "2": 3, "3": 0} and sample["customers"] == 6
    # the command line
    cli = json.loads(run_rtba(rtba_env, "segments", "--json").stdout)
    assert {r["segment"]: r["customers"] for r in cli["rfm"] if r["customers"]} == {
        s: w["customers"] for s, w in want.items()}  # fmt: skip
    reader.close()

"""The API's live feed and a worker's metrics, without a broker: what is kept, filtered,
resumed after, handed to a slow subscriber; lag series of partitions given away."""

from __future__ import annotations

import asyncio

from streams.api.feed import OutputFeed
from streams.processing.metrics import WorkerMetrics
from streams.settings import Settings


def feed(size: int) -> OutputFeed:
    return OutputFeed(Settings.from_env({"RTBA_HOME": "/tmp"}), size=size)


def change(cid: str, kind: str = "rfm") -> dict:
    return {"customer_id": cid, "kind": kind, "from": None, "to": "New"}


def alert(cid: str) -> dict:
    return {"customer_id": cid, "churn_risk": 0.8}


def test_the_feed_keeps_the_newest_and_filters_them():
    f = feed(size=5)
    for i in range(7):
        f.add(alert(f"c{i}") if i % 3 == 0 else change(f"c{i}", "cluster" if i == 4 else "rfm"))
    assert [i.seq for i in f.recent()] == [7, 6, 5, 4, 3]  # newest first, 5 kept
    assert [i.event["customer_id"] for i in f.recent({"churn"})] == ["c6", "c3"]
    assert [i.kind for i in f.recent({"cluster"})] == ["cluster"]
    assert [i.seq for i in f.recent(customer="c5")] == [6]
    assert [i.seq for i in f.recent(after=5)] == [7, 6]  # a reconnect after seq 5
    assert [i.seq for i in f.recent(limit=2)] == [7, 6]


def test_a_tombstone_drops_the_erased_customers_events_and_junk_is_skipped():
    import json

    f = feed(size=10)
    for cid in ("a", "gone", "b", "gone"):
        f._take(cid.encode(), json.dumps(change(cid)).encode())
    f._take(b"x", b"{not json")
    f._take(b"x", b"[1, 2]")
    f._take(b"gone", None)  # the erased customer's tombstone
    assert [i.event["customer_id"] for i in f.recent()] == ["b", "a"]
    f._take(b"c", json.dumps(alert("c")).encode())
    assert [i.seq for i in f.recent()] == [5, 3, 1]  # sequence numbers still only grow
    assert len(f.recent()) == 3 and f.forget("nobody") == 0


def test_a_slow_subscriber_loses_its_oldest_never_the_feed():
    async def scenario():
        f = feed(size=10_000)
        queue = f.subscribe()
        for i in range(1005):
            f.add(change(f"c{i}"))
        await asyncio.sleep(0)  # the calls the thread scheduled run now
        got = [queue.get_nowait().seq for _ in range(queue.qsize())]
        f.unsubscribe(queue)
        f.add(change("late"))
        await asyncio.sleep(0)
        return got, queue.qsize(), len(f.recent(limit=10_000))

    got, after_unsubscribe, kept = asyncio.run(scenario())
    assert got == list(range(6, 1006))  # the 1,000 newest, in order
    assert after_unsubscribe == 0 and kept == 1006


def test_metrics_drop_the_lag_of_partitions_given_away():
    m = WorkerMetrics()
    m.lags({0: 5, 1: 0, 2: -1})  # a fetch older than the batch: never negative
    m.held([1])
    text = {(s.name, tuple(s.labels.items())): s.value for f in m.registry.collect()
            for s in f.samples}  # fmt: skip
    assert {k: v for k, v in text.items() if k[0] == "rtba_consumer_lag"} == {
        ("rtba_consumer_lag", (("partition", "1"),)): 0.0
    }
    m.lags({2: 3})
    m.sent(
        ["invalid_json", "invalid_json"],
        [("churn_risk", b"{}"), ("segment_changes", b'{"kind": "cluster"}')],
    )
    values = {(s.name, tuple(s.labels.items())): s.value for f in m.registry.collect()
              for s in f.samples}  # fmt: skip
    assert values[("rtba_consumer_lag", (("partition", "2"),))] == 3
    assert values[("rtba_dlq_events_total", (("reason", "invalid_json"),))] == 2
    assert values[("rtba_emitted_events_total", (("kind", "cluster"),))] == 1
    assert values[("rtba_emitted_events_total", (("kind", "churn"),))] == 1

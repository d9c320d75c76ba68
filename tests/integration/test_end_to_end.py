"""Events in Kafka -> Faust worker -> Redis state and segment changes, checked
against a plain batch computation over the same events."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from online_models.quantiles import rfm_histograms
from producers.kafka import make_producer
from streams.state.facts import histogram_point
from streams.state.keys import Keys
from streams.state.store import connect, read_histograms, read_stats
from tests.conftest import assert_states_match_batch, consume_all, wait_for_records
from tests.reference import expected_segment_changes

pytestmark = pytest.mark.integration

BASE = datetime(2024, 1, 1, tzinfo=UTC)
CATS = ["books", "garden", "toys", "audio"]


def known_events(seed: int = 3, customers: int = 30) -> list[dict]:
    """Valid events with duplicated order ids, refunds, and out-of-order times."""
    rng = random.Random(seed)
    events: list[dict] = []
    for c in range(customers):
        cid = f"cust-{c:02d}"
        for p in range(rng.randint(1, 7)):
            when = BASE + timedelta(days=rng.uniform(0, 400), seconds=rng.randint(0, 86399))
            cat = rng.choice(CATS)
            amount = f"{rng.uniform(5, 400):.2f}"
            events.append({
                "event_id": f"e-{cid}-p{p}", "customer_id": cid, "type": "purchase",
                "order_id": f"o-{cid}-{p}", "amount": amount, "ts": when.isoformat(),
                "items": [{"product_id": f"x{p}", "category": cat, "quantity": rng.randint(1, 3),
                           "price": amount}],
                "ignored_field": "unknown fields are ignored",
            })  # fmt: skip
            if rng.random() < 0.2:  # the same order again: counts once, even with another amount
                dup = dict(events[-1], event_id=f"e-{cid}-p{p}-dup", amount="999.99")
                events.append(dup)
            if rng.random() < 0.15:
                refund = {
                    "event_id": f"e-{cid}-r{p}", "customer_id": cid, "type": "refund",
                    "order_id": f"o-{cid}-{p}", "amount": "3.10",
                    "ts": int((when + timedelta(days=2)).timestamp() * 1000),  # epoch ms form
                }  # fmt: skip
                events += [refund, dict(refund)]  # a redelivered refund counts once
        for k in range(rng.randint(0, 8)):
            when = BASE + timedelta(days=rng.uniform(0, 420))
            events.append({
                "event_id": f"e-{cid}-c{k}", "customer_id": cid, "type": "click",
                "action": rng.choice(["view", "add_to_cart", "search", "wishlist"]),
                "category": rng.choice(CATS), "ts": when.strftime("%Y-%m-%dT%H:%M:%S"),
            })  # fmt: skip
    rng.shuffle(events)  # production order is not time order
    return events


def bad_records() -> list[tuple[bytes, str]]:
    ok = {"event_id": "b1", "customer_id": "bad-1", "type": "purchase", "order_id": "ob",
          "amount": "10.00", "ts": "2024-02-01T00:00:00Z"}  # fmt: skip

    def variant(**changes) -> bytes:
        return json.dumps({**ok, **changes}).encode()

    far_future = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    return [
        (b'{"event_id": "x", "customer_id": ', "invalid_json"),
        (b"\xff\xfe\x00garbage", "invalid_json"),
        (b"[1, 2, 3]", "invalid_schema"),
        (variant(amount="-5.00"), "invalid_schema"),
        (variant(ts=1e300), "invalid_schema"),  # poison records that once lost their batch
        (variant(ts=1e15), "invalid_schema"),
        (variant(ts="Infinity").replace(b'"Infinity"', b"Infinity"), "invalid_schema"),
        (b"[" * 30_000 + b"]" * 30_000, "invalid_json"),
        (variant(amount="abc"), "invalid_schema"),
        (variant(amount="NaN"), "invalid_schema"),
        (variant(amount="50000000"), "absurd_amount"),
        (variant(ts=far_future), "ts_in_future"),
        (variant(ts="yesterday-ish"), "invalid_schema"),
        (variant(customer_id=123), "invalid_schema"),
        (variant(type="teleport"), "invalid_schema"),
        (
            json.dumps({"event_id": "m", "customer_id": "bad-2", "type": "purchase"}).encode(),
            "invalid_schema",
        ),  # fmt: skip
        (
            json.dumps(
                {
                    "event_id": "k",
                    "customer_id": "bad-3",
                    "type": "click",
                    "action": "dance",
                    "ts": "2024-01-01",
                }
            ).encode(),
            "invalid_schema",
        ),  # fmt: skip
        (variant(padding="x" * 70_000), "oversize"),
    ]


def test_stream_state_equals_batch_computation(rtba_env, settings, worker, redis_client):
    # Event-driven results only: the time-driven tick (tests/integration/test_time_driven.py)
    # would also decay the silent customers of this shuffled, year-long set.
    rtba_env["RTBA_TICK_S"] = "3600"
    rtba_env["RTBA_RFM_ADAPTIVE"] = "0"  # the reference scores with the configured edges
    events = known_events()
    sent_bad = bad_records()
    from streams.processing.topics import ensure_topics

    ensure_topics(settings)
    worker.start()
    producer = make_producer(settings.kafka_bootstrap)
    # Bad records interleaved with valid ones: bad input must not disturb the rest.
    stride = len(events) // len(sent_bad)
    for i, event in enumerate(events):
        if i % stride == 0 and i // stride < len(sent_bad):
            producer.send(settings.events_topic, key=b"bad", value=sent_bad[i // stride][0])
        producer.send(settings.events_topic, key=event["customer_id"], value=event)
    producer.flush()
    total = len(events) + len(sent_bad)
    wait_for_records(redis_client, settings, total, worker)

    # 1. Redis state == batch computation, customer by customer, field by field.
    got = assert_states_match_batch(settings, events)
    keys = Keys(settings.namespace)
    # The population histograms behind adaptive scores are exact, bucket for bucket.
    want_hists = rfm_histograms()
    for state in got.values():
        for name, bucket in (histogram_point(state) or {}).items():
            want_hists[name].counts[bucket] += 1
    got_hists = read_histograms(connect(settings.redis_url), keys)
    assert {n: +h.counts for n, h in got_hists.items()} == {
        n: +h.counts for n, h in want_hists.items()
    }
    stats = read_stats(redis_client, keys)
    assert stats["records"] == total
    assert stats["dlq"] == len(sent_bad)

    # 2. The expected segment changes, and only those, in order per customer.
    want_changes = expected_segment_changes(events)
    n_expected = sum(len(v) for v in want_changes.values())
    records = consume_all(settings.kafka_bootstrap, settings.segment_changes_topic, n_expected)
    got_changes: dict[str, list[tuple]] = {}
    ids = set()
    for record in records:
        change = json.loads(record.value)
        assert record.key.decode() == change["customer_id"]
        assert change["kind"] == "rfm"
        assert {"event_id", "from", "to", "at", "reason", "features"} <= set(change)
        ids.add(change["event_id"])
        got_changes.setdefault(change["customer_id"], []).append((change["from"], change["to"]))
    assert got_changes == want_changes
    assert len(ids) == len(records) == n_expected
    assert all(seq[0][0] is None for seq in got_changes.values())  # first assignment: from null

    # 3. Every bad record is on the DLQ, byte for byte, with its reason.
    dlq = consume_all(settings.kafka_bootstrap, settings.dlq_topic, len(sent_bad))
    assert len(dlq) == len(sent_bad)
    got_bad = sorted((r.value, dict(r.headers)["rtba.dlq.reason"].decode()) for r in dlq)
    assert got_bad == sorted(sent_bad)
    assert all(dict(r.headers)["rtba.dlq.detail"] for r in dlq)

"""A messy day through the real Kafka, a real worker and Redis: orders on one day, free
orders, partial, full and excess refunds (some before their order), repeated order and
refund ids, events out of order, unicode ids. Every profile and every segment change must
equal the independent batch computation of tests/reference.py, and the churn refit must
run (and say why when it cannot)."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta

import pytest

from producers.kafka import make_producer, send_watermark
from streams.processing.topics import ensure_topics
from tests.conftest import consume_all, json_lines, run_rtba, wait_for_records
from tests.reference import (
    DAY,
    batch_state,
    epoch_ms,
    expected_segment_changes,
    reference_segment,
)

pytestmark = pytest.mark.integration

BASE = datetime(2024, 11, 29, tzinfo=UTC)  # a Black Friday
END = BASE + timedelta(days=120)
IDS = ["客户-{}", "ünïcødé-{}", "😀{}", "o'brien {}", "{{brace}}-{}", "c{}"]


def purchase(cid, oid, when, amount, eid=None, **extra):
    return {"event_id": eid or f"p-{cid}-{oid}", "customer_id": cid, "type": "purchase",
            "order_id": oid, "amount": amount, "ts": when, **extra}  # fmt: skip


def refund(cid, oid, when, amount, eid):
    return {"event_id": eid, "customer_id": cid, "type": "refund", "order_id": oid,
            "amount": amount, "ts": when}  # fmt: skip


def at(days: float, hour: int = 12) -> str:
    return (BASE + timedelta(days=days, hours=hour)).isoformat()


def named_cases() -> list[dict]:
    """One customer per rule, in the order a producer sends them."""
    return [
        # two orders on one UTC day, far apart in time: x = 0, t_x = 0; then a repeat day
        purchase("same-day", "a", at(0, 0), "20.00"),
        purchase("same-day", "b", at(0, 23), "30.00"),
        purchase("same-day", "c", at(6), "5.00"),
        # a free sample, then a real order
        purchase("free", "f1", at(1), "0"),
        purchase("free", "f2", at(8), "40.00"),
        # partial refund, then the rest: the order is gone, the other stays
        purchase("refunded", "r1", at(2), "100.00"),
        purchase("refunded", "r2", at(9), "60.00"),
        refund("refunded", "r1", at(3), "30.00", "rf-1"),
        refund("refunded", "r1", at(4), "70.00", "rf-2"),
        # a refund before its order (same key: same partition, so it really comes first)
        refund("early", "e1", at(5), "15.00", "re-1"),
        purchase("early", "e1", at(4), "50.00"),
        refund("early", "e1", at(7), "10.00", "re-2"),
        # a repeated order id with another amount, and a redelivered refund
        purchase("repeat", "x1", at(3), "25.00"),
        purchase("repeat", "x1", at(3), "999.00", eid="p-repeat-x1-again"),
        refund("repeat", "x1", at(4), "5.00", "rx-1"),
        refund("repeat", "x1", at(4), "5.00", "rx-1"),
        # more refunded than was paid: capped at the order
        purchase("excess", "g1", at(10), "12.00"),
        purchase("excess", "g2", at(20), "12.00"),
        refund("excess", "g2", at(21), "500.00", "rg-1"),
        # every order refunded: the customer leaves its segment, then comes back
        purchase("gone", "h1", at(2), "80.00"),
        refund("gone", "h1", at(3), "80.00", "rh-1"),
        purchase("gone", "h2", at(30), "15.00"),
    ]


def random_cases(seed: int = 8, customers: int = 120) -> list[dict]:
    rng = random.Random(seed)
    events = []
    for c in range(customers):
        cid = rng.choice(IDS).format(c)
        for k in range(rng.randint(1, 6)):
            day = rng.uniform(0, 110)
            oid = f"{cid}/o{k}"
            amount = rng.choice(["0", "9.99", f"{rng.uniform(1, 500):.2f}"])
            events.append(purchase(cid, oid, at(day, rng.randint(0, 23)), amount,
                                   items=[{"category": rng.choice(["gifts", "toys"]),
                                           "quantity": rng.randint(1, 3)}]))  # fmt: skip
            if rng.random() < 0.3:  # a same-day second order
                events.append(purchase(cid, oid + "b", at(int(day), 23), "7.50"))
            if rng.random() < 0.3:
                share = rng.choice(["0.5", "1", "2"])  # half, all, more than all
                amount_due = float(amount) * float(share) or 1.0
                events.append(refund(cid, oid, at(day + rng.uniform(-2, 5)),
                                     f"{amount_due:.2f}", f"{oid}/r"))  # fmt: skip
            if rng.random() < 0.1:
                events.append(dict(events[-1]))  # redelivered by the producer
        for k in range(rng.randint(0, 4)):
            events.append(
                {
                    "event_id": f"{cid}/c{k}",
                    "customer_id": cid,
                    "type": "click",
                    "action": rng.choice(["view", "add_to_cart", "wishlist"]),
                    "category": "gifts",
                    "ts": int(epoch_ms(at(rng.uniform(0, 110)))),
                }
            )
    rng.shuffle(events)  # production order is not time order
    return events


def test_a_messy_day_equals_the_batch_computation(rtba_env, settings, worker, redis_client):
    rtba_env.update(RTBA_TICK_S="3600", RTBA_RFM_ADAPTIVE="0", RTBA_CHURN_REFIT_S="1",
                    RTBA_CLUSTER_WARMUP="1000000")  # fmt: skip
    ensure_topics(settings)
    worker.start()
    # Before any event: the refit cannot run, and says why, in the log and in `segments`.
    deadline = time.monotonic() + 60
    while "churn refit did not run" not in worker.log_path.read_text(errors="replace"):
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.5)
    log = worker.log_path.read_text(errors="replace")
    line = next(x for x in log.splitlines() if "churn refit did not run" in x)
    assert "WARNING" in line and "no event time yet" in line
    before = json.loads(run_rtba(rtba_env, "segments", "--json").stdout)["models"]["churn"]
    assert before["version"] == 0 and "no event time" in before["last_error"]["reason"]

    events = named_cases() + random_cases()
    producer = make_producer(settings.kafka_bootstrap)
    for event in events:
        producer.send(settings.events_topic, key=event["customer_id"], value=event)
    sent = len(events) + send_watermark(producer, settings.events_topic, END.isoformat())
    producer.flush()
    wait_for_records(redis_client, settings, sent, worker)

    expected = batch_state(events)
    profiles = json_lines(
        run_rtba(rtba_env, "profile", "--all", "--as-of", END.isoformat(), "--json").stdout
    )
    got = {p["customer_id"]: p for p in profiles}
    assert set(got) == set(expected)
    end_ms = epoch_ms(END.isoformat())
    for cid, want in expected.items():
        p = got[cid]
        assert p["purchases"] == want["purchases"], cid
        assert p["purchase_days"] == want["purchase_days"], cid
        assert p["monetary"] == pytest.approx(float(want["monetary"]), abs=1e-9), cid
        assert p["repeat_value"] == pytest.approx(float(want["repeat_value"]), abs=1e-9), cid
        if want["purchases"] == 0:
            assert p["first_purchase"] is None and p["segment"] is None and p["btyd"] is None
            continue
        first, last = want["first_purchase_ms"], want["last_purchase_ms"]
        assert epoch_ms(p["first_purchase"]) == first and epoch_ms(p["last_purchase"]) == last
        x = want["purchase_days"] - 1
        assert p["btyd"]["x"] == x
        assert p["btyd"]["t_x_days"] == pytest.approx((last - first) / DAY if x else 0.0)
        assert p["btyd"]["T_days"] == pytest.approx((end_ms - first) / DAY)
        recency = (end_ms - last) / DAY
        assert p["segment"] == reference_segment(recency, want["purchases"], want["monetary"])

    # the named rules, spelled out
    assert (got["same-day"]["purchases"], got["same-day"]["btyd"]["x"]) == (3, 1)
    assert (got["free"]["purchases"], got["free"]["monetary"]) == (2, 40.0)
    assert (got["refunded"]["purchases"], got["refunded"]["monetary"]) == (1, 60.0)
    assert (got["early"]["purchases"], got["early"]["monetary"]) == (1, 25.0)
    assert (got["repeat"]["purchases"], got["repeat"]["monetary"]) == (1, 20.0)
    assert (got["excess"]["purchases"], got["excess"]["monetary"]) == (1, 12.0)

    # every segment change, in order per customer, including leaving a segment
    want_changes = expected_segment_changes(events)
    n_expected = sum(len(v) for v in want_changes.values())
    records = consume_all(settings.kafka_bootstrap, settings.segment_changes_topic, n_expected)
    got_changes: dict[str, list[tuple]] = {}
    for record in records:
        change = json.loads(record.value)
        if change["kind"] == "rfm":
            got_changes.setdefault(change["customer_id"], []).append((change["from"], change["to"]))
    assert got_changes == want_changes
    assert want_changes["gone"] == [(None, "New"), ("New", None), (None, "New")]

    # the refit runs on this population, and its version and age show in `segments`
    fitted = json.loads(run_rtba(rtba_env, "churn", "fit", "--json").stdout)
    assert fitted["customers"] == sum(1 for w in expected.values() if w["purchases"])
    # a population the sample holds whole is fitted on its exact rows (the cells, exact to
    # the day only, are for larger ones: tests/integration/test_refit_cells.py)
    assert fitted["fitted_on"] == "everyone"
    models = json.loads(run_rtba(rtba_env, "segments", "--json").stdout)["models"]
    assert models["churn"]["version"] >= fitted["version"] >= 1
    assert models["churn"]["last_error"] is None and models["churn"]["age_s"] >= 0
    assert models["churn"]["model"] == "mbgnbd"
    stats = json_lines(run_rtba(rtba_env, "stats", "--json").stdout)[0]["counters"]
    assert stats.get("dlq", 0) == 0

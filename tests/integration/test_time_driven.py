"""Time-driven evaluation through real Kafka and Redis: a cohort that stops buying
raises churn-risk events once the watermark passes each customer's crossing, the
active cohort (nearly) none; a silent Champion decays with no events of its own."""

from __future__ import annotations

import json
import random
import re
import time
from datetime import UTC, datetime, timedelta

import pytest

from online_models.customer import MS_PER_DAY
from producers.kafka import make_producer, send_watermark
from streams.processing.schemas import iso
from streams.processing.topics import ensure_topics
from streams.state.keys import Keys
from streams.state.store import connect, read_churn_model
from tests.conftest import (
    WorkerProcess,
    buckets_due_by,
    consume_all,
    json_lines,
    run_rtba,
    wait_for_records,
)
from tests.reference import RECENCY_EDGES, batch_state, epoch_ms, reference_segment

pytestmark = pytest.mark.integration

BASE = datetime(2024, 1, 1, tzinfo=UTC)
CHURN_AFTER, END_WEEK = 20, 60  # churners stop after week 20; the others buy to the end


def purchases(seed: int = 5) -> tuple[list[dict], set[str], set[str]]:
    rng = random.Random(seed)
    events, active, churners = [], set(), set()
    for c in range(120):
        cid = f"k{c:03d}"
        stop = CHURN_AFTER if c % 2 else END_WEEK
        (churners if c % 2 else active).add(cid)
        week = rng.uniform(0, 1)
        while week < stop:
            ts = BASE + timedelta(weeks=week)
            oid = f"{cid}-{week:.4f}"
            amount = f"{rng.uniform(20, 80):.2f}"
            events.append({"event_id": oid, "customer_id": cid, "type": "purchase",
                           "order_id": oid, "amount": amount, "ts": ts.isoformat()})  # fmt: skip
            week += rng.uniform(0.5, 1.5)
    for w in range(10):  # the champion: ten weekly orders of 300, then silence
        ts = BASE + timedelta(weeks=w)
        events.append({"event_id": f"champ-{w}", "customer_id": "champ", "type": "purchase",
                       "order_id": f"champ-{w}", "amount": "300",
                       "ts": ts.isoformat()})  # fmt: skip
    events.sort(key=lambda e: e["ts"])
    return events, active, churners


def week_ms(week: float) -> int:
    return int((BASE + timedelta(weeks=week)).timestamp() * 1000)


def test_churners_alerted_after_crossing_and_champion_decays(rtba_env, settings, worker,
                                                             redis_client, capsys):  # fmt: skip
    # Watermark = max event time - 2 weeks: no purchase is ever processed behind it.
    rtba_env.update(RTBA_TICK_S="0.2", RTBA_CHURN_REFIT_S="3600", RTBA_ALLOWED_LATENESS_S="1209600",
                    RTBA_RFM_ADAPTIVE="0")  # fmt: skip
    events, active, churners = purchases()
    reference = batch_state(events)
    churners.add("champ")  # it stopped buying too
    ensure_topics(settings)
    worker.start()
    producer = make_producer(settings.kafka_bootstrap)
    sent = 0

    def send_until(week: float) -> None:
        nonlocal sent
        while events and epoch_ms(events[0]["ts"]) < week_ms(week):
            event = events.pop(0)
            producer.send(settings.events_topic, key=event["customer_id"], value=event)
            sent += 1
        # The watermark trails the events by two weeks: no event arrives behind it.
        sent += send_watermark(producer, settings.events_topic, iso(week_ms(week - 2)))

    # Phase 1: twenty weeks in which everybody buys; fit the churn model on them.
    send_until(CHURN_AFTER + 2)
    wait_for_records(redis_client, settings, sent, worker)
    # As of week 22, when every event before it is in: at the watermark (week 20) no one
    # has been silent yet, a -> 0 runs onto its bound, and such a fit is not put in force
    # (docs/decisions.md S9); two silent weeks of the churners give a converged one.
    as_of = iso(week_ms(CHURN_AFTER + 2))
    fitted = json.loads(run_rtba(rtba_env, "churn", "fit", "--as-of", as_of, "--json").stdout)
    assert fitted["model"] == "mbgnbd" and fitted["customers"] == 121
    assert set(fitted["params"]) == {"r", "alpha", "a", "b"}

    # Phase 2: the rest of the year week by week, then eight silent weeks.
    for week in range(CHURN_AFTER + 3, END_WEEK + 3):
        send_until(week)
    wait_for_records(redis_client, settings, sent, worker)
    final_watermark = week_ms(END_WEEK)
    keys = Keys(settings.namespace)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the leader's tick catches up with the watermark
        if not buckets_due_by(redis_client, settings.namespace, final_watermark):
            break
        time.sleep(0.3)

    alerts = consume_all(settings.kafka_bootstrap, settings.churn_risk_topic, len(churners))
    alerted = [json.loads(r.value) for r in alerts]
    flagged = {a["customer_id"] for a in alerted}
    true_positive = len(flagged & churners)
    precision = true_positive / len(flagged) if flagged else 0.0
    recall = true_positive / len(churners)
    with capsys.disabled():
        print(f"\nchurn alerts: {len(alerted)}, precision {precision:.3f}, recall {recall:.3f}")
    assert recall >= 0.9 and precision >= 0.9
    assert len(flagged) == len(alerted)  # one alert per customer: no re-arming without a purchase

    # Each churner's alert sits at the first millisecond its risk reaches 0.7, behind the
    # watermark: found here by bisection on the published MBG/NBD P(alive) formula.
    params = read_churn_model(connect(settings.redis_url), keys).model.params
    for alert in alerted:
        if alert["customer_id"] in churners:
            want = first_ms_at_risk(reference[alert["customer_id"]], params, 0.7)
            assert abs(epoch_ms(alert["at"]) - want) <= 1
            assert epoch_ms(alert["at"]) <= final_watermark
            assert alert["churn_risk"] >= alert["threshold"] == 0.7
            assert alert["model"] == "mbgnbd"

    # The champion went silent after week 9 and decays with no event of its own.
    changes = consume_all(settings.kafka_bootstrap, settings.segment_changes_topic, 1, timeout=10)
    champ = [json.loads(r.value) for r in changes if r.key == b"champ"]
    champ = [c for c in champ if c["kind"] == "rfm"]
    timed = [(c["from"], c["to"], epoch_ms(c["at"])) for c in champ if c["reason"] == "time"]
    assert [c for c in champ if c["reason"] == "purchase"][-1]["to"] == "Champions"
    expected = decay(week_ms(9), final_watermark)
    assert timed == expected and len(expected) >= 2

    profile = json_lines(run_rtba(rtba_env, "profile", "champ", "--json").stdout)[0]
    assert profile["segment"] == expected[-1][1]
    assert 0 <= profile["p_alive"] <= 1 and profile["churn_risk"] == pytest.approx(
        1 - profile["p_alive"]
    )
    assert profile["expected_purchases_30d"] >= 0 and profile["predicted_clv_365d"] is not None


def first_ms_at_risk(customer: dict, params: dict, threshold: float) -> int:
    """Batislam et al. (2007): P(alive | x, t_x, T) = 1 / (1 + a / (b + x) *
    ((alpha + T) / (alpha + t_x)) ** (r + x)), in weeks; x counts purchase days after the
    first, t_x = 0 for a single purchase day. The first ms with 1 - P(alive) >= threshold."""
    week = 7 * MS_PER_DAY
    first, last = customer["first_purchase_ms"], customer["last_purchase_ms"]
    x = customer["purchase_days"] - 1
    t_x = (last - first) / week if x else 0.0
    r, alpha, a, b = (params[k] for k in ("r", "alpha", "a", "b"))

    def risky(ms: int) -> bool:
        big_t = (ms - first) / week
        odds = a / (b + x) * ((alpha + big_t) / (alpha + t_x)) ** (r + x)
        return 1 - 1 / (1 + odds) >= threshold

    lo, hi = last, last + 1
    while not risky(hi):
        hi = lo + 2 * (hi - lo)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if risky(mid) else (mid, hi)
    return hi


@pytest.mark.parametrize("setting", [None, "6"], ids=["as-made", "topic-smaller-than-setting"])
def test_two_workers_each_rescore_the_customers_of_their_own_partitions(
    rtba_env, settings, redis_client, tmp_path, setting
):
    """The re-scoring tick runs on every worker, over the due customers of the partitions
    it holds. With two workers sharing the partitions, 48 silent Champions in every
    partition decay one edge at a time, each change at the exact millisecond it crosses:
    a tick on the leader alone would leave the other worker's customers where they were.
    Also when RTBA_PARTITIONS says 6 of a topic made with 3: the shards go by the topic's
    own count, or those of partitions 3-5 would be nobody's."""
    # Event time moves only with the explicit watermark, sent once every purchase is in: a
    # burst of ten weeks' events over two workers must not move it first (see below).
    rtba_env.update(RTBA_TICK_S="0.2", RTBA_CHURN_REFIT_S="3600", RTBA_RFM_ADAPTIVE="0",
                    RTBA_ALLOWED_LATENESS_S=str(365 * 86_400))  # fmt: skip
    ensure_topics(settings)
    if setting:
        rtba_env["RTBA_PARTITIONS"] = setting
    workers = [WorkerProcess(rtba_env, tmp_path / f"w{n}.log").start() for n in (1, 2)]
    try:
        deadline = time.monotonic() + 180  # a second member's join is a rebalance
        while (held := [assigned_partitions(w) for w in workers]) and not (
            all(held) and sorted(held[0] + held[1]) == list(range(settings.partitions))
        ):
            assert time.monotonic() < deadline, logs(workers)
            time.sleep(0.3)
        producer = make_producer(settings.kafka_bootstrap)
        last_ms, sent = {}, 0
        for c in range(48):
            cid = f"w{c:02d}"
            for w in range(10):  # ten weekly orders of 300: a Champion at its last one
                ts = BASE + timedelta(weeks=w, hours=7 * c)
                producer.send(settings.events_topic, key=cid, value={
                    "event_id": f"{cid}-{w}", "customer_id": cid, "type": "purchase",
                    "order_id": f"{cid}-{w}", "amount": "300", "ts": ts.isoformat()})  # fmt: skip
                sent += 1
            last_ms[cid] = epoch_ms(ts.isoformat())
        producer.flush()
        # The watermark is the least of the partitions' marks, over the partitions that
        # have one: a partition whose first batch is not yet written does not hold it back.
        wait_for_records(redis_client, settings, sent, workers[0])
        until = max(last_ms.values()) + 200 * MS_PER_DAY
        sent += send_watermark(producer, settings.events_topic, iso(until))
        producer.flush()
        wait_for_records(redis_client, settings, sent, workers[0])
        deadline = time.monotonic() + 60
        while buckets_due_by(redis_client, settings.namespace, until):
            assert time.monotonic() < deadline, logs(workers)
            time.sleep(0.3)
        held = [assigned_partitions(w) for w in workers]
    finally:
        for w in workers:
            w.stop()
    assert all(held), "a rebalance left one worker without partitions"
    expected = {cid: decay(last, until) for cid, last in last_ms.items()}
    assert all(len(changes) >= 2 for changes in expected.values())
    records = consume_all(settings.kafka_bootstrap, settings.segment_changes_topic, 1, timeout=10)
    timed: dict[str, list] = {cid: [] for cid in last_ms}
    for change in map(json.loads, (r.value for r in records)):
        if change["kind"] == "rfm" and change["reason"] == "time":
            timed[change["customer_id"]].append((change["from"], change["to"],
                                                 epoch_ms(change["at"])))  # fmt: skip
    assert timed == expected


def decay(last_ms: int, until_ms: int) -> list[tuple[str, str, int]]:
    """A silent Champion's segment changes (from, to, ms) as event time goes to ``until``:
    one at the first millisecond past each recency edge that changes its segment."""
    current, changes = "Champions", []
    for edge in RECENCY_EDGES:
        at = last_ms + edge * MS_PER_DAY + 1
        if at > until_ms:
            break
        segment = reference_segment((at - last_ms) / MS_PER_DAY, 10, 3000)
        if segment != current:
            changes.append((current, segment, at))
            current = segment
    return changes


def logs(workers: list[WorkerProcess]) -> str:
    """Every worker's log tail, whole (a list's repr is cut short in pytest's report)."""
    return "\n".join(f"--- worker {n}:\n{w.log_tail()}" for n, w in enumerate(workers, 1))


def assigned_partitions(worker: WorkerProcess) -> list[int]:
    """The events partitions the worker's log says it holds now ([] before it says): its
    last "ready: partitions 0, 2 of ..." or "partitions moved: partitions 1 of ..." line."""
    text = worker.log_path.read_text(errors="replace")
    held = re.findall(r": partitions ((?:\d+, )*\d+|none) ", text)
    return [int(p) for p in held[-1].split(", ")] if held and held[-1] != "none" else []

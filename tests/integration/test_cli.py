"""The command line against the real stack and a real worker: what a person reads
(profiles, segment members, counters, the live outputs, the DLQ) checked against an
independent batch computation (tests/reference.py), a DLQ re-drive after a fix, a pipe
closed early, and wiping a namespace."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

import pytest

from producers.kafka import make_producer, send_watermark
from streams.audiences.definitions import EXAMPLE
from streams.settings import Settings
from streams.state.store import connect
from tests.conftest import (
    REPO,
    WorkerProcess,
    consume_all,
    env_for,
    run_rtba,
    send_with_hostile,
    wait_for_records,
)
from tests.reference import DAY, batch_state, epoch_ms, reference_segment

pytestmark = pytest.mark.integration

END = "2026-06-30T12:00:00Z"  # the watermark sent last: the profiles' "now"


def shop_events() -> list[dict]:
    """A Champion, a lapsed buyer, a newcomer, and 600 one-off buyers spread over a year."""
    end = epoch_ms(END)
    events = []

    def buy(cid, ts, amount, n):
        events.append(
            {
                "event_id": f"{cid}-{n}",
                "customer_id": cid,
                "type": "purchase",
                "order_id": f"{cid}-o{n}",
                "amount": amount,
                "ts": ts,
            }
        )

    for n in range(9):
        buy("champ", end - (20 - 2 * n) * DAY, "300.00", n)
    buy("lapsed", end - 400 * DAY, "50.00", 0)
    buy("newbie", end - DAY // 2, "20.00", 0)
    for i in range(600):
        buy(f"f{i:03d}", end - (i % 365) * DAY - 3_600_000, f"{10 + i % 250}.50", 0)
    return sorted(events, key=lambda e: e["ts"])


def expected_segments(events: list[dict]) -> dict[str, str]:
    as_of = epoch_ms(END)
    return {
        cid: reference_segment(
            (as_of - s["last_purchase_ms"]) / DAY, s["purchase_days"], s["monetary"]
        )
        for cid, s in batch_state(events).items()
    }


@dataclass
class Shop:
    env: dict
    settings: Settings
    events: list[dict]
    worker: WorkerProcess
    client: object


@pytest.fixture(scope="module")
def shop(real_stack, tmp_path_factory):
    """A worker that has taken the shop's events, two hostile records and the watermark.
    One per module: the tests that change it (a re-drive, a reset) come last."""
    from streams.processing.topics import ensure_topics

    base = tmp_path_factory.mktemp("shop")
    env = env_for(real_stack, base / "home")
    env["RTBA_TICK_S"] = "3600"  # event-driven results only
    env["RTBA_RFM_ADAPTIVE"] = "0"  # the reference scores with the configured edges
    settings = Settings.from_env(env)
    ensure_topics(settings)
    # the example audiences, so the API's audience routes have members to show
    run_rtba(env, "audience", "apply", str(EXAMPLE))
    worker = WorkerProcess(env, base / "worker.log").start()
    client = connect(settings.redis_url)
    events = shop_events()
    producer = make_producer(settings.kafka_bootstrap)
    send_with_hostile(producer, settings.events_topic, events, hostile_at=300)
    marks = send_watermark(producer, settings.events_topic, END)
    producer.close()
    try:
        wait_for_records(client, settings, len(events) + 2 + marks, worker)
        yield Shop(env, settings, events, worker, client)
    finally:
        worker.stop()
        client.close()


def rtba(env, *args, check=True):
    return run_rtba(env, *args, check=check)


def stored_segments(events: list[dict]) -> dict[str, str]:
    """Each customer's segment as of its own latest event: what a worker stores when no
    tick re-scores it later (RTBA_TICK_S=3600 in the shop). Every shop event is a
    purchase, so each customer's last event is its last purchase."""
    return {
        cid: reference_segment(0.0, s["purchase_days"], s["monetary"])
        for cid, s in batch_state(events).items()
    }


def test_members_and_profiles_match_the_batch_computation(shop):
    rtba_env = shop.env
    # with --as-of, the segments of that time (a walk); without, the stored ones (the index)
    for as_of, want in ((["--as-of", END], expected_segments(shop.events)),
                        ([], stored_segments(shop.events))):  # fmt: skip
        by_segment: dict[str, list] = defaultdict(list)
        for cid, segment in sorted(want.items()):
            by_segment[segment].append(cid)
        # the shop spans several segments as of END; stored, each was seen at its last
        # purchase (recency 0): New or Champions
        assert len(by_segment) >= (4 if as_of else 2)
        for segment, customers in by_segment.items():
            done = rtba(rtba_env, "members", "--segment", segment, "--limit", "10000",
                        "--json", *as_of)  # fmt: skip
            rows = [json.loads(line) for line in done.stdout.splitlines()]
            assert [r["customer_id"] for r in rows] == customers, segment
        limited = rtba(rtba_env, "members", "--segment", want["f000"], "--limit", "3", *as_of)
        assert limited.stdout.splitlines() and len(limited.stdout.splitlines()) == min(
            3, len(by_segment[want["f000"]]))  # fmt: skip

    text = rtba(rtba_env, "profile", "champ").stdout
    state = batch_state(shop.events)["champ"]
    first = time.strftime("%Y-%m-%d", time.gmtime(state["first_purchase_ms"] / 1000))
    last = time.strftime("%Y-%m-%d", time.gmtime(state["last_purchase_ms"] / 1000))
    assert text.splitlines()[0].startswith(f"champ  {want['champ']}")
    assert f"{state['purchases']} purchases on {state['purchase_days']} days" in text
    assert f"{state['monetary']:,.2f} spent" in text and f"first {first}, last {last}" in text
    assert "no churn model yet" in text  # nothing fitted in this test: said, not blank

    missing = rtba(rtba_env, "profile", "champ", "nobody", check=False)
    assert missing.returncode == 1 and "no customer 'nobody'" in missing.stderr
    assert missing.stdout.startswith("champ")


def test_stats_counts_what_was_sent_with_readable_times(shop):
    rtba_env = shop.env
    out = rtba(rtba_env, "stats").stdout
    counters = dict(
        line.split()
        for line in out.splitlines()[1:]
        if line and not line.startswith(("watermark", "latest", "churn model"))
    )
    assert int(counters["dlq"].replace(",", "")) == 2
    assert int(counters["dlq:absurd_amount"]) == 1 and int(counters["dlq:invalid_json"]) == 1
    assert "watermark        2026-06-30 12:00:00 UTC" in out
    assert "churn model      none in force" in out  # nothing fitted here; a refit's error shows


def test_tail_follows_the_outputs_with_filters(shop):
    rtba_env, settings = shop.env, shop.settings
    # at least one, then drained: every change the worker sent
    changes = consume_all(settings.kafka_bootstrap, settings.segment_changes_topic, 1)
    first = rtba(rtba_env, "tail", "--from-start", "--count", "5", "--json").stdout
    assert len(first.splitlines()) == 5
    champ = rtba(
        rtba_env, "tail", "--from-start", "--customer", "champ", "--timeout", "3", "--json"
    ).stdout
    # its segment changes and its audience changes (the example set is in force)
    moves = consume_all(settings.kafka_bootstrap, settings.audience_changes_topic, 1)
    want = [
        json.loads(r.value)["event_id"]
        for r in [*changes, *moves]
        if json.loads(r.value)["customer_id"] == "champ"
    ]
    got = [json.loads(line)["event_id"] for line in champ.splitlines()]
    assert sorted(got) == sorted(want) and got  # one partition per customer: all of its own
    none = rtba(rtba_env, "tail", "--from-start", "--kind", "churn", "--timeout", "2").stdout
    assert none == ""  # no churn model, no alert
    plain = rtba(rtba_env, "tail", "--from-start", "--customer", "newbie", "--timeout", "2").stdout
    assert plain.splitlines() == [
        f"{json.loads(r.value)['at'][:19].replace('T', ' ')}  newbie  "
        f"rfm      (new) -> New  (purchase)"
        for r in changes
        if json.loads(r.value)["customer_id"] == "newbie"
    ]


def test_dlq_shows_reasons_and_redrives_after_a_fix(shop):
    rtba_env, settings, worker, redis_client = shop.env, shop.settings, shop.worker, shop.client
    rows = [json.loads(line) for line in rtba(rtba_env, "dlq", "--json").stdout.splitlines()]
    assert sorted(r["reason"] for r in rows) == ["absurd_amount", "invalid_json"]
    assert {r["payload"][:9] for r in rows} >= {"{not json"}
    # The fix: a shop whose orders can be that large. The worker restarts with it.
    worker.stop()
    worker.env = {**rtba_env, "RTBA_MAX_AMOUNT": "5000000"}
    worker.start()
    done = rtba(worker.env, "dlq", "--redrive", "--reason", "absurd_amount")
    assert "re-drove 1 records" in done.stderr
    deadline = time.monotonic() + 60
    while not redis_client.exists(f"{settings.namespace}:c:{{whale}}"):
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.3)
    profile = json.loads(rtba(worker.env, "profile", "whale", "--json").stdout)
    assert Decimal(str(profile["monetary"])) == Decimal("2500000")
    again = rtba(worker.env, "dlq", "--redrive", "--reason", "absurd_amount")
    assert "nothing in" in again.stderr  # remembered: a second re-drive sends nothing twice


def test_a_pipe_closed_early_ends_quietly(shop):
    rtba_env = shop.env
    """`rtba profile --all --json | head -1`: 603 profiles, far more than a pipe holds."""
    done = subprocess.run(
        f"{sys.executable} -m streams.cli profile --all --json | head -1",
        shell=True,
        env=rtba_env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(done.stdout)["customer_id"]
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_reset_wipes_exactly_the_namespace(shop):
    """Last in the module: it wipes the shop."""
    rtba_env, settings, worker, redis_client = shop.env, shop.settings, shop.worker, shop.client
    refused = rtba(rtba_env, "reset", "--yes", check=False)
    assert refused.returncode == 1 and "stop the workers" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    neighbour = {**rtba_env, "RTBA_NAMESPACE": settings.namespace + ".eu"}  # a prefix-sharer
    redis_client.set(f"{neighbour['RTBA_NAMESPACE']}:keep", "1")
    worker.stop()
    rtba(rtba_env, "reset", "--yes")
    assert list(redis_client.scan_iter(match=f"{settings.namespace}:*")) == []
    assert redis_client.get(f"{neighbour['RTBA_NAMESPACE']}:keep") == b"1"
    from streams.processing.topics import admin_client

    admin = admin_client(settings.kafka_bootstrap)
    try:
        deadline = time.monotonic() + 30
        while set(admin.list_topics()) & set(settings.all_topics):
            assert time.monotonic() < deadline, "topics still there"
            time.sleep(0.5)
    finally:
        admin.close()

"""Faults on the real stack (S4): a worker killed between its Redis write and its Kafka
send, many times; Redis writes whose replies are lost, in batches and in ticks. Every
customer's state must equal the batch computation, and every output event must reach
Kafka: none lost, duplicates only with equal ids and equal content, and the highest
sequence per customer and kind on its current segment."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time

import pytest
import redis
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from launcher import stack
from producers.kafka import make_producer
from streams.processing.topics import ensure_topics
from streams.settings import Settings
from streams.state.keys import Keys
from streams.state.store import read_stat
from tests.conftest import (
    WorkerProcess,
    assert_states_match_batch,
    consume_all,
    outbox_indexed,
    run_rtba,
)
from tests.integration.test_end_to_end import known_events
from tests.reference import applied_events, expected_segment_changes

pytestmark = pytest.mark.integration

# `make bench` runs the SIGKILL scenario at full size (RTBA_FAULT_SCALE=7.5: ~100k events);
# `make test` at a size that proves the point (~13k events).
SCALE = float(os.environ.get("RTBA_FAULT_SCALE", "1"))
CRASH_EXIT = 70  # streams.processing.faults: the code a crash_before_send fault point exits with


def committed_by_partition(settings) -> dict[int, int]:
    """The worker group's committed offset on each partition of the events topic."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap.split(","))
    try:
        offsets = admin.list_group_offsets(settings.app_id).get(settings.app_id, {})
    except KafkaError:  # a broker just started: no group coordinator yet
        offsets = {}
    finally:
        admin.close()
    topic = settings.events_topic
    return {tp.partition: m.offset for tp, m in offsets.items() if tp.topic == topic}


def committed(settings) -> int:
    return sum(committed_by_partition(settings).values())


class Supervisor:
    """Restarts the worker whenever a fault point kills it, as systemd or Kubernetes
    would, and records how long each restart took to make progress again."""

    def __init__(self, env: dict, log_path, client, settings):
        self.env, self.log_path = env, log_path
        self.client, self.keys = client, Keys(settings.namespace)
        self.worker: WorkerProcess | None = None
        self.crashes = 0
        self.resumed_after: list[float] = []
        self._restarted_at: float | None = None
        self._records_at_restart = 0

    def start(self) -> None:
        env = {**self.env, "RTBA_FAULT_SEED": str(self.crashes)}  # a new draw each life
        self.worker = WorkerProcess(env, self.log_path).start()

    def records(self) -> int:
        return read_stat(self.client, self.keys, "records")

    def poll(self) -> None:
        code = self.worker.proc.poll()
        if code is not None:
            assert code == CRASH_EXIT, f"worker exited with {code}:\n{self.worker.log_tail()}"
            self.crashes += 1
            self._restarted_at, self._records_at_restart = time.monotonic(), self.records()
            self.start()
        elif self._restarted_at is not None and self.records() > self._records_at_restart:
            self.resumed_after.append(time.monotonic() - self._restarted_at)
            self._restarted_at = None

    def stop(self) -> None:
        if self.worker:
            self.worker.stop()


def run_until_settled(supervisor: Supervisor, settings, redis_client, total: int, timeout=300):
    """Until every record's offset is committed and the outbox is empty."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        supervisor.poll()
        if committed(settings) >= total and not outbox_indexed(redis_client, settings.namespace):
            return
        time.sleep(0.5)
    raise AssertionError(
        f"not settled: committed {committed(settings)}/{total}, outbox "
        f"{outbox_indexed(redis_client, settings.namespace)}:\n{supervisor.worker.log_tail()}"
    )


def run_supervised(rtba_env, settings, redis_client, tmp_path, events, linger_s=0.0):
    """Produce ``events`` and run a supervised worker until they are settled; with
    ``linger_s``, let it run (ticks, with their own faults) that long and settle again."""
    ensure_topics(settings)
    total = produce(settings, events)
    supervisor = Supervisor(rtba_env, tmp_path / "worker.log", redis_client, settings)
    supervisor.start()
    try:
        run_until_settled(supervisor, settings, redis_client, total)
        if linger_s:
            time.sleep(linger_s)
            run_until_settled(supervisor, settings, redis_client, total)
    finally:
        supervisor.stop()
    return supervisor


def distinct_changes(settings, expected: int) -> dict[str, list[dict]]:
    """The segment changes on the topic, per customer in sequence order, after checking
    that a duplicate is the same event byte for byte."""
    by_id: dict[str, bytes] = {}
    records = consume_all(settings.kafka_bootstrap, settings.segment_changes_topic, expected,
                          distinct=lambda r: json.loads(r.value)["event_id"])  # fmt: skip
    for record in records:
        assert by_id.setdefault(json.loads(record.value)["event_id"], record.value) == record.value
    print(f"\nsegment-change records {len(records)}, distinct {len(by_id)}, "
          f"duplicates {len(records) - len(by_id)}")  # fmt: skip
    out: dict[str, list[dict]] = {}
    for value in by_id.values():
        change = json.loads(value)
        out.setdefault(change["customer_id"], []).append(change)
    for changes in out.values():
        changes.sort(key=lambda c: c["seq"])
        seqs = [c["seq"] for c in changes]
        assert len(set(seqs)) == len(seqs), "two changes of one customer share a seq"
    return out


def assert_chains_end_on_state(changes: dict[str, list[dict]], states: dict) -> None:
    """No change lost, of either kind: in sequence order each starts where the one before
    ended (the first from null), and the one with the highest seq ends on the customer's
    current membership."""

    def cluster(state):
        return None if state.cluster_id is None else str(state.cluster_id)

    for kind, current in (("rfm", lambda state: state.segment), ("cluster", cluster)):
        for cid, state in states.items():
            chain = [c for c in changes.get(cid, []) if c["kind"] == kind]
            ends = [None] + [c["to"] for c in chain]
            assert [c["from"] for c in chain] == ends[:-1], (cid, kind, chain)
            assert ends[-1] == current(state), (cid, kind)


def assert_outputs_match_reference(settings, events) -> None:
    """State equals the batch computation; the distinct RFM changes equal the reference's
    list exactly (the tick is off in these scenarios); every chain ends on the state."""
    states = assert_states_match_batch(settings, events)
    want = expected_segment_changes(events)
    got = distinct_changes(settings, sum(len(v) for v in want.values()))
    assert rfm_chains(got) == want
    assert_chains_end_on_state(got, states)


def rfm_chains(changes: dict[str, list[dict]]) -> dict[str, list[tuple]]:
    """Per customer, the (from, to) of its RFM changes in sequence order."""
    chains = {cid: [(c["from"], c["to"]) for c in cs if c["kind"] == "rfm"]
              for cid, cs in changes.items()}  # fmt: skip
    return {cid: chain for cid, chain in chains.items() if chain}


def assert_facts_verified(rtba_env) -> None:
    """The population facts equal `rtba verify`'s walk over the states (workers stopped)."""
    done = run_rtba(rtba_env, "verify", "--json", check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def produce(settings, events) -> int:
    producer = make_producer(settings.kafka_bootstrap)
    for event in events:
        producer.send(settings.events_topic, key=event["customer_id"], value=event)
    producer.flush()
    producer.close()
    return len(events)


def test_crash_between_redis_write_and_kafka_send(rtba_env, settings, redis_client, tmp_path):
    rtba_env.update({
        "RTBA_TICK_S": "3600",  # event-driven changes only: the reference's own list
        "RTBA_RFM_ADAPTIVE": "0",
        "RTBA_BATCH_SIZE": "40",
        "RTBA_FAULTS": "crash_before_send=0.12",
    })  # fmt: skip
    events = known_events(seed=11, customers=250)
    supervisor = run_supervised(rtba_env, settings, redis_client, tmp_path, events)

    assert supervisor.crashes >= 5, f"only {supervisor.crashes} crashes: the test proves little"
    assert_outputs_match_reference(settings, events)
    applied = read_stat(redis_client, Keys(settings.namespace), "applied")
    assert applied == sum(len(v) for v in applied_events(events).values())  # none twice
    assert_facts_verified(rtba_env)  # each crashed write moved the facts once, or not at all
    print(f"\n{supervisor.crashes} crashes; resumed after {supervisor.resumed_after} s")
    assert max(supervisor.resumed_after, default=0) <= 10


def test_redis_reply_lost_after_write_in_batches_and_ticks(
    rtba_env, settings, redis_client, tmp_path
):
    # The tick runs (time-driven changes, cluster sweeps): the chain of each customer's
    # changes is the check, since the reference lists event-driven changes only.
    rtba_env.update({
        "RTBA_TICK_S": "0.5",
        "RTBA_RFM_ADAPTIVE": "0",
        "RTBA_BATCH_SIZE": "40",
        "RTBA_FAULTS": "drop_after_write=0.25,drop_after_tick_write=0.6",
        "RTBA_CLUSTER_WARMUP": "300",
        "RTBA_CLUSTER_SNAPSHOT_EVERY": "200",
    })  # fmt: skip
    events = known_events(seed=12, customers=250)
    run_supervised(rtba_env, settings, redis_client, tmp_path, events, linger_s=3)
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert log.count("during a batch (fault injected at drop_after_write") >= 5
    assert "during a re-scoring tick (fault injected at drop_after_tick_write" in log
    assert "Traceback" not in log

    states = assert_states_match_batch(settings, events)
    got = distinct_changes(settings, 1)
    everything = [c for cs in got.values() for c in cs]
    # the tick wrote too: time-driven changes and cluster sweeps, under the same faults
    assert any(c["reason"] == "time" for c in everything)
    assert any(c["kind"] == "cluster" for c in everything)
    print(f"\n{log.count('fault injected')} lost replies; {len(everything)} changes")

    assert_chains_end_on_state(got, states)
    assert_facts_verified(rtba_env)  # a retried batch or tick moved no fact twice


def renamed(events: list[dict], tag: str) -> list[dict]:
    """The same shapes under new event and order ids: new events, not repeats."""
    out = []
    for e in events:
        e = dict(e, event_id=f"{tag}-{e['event_id']}")
        if "order_id" in e:
            e["order_id"] = f"{tag}-{e['order_id']}"
        out.append(e)
    return out


def test_recreated_topic_events_are_applied(rtba_env, settings, redis_client, worker):
    """The events topic deleted and re-created (or Kafka's data wiped while Redis kept its
    state): offsets restart at 0, below every customer's applied offset."""
    rtba_env.update({"RTBA_TICK_S": "3600", "RTBA_RFM_ADAPTIVE": "0"})
    first = known_events(seed=13, customers=40)
    ensure_topics(settings)
    produce(settings, first)
    worker.start()
    wait_committed(settings, worker, len(first))
    worker.stop()

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap.split(","))
    try:
        admin.delete_topics([settings.events_topic])
        deadline = time.monotonic() + 60
        while settings.events_topic in admin.list_topics():
            assert time.monotonic() < deadline, "the topic was not deleted"
            time.sleep(0.2)
    finally:
        admin.close()
    ensure_topics(settings)
    # Fewer records than before, so every new offset is below an applied one.
    second = renamed(known_events(seed=14, customers=40), "again")[: len(first) // 2]
    produce(settings, second)
    worker.start()
    wait_committed(settings, worker, len(second))

    assert_states_match_batch(settings, first + second)
    applied = read_stat(redis_client, Keys(settings.namespace), "applied")
    assert applied == sum(len(v) for v in applied_events(first + second).values())
    assert "the events topic was re-created" in worker.log_path.read_text(errors="replace")


def wait_committed(settings, worker: WorkerProcess, total: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while committed(settings) < total:
        assert worker.proc.poll() is None, worker.log_tail()
        assert time.monotonic() < deadline, f"not committed:\n{worker.log_tail()}"
        time.sleep(0.5)


def test_redis_killed_mid_stream_loses_nothing(rtba_env, settings, worker, tmp_path):
    """redis-server SIGKILLed under load and restarted from its append-only file
    (appendfsync always, the stack's default): no acknowledged write is lost, so no event
    whose offset was committed is missing from the state."""
    home, port = tmp_path / "redis-home", stack.free_port()
    pid = stack.start_redis(home, port, fsync="always")
    url = f"redis://127.0.0.1:{port}/0"
    rtba_env.update({"REDIS_URL": url, "RTBA_TICK_S": "3600", "RTBA_RFM_ADAPTIVE": "0",
                     "RTBA_BATCH_SIZE": "100"})  # fmt: skip
    local = Settings.from_env(rtba_env)
    client = redis.Redis.from_url(url)
    events = known_events(seed=15, customers=600)
    half = len(events) // 2
    try:
        ensure_topics(local)
        worker.start()
        produce(local, events[:half])
        deadline = time.monotonic() + 60
        while read_stat(client, Keys(local.namespace), "records") < half // 3:
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)  # mid-stream: the worker is writing batches
        stack._reap(pid)
        produce(local, events[half:])
        time.sleep(2)
        pid = stack.start_redis(home, port, fsync="always")
        wait_committed(local, worker, len(events))
        assert_states_match_batch(local, events)
        log = worker.log_path.read_text(errors="replace")
        assert "Redis unavailable" in log and "Redis is back" in log
        outage = [line for line in log.splitlines() if "Redis" in line]
        assert len(outage) <= 10, "\n".join(outage)  # a line per outage, not per retry
    finally:
        worker.stop()
        client.close()
        stack.stop_pid(pid)


def test_broker_restart_loses_nothing_and_logs_little(rtba_env, worker, tmp_path, redis_client):
    """The broker stopped and restarted mid-stream (its own broker: the session's stays
    up): no event lost, and the worker's log stays short through the outage."""
    home = tmp_path / "kafka-home"
    port, cport = stack.free_port(), stack.free_port()
    pid = stack.start_kafka(home, port, cport, 3)
    rtba_env.update({"KAFKA_BOOTSTRAP": f"127.0.0.1:{port}", "RTBA_TICK_S": "3600",
                     "RTBA_RFM_ADAPTIVE": "0", "RTBA_BATCH_SIZE": "100"})  # fmt: skip
    local = Settings.from_env(rtba_env)
    keys = Keys(local.namespace)
    events = known_events(seed=16, customers=800)
    try:
        ensure_topics(local)
        worker.start()
        flow = produce_slowly(local, events, seconds=25)  # under load: the producer buffers
        deadline = time.monotonic() + 60
        while read_stat(redis_client, keys, "records") < len(events) // 4:
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.1)
        stack.stop_pid(pid)
        stopped_at = len(worker.log_path.read_text(errors="replace").splitlines())
        time.sleep(7)
        pid = stack.start_kafka(home, port, cport, 3)
        before = read_stat(redis_client, keys, "records")
        deadline = time.monotonic() + 60
        while read_stat(redis_client, keys, "records") == before:
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.2)
        outage = worker.log_path.read_text(errors="replace").splitlines()[stopped_at:]
        flow.join()
        wait_committed(local, worker, len(events))
        assert_states_match_batch(local, events)
        assert len(outage) < 20, "\n".join(outage)
        print(f"\n{len(outage)} log lines through the outage:\n" + "\n".join(outage))
    finally:
        worker.stop()
        stack.stop_pid(pid)


def produce_slowly(settings, events, seconds: float) -> threading.Thread:
    """Produce ``events`` spread over about ``seconds``, in the background."""

    def run():
        producer = make_producer(settings.kafka_bootstrap)
        step = max(1, len(events) // 100)
        for at in range(0, len(events), step):
            for event in events[at : at + step]:
                producer.send(settings.events_topic, key=event["customer_id"], value=event)
            producer.flush()
            time.sleep(seconds / 100)
        producer.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_worker_sigkilled_five_times_while_events_flow(rtba_env, settings, redis_client, tmp_path):
    rtba_env.update({"RTBA_TICK_S": "3600", "RTBA_RFM_ADAPTIVE": "0", "RTBA_BATCH_SIZE": "100"})
    events = known_events(seed=17, customers=int(1500 * SCALE))
    ensure_topics(settings)
    keys = Keys(settings.namespace)
    flow = produce_slowly(settings, events, seconds=60 if SCALE <= 1 else 100)
    worker = WorkerProcess(rtba_env, tmp_path / "worker.log").start()
    rng, resumed = random.Random(5), []
    try:
        for _ in range(5):
            time.sleep(rng.uniform(3, 8))
            worker.proc.send_signal(signal.SIGKILL)
            worker.proc.wait()
            before = read_stat(redis_client, keys, "records")
            restarted = time.monotonic()
            worker.start()
            while read_stat(redis_client, keys, "records") <= before:
                assert time.monotonic() - restarted < 60, worker.log_tail()
                time.sleep(0.1)
            resumed.append(round(time.monotonic() - restarted, 1))
        flow.join()
        wait_committed(settings, worker, len(events), timeout=180 * SCALE)
    finally:
        worker.stop()
    assert_outputs_match_reference(settings, events)
    print(f"\nresumed {resumed} s after each restart")
    assert max(resumed) <= 10, resumed


def test_survivor_takes_over_a_killed_workers_partitions(rtba_env, settings, tmp_path):
    rtba_env.update({"RTBA_TICK_S": "3600", "RTBA_RFM_ADAPTIVE": "0", "RTBA_BATCH_SIZE": "100"})
    events = known_events(seed=18, customers=1000)
    ensure_topics(settings)
    flow = produce_slowly(settings, events, seconds=40)
    first = WorkerProcess(rtba_env, tmp_path / "first.log").start()
    second = WorkerProcess(rtba_env, tmp_path / "second.log").start()
    try:
        time.sleep(15)  # both in the group, both processing
        at_kill = committed_by_partition(settings)
        first.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        while True:  # every partition moves again: the survivor owns the dead one's too
            now = committed_by_partition(settings)
            if all(now.get(p, 0) > at_kill.get(p, 0) for p in range(settings.partitions)):
                break
            assert time.monotonic() - killed < 60, second.log_tail()
            time.sleep(0.2)
        took = time.monotonic() - killed
        flow.join()
        wait_committed(settings, second, len(events), timeout=180)
    finally:
        first.stop()
        second.stop()
    assert_outputs_match_reference(settings, events)
    print(f"\nthe survivor took over in {took:.1f} s")
    assert took <= 10 + 3  # 10 s, plus up to one commit interval (2.8 s) to see it

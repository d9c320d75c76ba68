"""Shared fixtures. Integration tests use a real Kafka broker and a real Redis:
the ones named by KAFKA_BOOTSTRAP and REDIS_URL when both are set, otherwise a
stack this session starts on free ports (and stops at the end)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from launcher import stack
from streams.settings import Settings
from streams.state.keys import Keys
from streams.state.redis_client import is_cluster
from streams.state.store import connect, read_stat

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def real_stack(tmp_path_factory):
    """{kafka_bootstrap, redis_url} of a running real stack: a three-master Redis Cluster
    in place of one redis-server with RTBA_REDIS_CLUSTER=1 (`make test` runs the
    integration tests both ways)."""
    cluster = os.environ.get("RTBA_REDIS_CLUSTER", "0")
    if os.environ.get("KAFKA_BOOTSTRAP") and os.environ.get("REDIS_URL"):
        if cluster == "1" and not is_cluster(os.environ["REDIS_URL"]):
            pytest.skip("RTBA_REDIS_CLUSTER=1, but REDIS_URL names a single redis-server")
        yield {
            "kafka_bootstrap": os.environ["KAFKA_BOOTSTRAP"],
            "redis_url": os.environ["REDIS_URL"],
        }
        return
    home = tmp_path_factory.mktemp("rtba-home")
    settings = Settings.from_env({"RTBA_HOME": str(home), "RTBA_REDIS_CLUSTER": cluster})
    started = time.monotonic()
    info = stack.up(settings)
    print(f"\nstack up in {time.monotonic() - started:.1f}s: {info}", file=sys.stderr)
    try:
        yield info
    finally:
        stack.down(Settings.from_env({"RTBA_HOME": str(home)}))


def env_for(real_stack: dict, home: Path) -> dict:
    """Environment for rtba processes: the real stack and a namespace of their own."""
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP": real_stack["kafka_bootstrap"],
        "REDIS_URL": real_stack["redis_url"],
        "RTBA_NAMESPACE": f"t{uuid.uuid4().hex[:10]}",
        "RTBA_HOME": str(home),
        "RTBA_PARTITIONS": "3",
        "RTBA_BATCH_WITHIN_S": "0.1",
    }


@pytest.fixture
def rtba_env(real_stack, tmp_path):
    """Environment for rtba processes: the real stack and a namespace of this test's own."""
    return env_for(real_stack, tmp_path / "home")


@pytest.fixture
def settings(rtba_env) -> Settings:
    return Settings.from_env(rtba_env)


@pytest.fixture
def redis_client(settings):
    client = connect(settings.redis_url)
    yield client
    client.close()


def run_rtba(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env=env, capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(f"rtba {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


class WorkerProcess:
    def __init__(self, env: dict, log_path: Path):
        self.env, self.log_path = env, log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "-l", "info"],
            env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


@pytest.fixture
def worker(rtba_env, tmp_path):
    """Start with worker.start(); stopped at the end of the test."""
    w = WorkerProcess(rtba_env, tmp_path / "worker.log")
    yield w
    w.stop()


def wait_for_records(client, settings: Settings, expected: int, worker: WorkerProcess, timeout=120):
    """Wait until the worker has taken `expected` records off behavior.events."""
    keys = Keys(settings.namespace)
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        seen = read_stat(client, keys, "records")
        if seen >= expected:
            return seen
        if worker.proc is not None and worker.proc.poll() is not None:
            raise AssertionError(f"worker exited:\n{worker.log_tail()}")
        time.sleep(0.3)
    raise AssertionError(
        f"worker took {seen}/{expected} records in {timeout}s:\n{worker.log_tail()}"
    )


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 60,
                distinct=None) -> list:  # fmt: skip
    """Every record on `topic` from the beginning, waiting for at least `expected` (of
    distinct ``distinct(record)`` values when given: a relayed event can come seconds
    after the duplicates of others)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=300).values():
                out.extend(records)
            got = len(out) if distinct is None else len({distinct(r) for r in out})
            if got >= expected:
                # drain: keep reading until the topic has nothing more to give
                while batch := consumer.poll(timeout_ms=1000):
                    for records in batch.values():
                        out.extend(records)
                return out
        return out
    finally:
        consumer.close()


def send_with_hostile(producer, topic: str, events: list[dict], hostile_at: int) -> None:
    """``events`` keyed by customer, with two hostile records in the middle of the good
    ones, before event ``hostile_at``: bad JSON, and an absurd amount (DLQ: invalid_json,
    absurd_amount)."""
    for i, event in enumerate(events):
        if i == hostile_at:
            producer.send(topic, key=b"x", value=b"{not json")
            producer.send(topic, key=b"whale", value={
                "event_id": "whale-0", "customer_id": "whale", "type": "purchase",
                "order_id": "w0", "amount": "2500000.00", "ts": event["ts"]})  # fmt: skip
        producer.send(topic, key=event["customer_id"], value=event)


def buckets_due_by(client, namespace: str, until_ms) -> int:
    """How many due-index buckets hold someone due by ``until_ms``, from every shard's
    summary: 0 once the ticks re-scored everyone due by then."""
    from streams.state.keys import DUE_SHARDS, Keys

    keys = Keys(namespace)
    return sum(client.zcount(keys.due_summary(s), "-inf", until_ms) for s in range(DUE_SHARDS))


def outbox_indexed(client, namespace: str) -> int:
    """How many customers the outbox index holds, over all its shards: 0 once every output
    event is acknowledged by Kafka."""
    from streams.state.keys import DUE_SHARDS, Keys

    keys = Keys(namespace)
    return sum(client.zcard(keys.outbox_index(s)) for s in range(DUE_SHARDS))


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def assert_states_match_batch(settings: Settings, events: list[dict]) -> dict:
    """Every customer's state in Redis equals the reference's batch computation over
    ``events``, field by field; returns the states read."""
    from streams.state.keys import Keys
    from streams.state.store import read_states
    from tests.reference import batch_state

    expected = batch_state(events)
    client = connect(settings.redis_url, **settings.redis_options())
    states = read_states(client, Keys(settings.namespace), sorted(expected))
    got = {s.customer_id: s for s in states}
    client.close()
    assert set(got) == set(expected)
    for cid, want in expected.items():
        state = got[cid]
        actual = {
            "first_purchase_ms": state.first_purchase_ms,
            "last_purchase_ms": state.last_purchase_ms,
            "purchases": state.purchases,
            "purchase_days": state.purchase_days,
            "monetary": state.monetary,
            "repeat_value": state.repeat_value,
            "items": state.items,
            "last_event_ms": state.last_event_ms,
            "clicks": state.clicks,
            "categories": state.categories,
        }
        assert actual == want, cid
    return got

"""`rtba demo`: stack up, one worker, the synthetic producer, and the live
segment changes printed as they arrive. Ctrl-C stops everything it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from kafka import KafkaConsumer, TopicPartition

from streams import stack
from streams.settings import Settings


def _spawn(env: dict, *args: str, log=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", *args],
        env=env, stdout=log, stderr=subprocess.STDOUT if log else None,
    )  # fmt: skip


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tail_from_now(settings: Settings) -> KafkaConsumer:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap.split(","))
    tps = [
        TopicPartition(topic, p)
        for topic in (settings.segment_changes_topic, settings.churn_risk_topic)
        for p in sorted(consumer.partitions_for_topic(topic) or set())
    ]
    consumer.assign(tps)
    consumer.seek_to_end(*tps)
    return consumer


def _line(event: dict) -> str:
    when = event["at"][:19]
    if "churn_risk" in event:
        quiet = f"{event['recency_days']:.0f} days quiet"
        return (f"{when}  {event['customer_id']}  CHURN RISK {event['churn_risk']:.2f} "
                f"(p_alive {event['p_alive']:.2f}, {quiet})")  # fmt: skip
    return (f"{when}  {event['customer_id']}  {event['kind']:7} "
            f"{event['from'] or '(new)':>20} -> {event['to']:<20} [{event['reason']}]")  # fmt: skip


def run_demo(settings: Settings, customers: int, events: int, rate: float, duration: float) -> int:
    was_running = stack.status(settings)
    started_stack = not stack.external(settings) and "down" in (
        was_running["kafka"],
        was_running["redis"],
    )
    try:
        info = stack.up(settings)
    except stack.StackError as exc:
        print(f"rtba demo: {exc}", file=sys.stderr)
        return 2
    # The children get the stack's address; this process keeps its own environment so
    # that `stack.down` still knows the stack as one it started.
    env = {**os.environ, "KAFKA_BOOTSTRAP": info["kafka_bootstrap"], "REDIS_URL": info["redis_url"]}
    # A demo compresses a year into minutes: refit and refresh often enough to be seen.
    env.setdefault("RTBA_CHURN_REFIT_S", "20")
    env.setdefault("RTBA_RFM_REFRESH_S", "10")
    live = Settings.from_env(env)
    signal.signal(signal.SIGTERM, _interrupt)  # stop everything on `kill` as on Ctrl-C
    consumer = _tail_from_now(live)
    worker_log = live.home / "demo-worker.log"
    worker = _spawn(env, "worker", log=open(worker_log, "ab"))
    producer = _spawn(
        env,
        "produce", "synthetic", "--customers", str(customers),
        "--events", str(events), "--rate", str(rate),
    )  # fmt: skip
    print(f"rtba demo: Kafka {info['kafka_bootstrap']}, Redis {info['redis_url']}, worker log "
          f"{worker_log}; segment changes follow (Ctrl-C stops)", flush=True)  # fmt: skip
    seen = 0
    deadline = time.monotonic() + duration if duration else None
    try:
        while deadline is None or time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    seen += 1
                    print(_line(json.loads(record.value)), flush=True)
            if worker.poll() is not None:
                print("rtba demo: the worker exited", file=sys.stderr)
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        # Ctrl-C or kill usually reaches the whole process group: one signal is enough.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop(producer)
        _stop(worker)
        consumer.close()
        if started_stack:
            stack.down(settings)
    print(f"rtba demo: {seen} segment changes and churn alerts shown", file=sys.stderr)
    return 0 if seen else 1

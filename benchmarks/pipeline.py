"""The pipeline benchmark (S5): rtba's worker on the real stack, against what bounds it.

    a  raw aiokafka: consume and JSON-decode the events topic (the limit of Python)
    b  a do-nothing Faust agent on rtba's own Faust app (benchmarks/noop_agent.py):
       Faust's per-record cost, the ceiling of one worker process
    c  the naive per-event pipeline (benchmarks/naive_agent.py): HGETALL + HSET and River
       learn + predict per event
    d  rtba's worker with everything on (outbox, durable writes, clusters, the tick)
    D  d with the store already holding ``--population`` other customers (written by
       benchmarks/population.py's loader into the same namespace): the same events, a
       big store (the customer set the sweep walks, the hash tables, the memory)
    e  d with two worker processes sharing the partitions, their group formed on an empty
       topic and the events produced after; with d, the workers' CPU (user + system,
       their whole process trees) per event each applied, e's over d's
    l  (with e) one worker run as e is, group first and events after: the CPU per event
       e's is compared with, so that only what a second worker adds is left (d catches
       up with a full topic in full batches; events arriving as produced come in
       smaller ones)
    g  Redis bytes per customer after d (MEMORY USAGE of every key of the namespace)
    s  on a Redis Cluster, a d of its own under MONITOR on every master: each command
       counted in its first key's slot (benchmarks/slots.py), the busiest slot's share
       against 1/masters + 10%
    f  produce -> a new customer's first RFM segment change, with d's kind of traffic
       sent live at half of d's rate: a year of event time in ``--latency-s`` seconds, so
       thousands of customers fall due in every re-scoring tick (a replay's load)
    F  f with each event stamped with the time it is sent, the way a shop's live traffic
       arrives: the same customers and order of events, and nothing falls due in the run;
       with ``--population``, into one namespace preloaded as D's, each run's customers
       new to it (their ids tagged with the run)

The same synthetic events are produced once per namespace before a scenario starts, so
a, b and d measure catching up with a full topic: the rate is records over the time from
the first counted record to the last (connecting and joining the group are left out).
Each scenario runs ``--runs`` times; the table shows the median and the spread, and every
goal as a ratio against a figure from the same run. ``--json`` writes every figure.

Uses the stack given by KAFKA_BOOTSTRAP and REDIS_URL, or starts one of its own (with a
three-master Redis Cluster under ``--redis-cluster``).

Run: .venv/bin/python -m benchmarks.pipeline [--events N] [--customers C] [--runs R]
     [--latency-s S] [--only abcdefFDs] [--population N] [--redis-cluster] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import aiokafka
import numpy as np
from kafka import KafkaConsumer

from launcher import stack
from producers import synthetic
from producers.kafka import make_producer, send_all
from streams.processing.topics import ensure_topics
from streams.settings import Settings
from streams.state.keys import Keys
from streams.state.redis_client import clustered, info_per_server
from streams.state.store import StateStore, connect, customer_count, read_stat

REPO = Path(__file__).resolve().parents[1]
DAY_MS = 86_400_000
GOALS = {  # scenario: (what it is compared with, the goal, as the issue states it)
    "D/d": 0.9,
    "d/b": 0.8,
    "d/c": 2.5,
    "e/d": 1.7,
    "f_p99_ms": 250.0,
    # a second worker adds no coordination cost per event (e >= 1.7 d needs more cores)
    "e_cpu/d_cpu": 1.15,
}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Bench:
    """One benchmark session: the stack, a scratch home and the events to replay."""

    def __init__(self, bootstrap: str, redis_url: str, home: Path, events: list[dict]):
        self.bootstrap, self.redis_url, self.home = bootstrap, redis_url, home
        self.events = events
        self.redis = connect(redis_url)  # a single server or a Cluster

    def env(self, namespace: str, **extra: str) -> dict:
        return {**os.environ, "KAFKA_BOOTSTRAP": self.bootstrap, "REDIS_URL": self.redis_url,
                "RTBA_NAMESPACE": namespace, "RTBA_HOME": str(self.home), **extra}  # fmt: skip

    def settings(self, namespace: str) -> Settings:
        return Settings.from_env(self.env(namespace))

    def loaded_namespace(self) -> str:
        """A fresh namespace whose events topic holds every event."""
        namespace = self.empty_namespace()
        self.fill(namespace)
        return namespace

    def empty_namespace(self) -> str:
        namespace = f"bench{uuid.uuid4().hex[:8]}"
        ensure_topics(self.settings(namespace))
        return namespace

    def fill(self, namespace: str) -> None:
        producer = make_producer(self.bootstrap)
        send_all(producer, self.settings(namespace).events_topic, self.events)
        producer.close()

    def start(self, args: list[str], namespace: str, log: str, **extra: str) -> subprocess.Popen:
        with open(self.home / log, "ab") as out:  # the child keeps its own copy
            return subprocess.Popen([sys.executable, "-m", *args],
                                    env=self.env(namespace, **extra), cwd=REPO, stdout=out,
                                    stderr=subprocess.STDOUT)  # fmt: skip

    def rate(self, proc: subprocess.Popen, key: str, field: str, timeout_s: float) -> float:
        """Records per second while the counter at ``key`` goes from its first count to
        ``len(events)``, polled every 10 ms."""
        return self.window(proc, lambda: int(self.redis.hget(key, field) or 0), timeout_s)[0]

    def window(self, proc: subprocess.Popen, counted: Callable[[], int], timeout_s: float,
               watch: list[subprocess.Popen] = ()) -> tuple[float, float]:  # fmt: skip
        """``rate``'s records per second, and the CPU microseconds per record the ``watch``
        processes (and their children) used over the same window: start-up and joining
        the group fall before the first count, so a second worker's start is not billed."""
        first = None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            seen = counted()
            now = time.perf_counter()
            if seen and first is None:
                first = (now, seen, tree_cpu_s([p.pid for p in watch]))
            if seen >= len(self.events):
                cpu_s = tree_cpu_s([p.pid for p in watch]) - first[2]
                counted = seen - first[1]
                if now <= first[0] or not counted:
                    return float("nan"), float("nan")
                return counted / (now - first[0]), cpu_s / counted * 1e6
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
            time.sleep(0.01)
        raise RuntimeError(f"{proc.args}: the records counted did not reach {len(self.events)} "
                           "in time")  # fmt: skip


def tree_cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by the processes ``pids`` and every live
    descendant (a worker's refresh or refit processes), each with the children it has
    already reaped, from /proc; a process gone meanwhile counts nothing."""
    if not pids:
        return 0.0
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(entry.name)):
            parents[int(entry.name)] = int(fields[1])
    family, grown = set(pids), True
    while grown:  # children of children, until no process is added
        more = {pid for pid, parent in parents.items() if parent in family} - family
        family |= more
        grown = bool(more)
    return sum(_own_cpu_s(pid) for pid in family)


def _stat_fields(pid: int | str) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (which may hold spaces): state
    first, so field n of proc(5) is at index n - 3."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # exited between the listing and the read
        return None
    return text[text.rindex(")") + 2 :].split()


def _own_cpu_s(pid: int) -> float:
    """utime + stime + cutime + cstime (proc(5) fields 14-17) of ``pid``, in seconds."""
    fields = _stat_fields(pid)
    return sum(int(v) for v in fields[11:15]) / CLOCK_TICKS if fields else 0.0


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def raw_aiokafka(bench: Bench, namespace: str) -> float:
    """a: one aiokafka consumer, no group, JSON-decoding every record."""
    topic = bench.settings(namespace).events_topic

    async def consume() -> float:
        consumer = aiokafka.AIOKafkaConsumer(topic, bootstrap_servers=bench.bootstrap,
                                             auto_offset_reset="earliest",
                                             enable_auto_commit=False)  # fmt: skip
        await consumer.start()
        try:
            count, first = 0, None
            while count < len(bench.events):
                batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
                if batches and first is None:
                    first = time.perf_counter()
                for records in batches.values():
                    for record in records:
                        json.loads(record.value)
                    count += len(records)
            return count / (time.perf_counter() - first)
        finally:
            await consumer.stop()

    return asyncio.run(consume())


def faust_agent(bench: Bench, namespace: str, kind: str = "noop") -> float:
    """b (``noop``, the do-nothing agent) or c (``naive``, the per-event pipeline), in a
    consumer group of its own; each counts its records at ``{ns}:{kind}:{app id}``."""
    app_id = f"{kind}{uuid.uuid4().hex[:8]}"
    proc = bench.start([f"benchmarks.{kind}_agent", app_id], namespace, f"{kind}.log")
    try:
        return bench.rate(proc, f"{namespace}:{kind}:{app_id}", "records", 600)
    finally:
        stop(proc)


def rtba_worker(bench: Bench, namespace: str | None, workers: int = 1) -> tuple[float, float]:
    """d: a worker catching up with a full topic. e (``namespace`` None): two workers that
    form their group on an empty topic, so that both share the events from the first one
    (on a full topic the first to join took most of them before the second was in).
    Returns the events per second and the workers' CPU microseconds per event."""
    fill_later = namespace is None
    namespace = bench.empty_namespace() if fill_later else namespace
    procs = [bench.start(["streams.cli", "worker"], namespace, f"worker{i}.log")
             for i in range(workers)]  # fmt: skip
    try:
        if fill_later:
            _wait_for_members(bench, namespace, workers)
            threading.Thread(target=bench.fill, args=(namespace,), daemon=True).start()
        keys = Keys(namespace)
        return bench.window(procs[0], lambda: read_stat(bench.redis, keys, "records"), 600, procs)
    finally:
        for proc in procs:
            stop(proc)


def _wait_for_members(bench: Bench, namespace: str, workers: int, timeout_s: float = 60):
    """Until the worker group has ``workers`` members (Kafka's own group description)."""
    from streams.processing.topics import admin_client

    group = bench.settings(namespace).app_id
    admin = admin_client(bench.bootstrap)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            described = admin.describe_groups([group]).get(group) or {}
            if len(described.get("members") or []) >= workers:
                return
            time.sleep(0.2)
    finally:
        admin.close()
    raise RuntimeError(f"{workers} workers did not join {group} in {timeout_s:.0f}s")


def redis_cpu_s(bench: Bench) -> float:
    """CPU seconds Redis has used (user + system), summed over a Cluster's masters: what d
    costs Redis per event, for the sizing in docs/scaling.md."""
    infos = info_per_server(bench.redis, "cpu")
    return sum(float(i["used_cpu_user"]) + float(i["used_cpu_sys"]) for i in infos)


def bytes_per_customer(bench: Bench, namespace: str) -> float:
    """g (at this run's size): every key of the namespace, by Redis's own MEMORY USAGE
    (all elements sampled), over the customers it holds."""
    keys = Keys(namespace)
    total, names = 0, bench.redis.scan_iter(match=f"{namespace}:*", count=1000)
    while chunk := [name for _, name in zip(range(1000), names, strict=False)]:
        pipe = bench.redis.pipeline(transaction=False)
        for name in chunk:
            pipe.memory_usage(name, samples=0)
        total += sum(size or 0 for size in pipe.execute())
    return total / max(1, customer_count(bench.redis, keys))


def latency(bench: Bench, rate: float, seconds: float, live: bool = False,
            namespace: str | None = None, tag: str = "") -> dict:  # fmt: skip
    """f: d's kind of traffic (fresh synthetic customers) sent at ``rate`` events/s; for
    each customer, the time from sending its first purchase to its first RFM segment
    change arriving on the output topic. ``live`` (F) stamps each event with the time it
    is sent instead of its place in the synthetic year. ``namespace``: an existing one (a
    preloaded population) instead of a fresh one; ``tag`` then keeps this run's customers
    and events apart from an earlier run's in it."""
    namespace = namespace or f"bench{uuid.uuid4().hex[:8]}"
    settings = bench.settings(namespace)
    ensure_topics(settings)
    end = int(time.time() * 1000)
    customers = max(1, len({e["customer_id"] for e in bench.events}))
    traffic = [tagged(e, tag) for e in synthetic.generate(11, customers, int(rate * seconds),
                                                          end - 365 * DAY_MS, end)]  # fmt: skip
    proc = bench.start(["streams.cli", "worker"], namespace, "latency.log")
    first_purchase: dict[str, float] = {}
    arrived: dict[str, float] = {}
    # The output record's Kafka timestamp (CreateTime: the worker's send): splits a wait
    # into the pipeline's part and the part this process's own consumer took to read it.
    emitted: dict[str, float] = {}
    consumer = KafkaConsumer(settings.segment_changes_topic, bootstrap_servers=bench.bootstrap,
                             auto_offset_reset="earliest", fetch_max_wait_ms=10)  # fmt: skip
    done = threading.Event()

    def receive() -> None:
        while not done.is_set():
            for records in consumer.poll(timeout_ms=50).values():
                now = time.time()
                for record in records:
                    change = json.loads(record.value)
                    if change["kind"] == "rfm" and change["customer_id"] not in arrived:
                        arrived[change["customer_id"]] = now
                        emitted[change["customer_id"]] = record.timestamp / 1000

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    producer = make_producer(bench.bootstrap)
    try:
        # Ready: a first customer's change has come back (the group has formed).
        deadline = time.monotonic() + 120
        warmup = f"{tag}warmup"  # an earlier run's warm-up change is already on the topic
        while warmup not in arrived and time.monotonic() < deadline:
            producer.send(settings.events_topic, key=warmup.encode(), value=purchase(warmup))
            producer.flush()
            time.sleep(0.5)
        start = time.perf_counter()
        traffic_start = time.time()
        for i, event in enumerate(traffic):
            pause = start + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            cid = event["customer_id"]
            if live:
                event = {**event, "ts": int(time.time() * 1000)}
            if event["type"] == "purchase":
                first_purchase.setdefault(cid, time.time())
            producer.send(settings.events_topic, key=cid.encode(),
                          value=json.dumps(event).encode())  # fmt: skip
        producer.flush()
        deadline = time.monotonic() + 60
        while len(arrived.keys() & first_purchase.keys()) < len(first_purchase):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        done.set()
        receiver.join(timeout=5)
        consumer.close()
        producer.close()
        stop(proc)
    # (wait, when it was sent): where the slow ones sit tells a start-up stall from a steady cost.
    answered = sorted(((arrived[c] - t) * 1000, t - traffic_start)
                      for c, t in first_purchase.items() if c in arrived)  # fmt: skip
    waits = np.array([wait for wait, _ in answered])
    to_emit = np.array([(emitted[c] - t) * 1000 for c, t in first_purchase.items() if c in arrived])
    slowest = answered[-10:]
    return {
        "rate": rate,
        "events": len(traffic),
        "sent": len(first_purchase),
        "answered": len(waits),
        "p50_ms": float(np.percentile(waits, 50)) if len(waits) else float("nan"),
        "p99_ms": float(np.percentile(waits, 99)) if len(waits) else float("nan"),
        "emit_p50_ms": float(np.percentile(to_emit, 50)) if len(to_emit) else float("nan"),
        "emit_p99_ms": float(np.percentile(to_emit, 99)) if len(to_emit) else float("nan"),
        "traffic_started_at": traffic_start,
        "slowest": [{"wait_ms": round(w, 1), "sent_after_s": round(s, 2)} for w, s in slowest],
    }


def tagged(event: dict, tag: str) -> dict:
    """``event`` with ``tag`` before its customer, event and order ids (the same event
    for another customer, new to the store)."""
    if not tag:
        return event
    ids = ("customer_id", "event_id", "order_id")
    return {**event, **{k: f"{tag}{event[k]}" for k in ids if k in event}}


def purchase(cid: str) -> bytes:
    return json.dumps({"event_id": f"e-{cid}-{uuid.uuid4().hex[:6]}", "customer_id": cid,
                       "type": "purchase", "order_id": f"o-{cid}", "amount": "25.00",
                       "ts": int(time.time() * 1000)}).encode()  # fmt: skip


def spread(values: list[float]) -> str:
    return f"{min(values):,.0f}–{max(values):,.0f}" if len(values) > 1 else "one run"


def preload(bench: Bench, namespace: str, customers: int) -> None:
    """``customers`` customers folded from a year of synthetic events, written under ids of
    their own (``p...``, not the events' ``c...``) through the worker's store."""
    from benchmarks import population

    store = StateStore.from_url(bench.redis_url, Keys(namespace))
    templates = population.templates()
    # Due long after the events' time: the population adds store size, not tick work.
    asyncio.run(population.load(store, templates, customers, 0, population.END_MS))


def run(bench: Bench, runs: int, only: set[str], latency_s: float,
        latency_rate: float | None = None, population: int = 0) -> dict:  # fmt: skip
    shared = bench.loaded_namespace()  # a and b only read: one topic serves every run
    keys = [*"abcdDefglr", "D_customers", "d_cpu", "e_cpu", "l_cpu", "F_customers", "slots"]
    figures: dict[str, list] = {k: [] for k in keys}
    for _ in range(runs):
        if "a" in only:
            figures["a"].append(raw_aiokafka(bench, shared))
        if "b" in only:
            figures["b"].append(faust_agent(bench, shared))
        if "c" in only:  # its own namespace: it writes customer hashes
            figures["c"].append(faust_agent(bench, bench.loaded_namespace(), "naive"))
        if "d" in only or ("f" in only or "F" in only) and not latency_rate:
            namespace = bench.loaded_namespace()
            cpu_before = redis_cpu_s(bench)
            rate, cpu_us = rtba_worker(bench, namespace)
            figures["d"].append(rate)
            figures["d_cpu"].append(cpu_us)
            figures["r"].append((redis_cpu_s(bench) - cpu_before) / len(bench.events) * 1e6)
            figures["g"].append(bytes_per_customer(bench, namespace))
        if "D" in only and population:
            namespace = bench.loaded_namespace()
            preload(bench, namespace, population)
            figures["D"].append(rtba_worker(bench, namespace)[0])
            figures["D_customers"].append(customer_count(bench.redis, Keys(namespace)))
        if "s" in only and clustered(bench.redis):  # a d of its own: MONITOR slows it
            from benchmarks.slots import Watch

            namespace = bench.loaded_namespace()
            with Watch(bench.redis) as watch:
                rtba_worker(bench, namespace)
            figures["slots"].append(watch.census.summary(len(watch.nodes)))
        if "e" in only:
            rate, cpu_us = rtba_worker(bench, None, workers=2)
            figures["e"].append(rate)
            figures["e_cpu"].append(cpu_us)
            # one worker the way e runs (group formed, then the events produced): the
            # baseline that leaves only what the second worker adds
            rate, cpu_us = rtba_worker(bench, None, workers=1)
            figures["l"].append(rate)
            figures["l_cpu"].append(cpu_us)
    for key, live in (("f", False), ("F", True)):
        if key in only:
            half = latency_rate or statistics.median(figures["d"]) / 2
            figures[key] = live_runs(bench, runs, half, latency_s, live, population)
            if live and population:
                figures["F_customers"] = [r.pop("customers") for r in figures[key]]
    return {k: v for k, v in figures.items() if v}


def live_runs(bench: Bench, runs: int, rate: float, seconds: float, live: bool,
              population: int) -> list[dict]:  # fmt: skip
    """``runs`` latency runs; F with a ``population``: all in one namespace preloaded
    once (a 1M load takes minutes), each run's customers new to it."""
    if not (live and population):
        return [latency(bench, rate, seconds, live) for _ in range(runs)]
    namespace = bench.empty_namespace()
    preload(bench, namespace, population)
    results = []
    for i in range(runs):
        result = latency(bench, rate, seconds, live, namespace, tag=f"r{i}")
        result["customers"] = customer_count(bench.redis, Keys(namespace))
        results.append(result)
    return results


def report(figures: dict, events: int) -> list[str]:
    lines = [f"{events:,} events; median (spread) of {len(next(iter(figures.values())))} run(s)",
             f"{'scenario':44} {'median':>12} {'spread':>16}"]  # fmt: skip
    names = {"a": "a raw aiokafka consume + decode (ev/s)",
             "b": "b do-nothing Faust agent (ev/s)",
             "c": "c naive per-event pipeline (ev/s)",
             "d": "d rtba worker, everything on (ev/s)",
             "D": "D d, the store holding --population more (ev/s)",
             "e": "e two rtba workers (ev/s)",
             "g": "g Redis bytes per customer, after d",
             "r": "Redis CPU µs per event during d (all nodes)",
             "d_cpu": "d worker CPU µs per event",
             "e_cpu": "e two workers' CPU µs per event",
             "l": "l one worker as e runs (ev/s)",
             "l_cpu": "l one worker's CPU µs per event, as e runs",
             "F_customers": "F customers in the store after a run"}  # fmt: skip
    for key, name in names.items():
        if key in figures:
            values = figures[key]
            lines.append(f"{name:44} {statistics.median(values):>12,.0f} {spread(values):>16}")
    for key in [k for k in "fF" if k in figures]:
        rate = figures[key][0]["rate"]
        clock = "live event time" if key == "F" else "a year in the run"
        for field, what in (("p50_ms", f"{key} latency p50 (ms)"),
                            ("p99_ms", f"{key} latency p99 (ms)"),
                            ("emit_p50_ms", "  of which sent -> emitted, p50"),
                            ("emit_p99_ms", "  of which sent -> emitted, p99")):  # fmt: skip
            values = [r[field] for r in figures[key] if field in r]
            label = f"{what} at {rate:,.0f} ev/s" if field in ("p50_ms", "p99_ms") else what
            lines.append(f"{label:44} {statistics.median(values):>12,.0f} {spread(values):>16}")
        lines.append(f"  ({clock})")
    lines.append("")
    if "d" in figures and "D" in figures:
        ratio = statistics.median(figures["D"]) / statistics.median(figures["d"])
        lines.append(f"D / d = {ratio:.2f} (goal ≥ {GOALS['D/d']}: within 10%)")
    if "b" in figures and "d" in figures:
        ratio = statistics.median(figures["d"]) / statistics.median(figures["b"])
        lines.append(f"d / b = {ratio:.2f} (goal ≥ {GOALS['d/b']})")
    if "c" in figures and "d" in figures:
        ratio = statistics.median(figures["d"]) / statistics.median(figures["c"])
        lines.append(f"d / c = {ratio:.2f} (goal ≥ {GOALS['d/c']})")
    if "d" in figures and "e" in figures:
        ratio = statistics.median(figures["e"]) / statistics.median(figures["d"])
        lines.append(f"e / d = {ratio:.2f} (goal ≥ {GOALS['e/d']})")
    if "d_cpu" in figures and "e_cpu" in figures:
        ratio = statistics.median(figures["e_cpu"]) / statistics.median(figures["d_cpu"])
        lines.append(f"CPU per event e / d = {ratio:.2f} (d catches up with a full topic, "
                     "e's events arrive as they are produced: smaller batches)")  # fmt: skip
    if "l_cpu" in figures and "e_cpu" in figures:
        ratio = statistics.median(figures["e_cpu"]) / statistics.median(figures["l_cpu"])
        goal = GOALS["e_cpu/d_cpu"]
        lines.append(f"CPU per event e / l = {ratio:.2f} (goal ≤ {goal}: a second worker "
                     "adds no coordination cost; l is one worker run as e is)")  # fmt: skip
    if "a" in figures and "b" in figures:
        ratio = statistics.median(figures["b"]) / statistics.median(figures["a"])
        lines.append(f"b / a = {ratio:.3f} (Faust's share of Python's limit)")
    for census in figures.get("slots", []):
        busiest = census["top"][0] if census["top"] else {"share": 0.0, "slot": None,
                                                          "example_key": ""}  # fmt: skip
        verdict = "meets" if busiest["share"] <= census["limit_share"] else "does NOT meet"
        lines.append(f"s busiest slot {busiest['slot']} took {busiest['share']:.1%} of "
                     f"{census['commands']:,} keyed commands over {census['slots_used']:,} "
                     f"slots (e.g. {busiest['example_key']}); goal ≤ "
                     f"{census['limit_share']:.1%}: {verdict} it")  # fmt: skip
        for other in census["top"][1:]:
            lines.append(f"  next: slot {other['slot']} {other['share']:.1%} "
                         f"({other['example_key']})")  # fmt: skip
    for key in [k for k in "fF" if k in figures]:
        p99 = statistics.median(r["p99_ms"] for r in figures[key])
        lines.append(f"{key} p99 / goal = {p99 / GOALS['f_p99_ms']:.2f} "
                     f"(goal p99 ≤ {GOALS['f_p99_ms']:.0f} ms; ≤ 1 meets it)")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rtba bench", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-s", type=float, default=20.0,
                        help="seconds of traffic per latency run")  # fmt: skip
    parser.add_argument("--latency-rate", type=float,
                        help="events/s for f (default: half of d's median)")  # fmt: skip
    parser.add_argument("--only", default="abcdefF", help="scenarios to run, e.g. bd")
    parser.add_argument("--population", type=int, default=0,
                        help="D and F: customers already in the store")  # fmt: skip
    parser.add_argument("--redis-cluster", action="store_true",
                        help="a stack of its own with a three-master Redis Cluster")  # fmt: skip
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--logs", type=Path, help="keep the workers' logs in this folder")
    args = parser.parse_args(argv)
    end = int(time.time() * 1000)
    events = list(synthetic.generate(7, args.customers, args.events, end - 365 * DAY_MS, end))
    with tempfile.TemporaryDirectory(prefix="rtba-bench-") as scratch:
        home = Path(scratch)
        given = os.environ.get("KAFKA_BOOTSTRAP") and os.environ.get("REDIS_URL")
        cluster = "1" if args.redis_cluster else "0"
        own = (
            None
            if given
            else stack.up(
                Settings.from_env({"RTBA_HOME": str(home), "RTBA_REDIS_CLUSTER": cluster})
            )
        )
        info = own or {"kafka_bootstrap": os.environ["KAFKA_BOOTSTRAP"],
                       "redis_url": os.environ["REDIS_URL"]}  # fmt: skip
        try:
            bench = Bench(info["kafka_bootstrap"], info["redis_url"], home, events)
            figures = run(bench, args.runs, set(args.only), args.latency_s, args.latency_rate,
                          args.population)  # fmt: skip
        finally:
            if own:
                stack.down(Settings.from_env({"RTBA_HOME": str(home)}))
            if args.logs:
                args.logs.mkdir(parents=True, exist_ok=True)
                for log in home.glob("*.log"):
                    shutil.copy(log, args.logs / log.name)
    print("\n".join(report(figures, len(events))))
    if args.json:
        args.json.write_text(json.dumps({"events": len(events), "runs": args.runs,
                                         "figures": figures}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

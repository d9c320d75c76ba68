"""Every population job's cost at a population's size (1M, 10M), without replaying its
events: Redis bytes per customer, the leader's jobs and the API's population reads.

Template customers are folded from synthetic events by the worker's own pure pipeline
(decode, fold: their orders, refunds and clicks, a cluster of snapshot v1 and the one
benchmark audience ``bench-spenders``, as a worker writes them), then written N times
over under new ids through the worker's own store (``StateStore.save``: the Lua write,
orders, refund ids, due index, population facts, audience index; all in ``write``).
``--due`` of them are due before the watermark, the rest far after it. Then, each job
timed for its wall time, its CPU time (this process, or the job's child process) and
Redis's CPU time, while a 1 ms timer on the event loop records the loop's worst stall:

- g: Redis's used memory after the load minus before, over N;
- h: the leader's re-scoring tick (``Rescorer``, limit 1,000) until every due customer is
  re-scored: each tick's time, the worst stall;
- the churn refit, run off the event loop as the leader runs it: once from no model, then
  again with nothing changed (its parameters cannot move);
- the RFM-edge refresh, off the loop: with the watermark one day on (the edges move), and
  with it one minute on (whole-day edges stay where they are);
- one full cluster-sweep pass after a new snapshot (v2) is published: each tick, each
  slice (the audience backfill's empty one in each tick too) and the pass;
- request latencies through the API in-process (FastAPI's TestClient, no socket), every
  call cold (the walk caches emptied before it): ``/segments``, a dashboard sample
  (``sizes_sample``), a segment's and a cluster's members page (the segment's also
  half-way through by cursor), ``/customers`` ranked by monetary and by churn risk, an
  audience's members page. ``--calls`` each, as long as
  an endpoint's calls stay within ``--call-budget-s`` (one call at least; a call over
  60 s is timed once).

Jobs are repeated ``--repeat`` times while their runs stay within ``--job-budget-s``;
medians and spreads are printed, every run is in ``--json``. The host's load average
before and after is recorded: the machine is shared.

Uses the stack given by KAFKA_BOOTSTRAP and REDIS_URL (only Redis is used), or starts one
(``--redis-cluster`` for a three-master Redis Cluster). The namespace (``--namespace``,
default a fresh one) is deleted afterwards unless ``--keep``.

Run: .venv/bin/python -m benchmarks.population [--customers N] [--due D] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from functools import partial
from pathlib import Path
from urllib.parse import quote

from launcher import stack
from online_models.churn import BGNBD
from online_models.churn_risk import ChurnScorer
from online_models.clusters import StableClusterer
from online_models.customer import CustomerState
from online_models.features import behaviour_features
from online_models.rfm import RFMScorer
from producers import synthetic
from streams.api.history import sizes_sample
from streams.audiences.definitions import AudienceSet, parse
from streams.processing import worker
from streams.processing.offload import JobProcess, run_off_loop
from streams.processing.pipeline import (
    Models,
    Record,
    decode_batch,
    fold_batch,
    lookups,
    reassign_clusters,
)
from streams.processing.schemas import Limits
from streams.processing.worker import BatchProcessor, Rescorer, refit_churn, refresh_rfm_edges
from streams.read.ranking import MAX_OFFSET
from streams.settings import Settings
from streams.state import due_index, facts
from streams.state.claims import claim_whole
from streams.state.keys import Keys
from streams.state.namespace import _delete_keys
from streams.state.redis_client import info_per_server
from streams.state.store import (
    StateStore,
    connect,
    publish_audiences,
    publish_churn_model,
    publish_rfm_edges,
    read_churn_model,
)

DAY_MS = 86_400_000
MINUTE_MS = 60_000
END_MS = 1_760_000_000_000
TEMPLATES = 2_000
BATCH = 1_000  # customers per store write while loading
# One field audience (no event log in the state): its members page reads a sorted set.
AUDIENCE_ID = "bench-spenders"
AUDIENCES = parse(json.dumps({"audiences": [{
    "id": AUDIENCE_ID, "name": "Spent 300 or more", "when": {"field": "monetary", "gte": 300},
}]}))  # fmt: skip
SLOW_CALL_S = 60.0  # a call slower than this is timed once


def templates(seed: int = 7, audiences: AudienceSet | None = None) -> list[CustomerState]:
    """Customers folded from a year of synthetic events, as a worker would write them
    (evaluated under ``audiences`` when given)."""
    start = END_MS - 365 * DAY_MS
    raw = [json.dumps(e).encode()
           for e in synthetic.generate(seed, TEMPLATES, 40 * TEMPLATES, start, END_MS)]  # fmt: skip
    records = [Record(0, i, None, v) for i, v in enumerate(raw)]
    valid, _ = decode_batch(records, END_MS, Limits())
    states = {cid: CustomerState(cid) for cid in lookups(valid)}
    fold_batch(valid, states, Models(RFMScorer(), audiences=audiences,
                                     audiences_version=1 if audiences else 0))  # fmt: skip
    return [s for s in states.values() if s.last_event_ms is not None]


def clustered(models: list[CustomerState], audiences: AudienceSet | None):
    """A trainer's learner over the templates, its snapshot v1 with each template assigned
    to it (in place), and a v2 after a second look at the same customers (what a trainer
    publishes next: nearly the same centroids, the same ids)."""
    learner = StableClusterer(Settings.model_fields["clusters"].default)
    samples = [(s.customer_id, behaviour_features(s, s.clock_ms), s.last_event_ms)
               for s in models]  # fmt: skip
    for cid, features, at in samples:
        learner.learn_one(features, cid, at)
    first = learner.snapshot()
    reassign_clusters(models, Models(RFMScorer(), clusters=first, audiences=audiences,
                                     audiences_version=1 if audiences else 0))  # fmt: skip
    for cid, features, at in reversed(samples):
        learner.learn_one(features, cid, at)
    return learner, first, learner.snapshot()


def used_memory(client) -> int:
    return sum(int(i["used_memory"]) for i in info_per_server(client, "memory"))


def redis_cpu_s(client) -> float:
    """Redis's CPU seconds so far (every master's), user and system."""
    return sum(float(i["used_cpu_user"]) + float(i["used_cpu_sys"])
               for i in info_per_server(client, "cpu"))  # fmt: skip


def children_cpu_s() -> float:
    """CPU seconds of this process's finished children (an off-loop job's process)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def population_facts(state: CustomerState) -> dict:
    """What writing this customer, new, adds to the population facts the store keeps
    (streams.state.facts: segment, cluster and audience counts, sums, histograms) and
    to the day cells the churn refit fits on."""
    return facts.written_contribution(state)


async def write(store: StateStore, states: dict, due_at: dict, marks: dict[int, int],
                max_event_ts: int | None, facts: dict,
                memberships: dict | None = None) -> None:  # fmt: skip
    """The benchmark's one call of ``StateStore.save`` (the load, and moving the watermark)."""
    result = await store.save(states, due_at, {}, marks, max_event_ts, facts,
                              memberships=memberships)  # fmt: skip
    assert not result.conflicts


async def load(store: StateStore, models: list[CustomerState], customers: int, due: int,
               watermark_ms: int, concurrency: int = 1) -> None:  # fmt: skip
    """``customers`` copies of the templates under new ids, ``due`` of them due now;
    ``concurrency`` writes in flight (building one batch here while Redis applies the one
    before: no faster on the shared 2 cores, 23.7k against 25.1k customers/s at 200k).
    A template's population facts are computed once, not per copy.
    """
    # the same for every copy of a template but the index entries, which name the copy
    facts = [population_facts(m) for m in models]
    pending: set[asyncio.Future] = set()
    for at in range(0, customers, BATCH):
        if len(pending) >= concurrency:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        batch = _copies(models, facts, at, min(at + BATCH, customers), due, watermark_ms)
        pending.add(asyncio.ensure_future(write(store, *batch)))
    for task in asyncio.as_completed(pending):
        await task


def _copies(models, facts, start: int, end: int, due: int, watermark_ms: int) -> tuple:
    """write()'s arguments for customers ``start`` to ``end`` - 1."""
    states, due_at, summed, memberships = {}, {}, {}, {}
    for i in range(start, end):
        model = models[i % len(models)]
        cid = f"p{i:09d}"
        states[cid] = dataclasses.replace(model, customer_id=cid, version=0)
        due_at[cid] = watermark_ms - DAY_MS if i < due else watermark_ms + 3650 * DAY_MS
        # per customer, applied in its write script: the template's, its index entries
        # renamed (an entry ends with the id)
        summed[cid] = _renamed(facts[i % len(models)], model.customer_id, cid)
        if model.audiences:
            memberships[cid] = dict(model.audiences)
    return states, due_at, {0: watermark_ms}, watermark_ms, summed, memberships or None


def _renamed(contribution: dict, template_id: str, cid: str) -> dict:
    """A template's written contribution for its copy ``cid``: the ``idx:`` entries, which
    end with the customer id, name the copy."""
    out = {}
    for name, n in contribution.items():
        if name.startswith(facts.INDEX):
            name = name[: -len(template_id)] + cid
        out[name] = n
    return out


async def in_force(store: StateStore, snapshot, learner, customers: int) -> None:
    """Snapshot v1 published, and the cluster sweep and the audience backfill marked done."""
    await store.publish_clusters(snapshot, json.dumps(learner.to_dict()).encode())
    await store.set_sweep_position({"sweeping": snapshot.version, "swept": snapshot.version,
                                    "cursor": 0})  # fmt: skip
    await store.set_sweep_position({"sweeping": 1, "swept": 1, "cursor": 0, "done": customers,
                                    "total": customers}, store.keys.audience_sweep)  # fmt: skip


async def new_buyers(store: StateStore, at_ms: int, day: int, count: int) -> None:
    """``count`` first purchases an hour before ``at_ms``, through the worker's batch
    processing."""
    processor = BatchProcessor(store, RFMScorer(), Limits())
    records = []
    for k in range(count):
        cid = f"q{day:03d}{k:06d}"
        event = {"event_id": f"{cid}-1", "customer_id": cid, "type": "purchase",
                 "order_id": f"{cid}-o1", "amount": f"{20 + k % 300}.00",
                 "ts": at_ms - 3_600_000}  # fmt: skip
        records.append(Record(0, k, cid.encode(), json.dumps(event).encode()))
    for start in range(0, len(records), BATCH):
        await processor.process(records[start : start + BATCH])


async def move_watermark(store: StateStore, to_ms: int) -> None:
    await write(store, {}, {}, {0: to_ms}, to_ms, {})


async def ticks(store: StateStore, due: int) -> list[float]:
    """Milliseconds of each re-scoring tick until ``due`` customers are re-scored: its work
    alone (``share=1``), not the pauses a worker's tick leaves to the agent."""
    rescorer = Rescorer(BatchProcessor(store, RFMScorer(), Limits()), limit=1000, share=1.0)
    times, done = [], 0
    while done < due:
        began = time.perf_counter()
        out = await rescorer.tick()
        times.append((time.perf_counter() - began) * 1000)
        done += len(out.states)
        if not out.states:
            break
    return times


async def sweep_pass(store: StateStore, snapshot, learner, budget_s: float) -> dict:
    """Publish ``snapshot`` and run the leader's sweep alone (no due customers, no
    audience backfill) tick by tick until its pass is over, or ``budget_s`` is spent."""
    await store.publish_clusters(snapshot, json.dumps(learner.to_dict()).encode())
    rescorer = Rescorer(BatchProcessor(store, RFMScorer(), Limits()), limit=0, share=1.0)
    tick_ms, slice_ms, reassigned, began = [], [], 0, time.perf_counter()
    complete = False
    while time.perf_counter() - began < budget_s:
        if (await store.sweep_position()).get("swept", 0) >= snapshot.version:
            complete = True
            break
        tick_began = at = time.perf_counter()
        async for out in rescorer.slices():
            now = time.perf_counter()
            slice_ms.append((now - at) * 1000)
            reassigned += len(out.states)
            at = now
        tick_ms.append((time.perf_counter() - tick_began) * 1000)
    position = await store.sweep_position()
    figures = {"tick_ms": tick_ms, "slice_ms": slice_ms, "reassigned": reassigned,
               "complete": complete, "position": position}  # fmt: skip
    if not complete and position.get("cursor"):
        # Customers are spread evenly over the buckets (a hash of the id): the share of
        # buckets passed is the share of the pass done.
        share = position["cursor"] / due_index.BUCKETS
        figures["modelled_pass_s"] = (time.perf_counter() - began) / share
    return figures


async def watched(work, tick_s: float = 0.001):
    """Await ``work`` while a timer on the same loop sleeps ``tick_s`` again and again:
    its result, its seconds, and the timer's worst lateness in ms (how long the loop was
    held at a stretch, as the agent serving events would feel it)."""
    task = asyncio.ensure_future(work)
    worst, began = 0.0, time.perf_counter()
    while not task.done():
        asked = time.perf_counter()
        await asyncio.sleep(tick_s)
        worst = max(worst, time.perf_counter() - asked - tick_s)
    return await task, time.perf_counter() - began, worst * 1000


class Meter:
    """Wall, CPU (this process and its finished children) and Redis CPU over a block."""

    def __init__(self, client):
        self.client = client

    def __enter__(self) -> Meter:
        self.began = time.perf_counter()
        self.cpu = time.process_time() + children_cpu_s()
        self.redis = redis_cpu_s(self.client)
        return self

    def __exit__(self, *exc) -> None:
        self.figures = {"s": time.perf_counter() - self.began,
                        "cpu_s": time.process_time() + children_cpu_s() - self.cpu,
                        "redis_cpu_s": redis_cpu_s(self.client) - self.redis}  # fmt: skip


# The leader's kept child, as streams.processing.app runs its jobs (JobProcess).
JOBS = JobProcess()


def offloaded(client, job) -> dict:
    """``job`` in the kept child process as the leader runs it, watched: its wall, CPU
    (the child's on the job, plus this process's) and Redis CPU seconds, the loop's worst
    stall, its result, and whether a child was spawned for it (that child's start is not
    in ``cpu_s``: the ``spawn`` figure is what one costs)."""
    started, began = JOBS.started, time.process_time()
    with Meter(client) as meter:
        result, _, stall_ms = asyncio.run(watched(JOBS.run(job)))
    cpu_s = time.process_time() - began + JOBS.last_cpu_s
    return {**meter.figures, "cpu_s": cpu_s, "spawned": JOBS.started > started,
            "child_peak_mb": (JOBS.last_peak_bytes or 0) / 2**20,
            "worst_stall_ms": stall_ms, "result": result}  # fmt: skip


def idle_job() -> None:
    """What an off-loop job costs before its work: a spawned child importing the worker."""
    import streams.processing.worker  # noqa: F401


def repeated(run, times: int, budget_s: float, at_least: int = 1) -> list[dict]:
    """``run()`` up to ``times`` times while the runs' seconds stay within ``budget_s``."""
    runs: list[dict] = []
    while len(runs) < at_least or (len(runs) < times and sum(r["s"] for r in runs) < budget_s):
        runs.append(run(len(runs)))
    return runs


def _cdnow_like() -> ChurnScorer:
    """BG/NBD with the CDNOW parameters of Fader, Hardie and Lee (2005)."""
    model = BGNBD()
    model.params = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    return ChurnScorer(model, threshold=0.7, rearm_below=0.5)


CDNOW_LIKE = _cdnow_like()


def refits(client, settings: Settings, times: int, budget_s: float) -> dict:
    """The first fit (from no model), then refits on the same data: parameters that do
    not move; then refits over a model 5% off in alpha (a model before, as a daily refit
    of a changing shop meets it): they publish, and wake customers by day cell."""
    first = offloaded(client, partial(refit_churn, settings))
    params = first["result"]["params"]

    def again(_):
        run = offloaded(client, partial(refit_churn, settings))
        run["moved"] = run["result"]["params"] != params
        run["published"] = run["result"].get("published", True)  # always, before S10
        return run

    def over_another(_):
        keys = Keys(settings.namespace)
        off = read_churn_model(client, keys)
        off.model.params = {**off.model.params, "alpha": off.model.params["alpha"] * 1.05}
        publish_churn_model(client, keys, off, {"as_of_ms": 0, "fitted_at_ms": 0})
        return again(_)

    first["moved"], first["published"] = True, first["result"].get("published", True)
    return {"first": [first], "unchanged": repeated(again, times, budget_s),
            "moved": repeated(over_another, times, budget_s)}  # fmt: skip


def refreshes(client, store_of, settings: Settings, watermark_ms: int, times: int,
              budget_s: float, customers: int) -> tuple[dict, int]:  # fmt: skip
    """Edge refreshes over edges in force, with the watermark a day on each time and a
    day's new buyers (0.5% of ``customers``: the cut dates move), then a minute on each
    time (whole-day edges do not): the runs and the watermark after."""
    at = [watermark_ms]
    # the edges in force first, as a running shop has them: published, nobody woken (a
    # refresh from none wakes by a walk, ~15 min of this process at 10M)
    asyncio.run(move_watermark(store_of(), at[0]))
    keys = Keys(settings.namespace)
    derived = worker._derived_edges(client, keys, settings)
    if derived is not None:
        publish_rfm_edges(client, keys, derived[0], {"as_of_ms": derived[1]})

    def step(by_ms: int):
        def run(_):
            at[0] += by_ms
            if by_ms >= DAY_MS:  # a day's new buyers, untimed: they move the cut dates
                asyncio.run(new_buyers(store_of(), at[0], len(at), max(20, customers // 200)))
                at.append(at[0])
            asyncio.run(move_watermark(store_of(), at[0]))
            figures = offloaded(client, partial(refresh_rfm_edges, settings))
            figures["published"] = figures["result"] is not None
            return figures

        return run

    moved = repeated(step(DAY_MS), times, budget_s)
    unchanged = repeated(step(MINUTE_MS), times, budget_s)
    return {"moved": moved, "unchanged": unchanged}, at[0]


def requests(settings: Settings, client, calls: int, budget_s: float, segment: str,
             cluster: int, customers: int, walks: bool = True) -> dict:  # fmt: skip
    """Each population read of the API, cold: the walk caches emptied before every call."""
    from fastapi.testclient import TestClient

    from streams.api.app import create_api

    api = create_api(settings)
    http = TestClient(api, base_url="http://127.0.0.1")  # no lifespan: no sampler, no feed
    reader = api.state.reader
    keys = Keys(settings.namespace)
    if read_churn_model(client, keys) is None:  # the jobs were skipped: a model to rank by
        publish_churn_model(client, keys, CDNOW_LIKE, {"as_of_ms": 0, "fitted_at_ms": 0})

    def get(path: str, filled: bool = False):
        def call():
            answer = http.get(path)
            assert answer.status_code == 200, f"{path}: {answer.status_code} {answer.text[:300]}"
            body = answer.json()
            if filled:  # an index page read from nothing would look quick
                assert body.get("members") or body.get("customers"), f"{path}: an empty page"

        return call

    paths = {
        "segments": get("/segments"),
        "dashboard_sample": lambda: sizes_sample(reader, int(time.time() * 1000), None),
        "segment_members": get(f"/segments/{quote(segment)}/members?limit=100", True),
        # half-way through the population by cursor (ids are p<9 digits>): no deeper cost
        "segment_members_deep": get(
            f"/segments/{quote(segment)}/members?limit=100&after=p{customers // 2:09d}", True
        ),
        "cluster_members": get(f"/clusters/{cluster}/members?limit=100", True),
        "customers_monetary": get("/customers?order_by=monetary&limit=100", True),
        "customers_churn_risk": get("/customers?order_by=churn_risk&limit=100", True),
        # as deep as an offset goes (MAX_OFFSET), or half-way through a small population
        "customers_churn_risk_deep": get(
            f"/customers?order_by=churn_risk&limit=100&offset={min(MAX_OFFSET, customers // 2)}",
            True,
        ),  # fmt: skip
        "customers_churn_risk_cursor": get(
            f"/customers?order_by=churn_risk&limit=100&after="
            f"{quote(_risk_cursor(http, customers))}",
            True,
        ),
        "audience_members": get(f"/audiences/{AUDIENCE_ID}/members?limit=100"),
        "customers_clv": get("/customers?order_by=predicted_clv_365d&limit=100"),  # a walk
    }
    if not walks:
        del paths["customers_clv"]
    out = {}
    for name, call in paths.items():
        ms, cpu_ms, redis_ms = [], [], []
        while not ms or (len(ms) < calls and sum(ms) < budget_s * 1000
                         and ms[0] < SLOW_CALL_S * 1000):  # fmt: skip
            for cache in getattr(api.state, "walks", {}).values():
                cache.clear()  # a cold call
            with Meter(client) as meter:
                call()
            ms.append(meter.figures["s"] * 1000)
            cpu_ms.append(meter.figures["cpu_s"] * 1000)
            redis_ms.append(meter.figures["redis_cpu_s"] * 1000)
        out[name] = {"ms": ms, "cpu_ms": cpu_ms, "redis_cpu_ms": redis_ms}
    http.close()
    reader.close()
    return out


def _risk_cursor(http, customers: int) -> str:
    """The churn-risk ranking's cursor half-way through (or as deep as an offset goes):
    where a client paging on by ``next`` would be."""
    deep = min(MAX_OFFSET, customers // 2)
    return http.get(f"/customers?order_by=churn_risk&limit=100&offset={deep}").json()["next"]


def spread(values: list[float]) -> str:
    return f"{min(values):,.1f}–{max(values):,.1f}" if len(values) > 1 else "one run"


def _row(name: str, runs: int, median: float, values: list[float], *rest: str) -> str:
    """One table line: name, runs, the median with its spread, then the other columns."""
    figure = f"{median:,.2f} ({spread(values)})"
    return f"{name:<34}{runs:>5}  {figure:<30}" + "".join(f"{r:>16}" for r in rest)


def table(figures: dict) -> list[str]:
    """The printed summary: one line per job or request."""
    load, spawn = figures["load"], figures["spawn"]
    lines = [
        f"{figures['customers']:,} customers ({figures['templates']:,} templates) written in "
        f"{load['s']:.0f}s ({load['per_s']:,.0f}/s, {load['concurrency']} writes in flight); "
        f"load average {figures['loadavg_before'][0]:.2f} before, "
        f"{figures['loadavg_after'][0]:.2f} after",
        f"g  Redis bytes per customer (used_memory): {figures['bytes_per_customer']:,.0f}",
        f"   idle loop's worst stall {figures['idle_stall_ms']:.1f} ms; a spawned job's "
        f"fixed cost {spawn['s']:.2f} s wall, {spawn['cpu_s']:.2f} s CPU",
        "",
        f"{'job':<34}{'runs':>5}  {'wall s (spread)':<30}{'CPU s':>16}{'Redis CPU s':>16}"
        f"{'worst stall ms':>16}",
    ]
    tick, jobs, sweep = figures["tick"], figures["jobs"], figures.get("sweep")
    rows = [("h  tick, 1,000 due, all ticks", [tick])]
    if jobs:
        rows += [("refit, first (no model before)", jobs["refit"]["first"]),
                 ("refit, parameters unchanged", jobs["refit"]["unchanged"]),
                 ("refit over another model", jobs["refit"]["moved"]),
                 ("edge refresh, edges moved (+1 d)", jobs["refresh"]["moved"]),
                 ("edge refresh, +1 min (whole-day)", jobs["refresh"]["unchanged"])]  # fmt: skip
    if sweep:
        rows.append(("cluster sweep, one pass", [sweep]))
    for name, runs in rows:
        walls = [r["s"] for r in runs]
        cpu = statistics.median(r["cpu_s"] for r in runs)
        redis_cpu = statistics.median(r["redis_cpu_s"] for r in runs)
        stall = max(r["worst_stall_ms"] for r in runs)
        lines.append(_row(name, len(runs), statistics.median(walls), walls, f"{cpu:,.2f}",
                          f"{redis_cpu:,.2f}", f"{stall:,.1f}"))  # fmt: skip
    if jobs:
        peak = max(r["child_peak_mb"] for job in jobs.values() for runs in job.values()
                   for r in runs)  # fmt: skip
        lines.append(f"   jobs ran in a kept child (JobProcess), {figures['children']} "
                     "spawned: a start is not in their CPU s (its cost is above); the "
                     f"child's peak memory {peak:,.0f} MB")  # fmt: skip
    each = tick["tick_ms"]
    lines.append(f"   h each tick (ms): median {statistics.median(each):,.1f}, worst "
                 f"{max(each):,.1f}, {len(each)} ticks")  # fmt: skip
    if jobs:
        published = [r["published"] for r in jobs["refit"]["unchanged"]]
        lines.append(f"   refit with the same data published: {published}")
        woke = [(r["result"].get("rescheduled_by"), r["result"].get("cell_entries"))
                for r in jobs["refit"]["moved"]]  # fmt: skip
        lines.append(f"   refit over another model re-scheduled by (how, cell wake-ups): {woke}")
        published = {k: [r["published"] for r in runs] for k, runs in jobs["refresh"].items()}
        lines.append(f"   refresh published new edges: +1 d {published['moved']}, "
                     f"+1 min {published['unchanged']}")  # fmt: skip
        woke = [(r["result"].get("woken_by"), r["result"].get("read"), r["result"].get("woken"))
                for r in jobs["refresh"]["moved"] if r["result"]]  # fmt: skip
        lines.append(f"   refresh +1 d found its customers by (how, states read, woken): {woke}")
    if sweep and sweep["slice_ms"]:
        lines.append(
            f"   sweep: {len(sweep['tick_ms'])} ticks, {len(sweep['slice_ms'])} slices; slice "
            f"median {statistics.median(sweep['slice_ms']):,.1f} ms, worst "
            f"{max(sweep['slice_ms']):,.1f}; tick median "
            f"{statistics.median(sweep['tick_ms']):,.1f} ms; {sweep['reassigned']:,} reassigned"
        )
    if sweep and not sweep["complete"]:
        modelled = sweep.get("modelled_pass_s")
        lines.append(
            f"   the sweep pass did NOT complete within the budget: {sweep['position']}"
            + (f"; the whole pass, modelled: {modelled:,.0f} s" if modelled else "")
        )
    lines += ["", f"{'request (cold)':<34}{'calls':>5}  {'median ms (spread)':<30}"
              f"{'CPU ms':>16}{'Redis CPU ms':>16}"]  # fmt: skip
    for name, r in figures["requests"].items():
        slow = " (over 60 s: timed once)" if r["ms"][0] > SLOW_CALL_S * 1000 else ""
        cpu, redis_cpu = statistics.median(r["cpu_ms"]), statistics.median(r["redis_cpu_ms"])
        lines.append(_row(name, len(r["ms"]), statistics.median(r["ms"]), r["ms"],
                          f"{cpu:,.0f}", f"{redis_cpu:,.0f}") + slow)  # fmt: skip
    return lines


def measure(url: str, namespace: str, args) -> dict:
    """Load the population into ``namespace`` and time every job and request on it."""
    keys = Keys(namespace)
    client = connect(url)
    settings = Settings.from_env({"REDIS_URL": url, "RTBA_NAMESPACE": namespace,
                                  "RTBA_API_WALK_CACHE_S": "0"})  # fmt: skip
    models = templates(audiences=AUDIENCES)
    learner, first, second = clustered(models, AUDIENCES)
    # Late enough that every due customer's recency has crossed edges: real re-scoring.
    watermark_ms = END_MS + 200 * DAY_MS
    figures: dict = {"customers": args.customers, "due": args.due, "templates": len(models),
                     "namespace": namespace, "loadavg_before": os.getloadavg()}  # fmt: skip

    def store() -> StateStore:
        return StateStore.from_url(url, keys)

    # The definitions and snapshot v1 in force, their passes done (every customer is
    # loaded evaluated under both): the ticks below do the due customers' work only.
    publish_audiences(client, keys, AUDIENCES)
    claim_whole(client, namespace)  # as a fresh namespace's first worker does
    asyncio.run(in_force(store(), first, learner, args.customers))
    before = used_memory(client)
    with Meter(client) as meter:
        asyncio.run(load(store(), models, args.customers, args.due, watermark_ms,
                         args.load_concurrency))  # fmt: skip
    figures["load"] = {**meter.figures, "per_s": args.customers / meter.figures["s"],
                       "concurrency": args.load_concurrency}  # fmt: skip
    figures["bytes_per_customer"] = (used_memory(client) - before) / args.customers

    note(f"loaded {args.customers:,} in {meter.figures['s']:.0f}s; "
         f"{figures['bytes_per_customer']:.0f} B a customer")  # fmt: skip

    with Meter(client) as meter:
        tick_ms, _, stall_ms = asyncio.run(watched(ticks(store(), args.due)))
    figures["tick"] = {**meter.figures, "tick_ms": tick_ms, "worst_stall_ms": stall_ms}
    figures["idle_stall_ms"] = asyncio.run(watched(asyncio.sleep(2.0)))[2]
    with Meter(client) as meter:  # a fresh child each time, as before S10
        asyncio.run(run_off_loop(idle_job))
    figures["spawn"] = {**meter.figures, "result": None}
    note(f"ticks {[round(t) for t in tick_ms]} ms")
    jobs = figures["jobs"] = {}
    if "jobs" not in args.skip:
        jobs["refit"] = refits(client, settings, args.repeat, args.job_budget_s)
        note(f"refits {_walls(jobs['refit'])}")
        jobs["refresh"], watermark_ms = refreshes(client, store, settings, watermark_ms,
                                                  args.repeat, args.job_budget_s,
                                                  args.customers)  # fmt: skip
        note(f"refreshes {_walls(jobs['refresh'])}")
    if "sweep" not in args.skip:
        with Meter(client) as meter:
            sweep, _, stall_ms = asyncio.run(
                watched(sweep_pass(store(), second, learner, args.sweep_budget_s))
            )
        figures["sweep"] = {**meter.figures, **sweep, "worst_stall_ms": stall_ms}
        note(f"sweep pass {meter.figures['s']:.1f}s")
    figures["requests"] = {}
    if "requests" not in args.skip:
        segment = Counter(m.segment for m in models if m.segment).most_common(1)[0][0]
        cluster = Counter(m.cluster_id for m in models if m.cluster_id is not None)
        figures["requests"] = requests(settings, client, args.calls, args.call_budget_s,
                                       segment, cluster.most_common(1)[0][0],
                                       args.customers, "walks" not in args.skip)  # fmt: skip
    figures["loadavg_after"] = os.getloadavg()
    figures["children"] = JOBS.started
    JOBS.close()
    for runs in (*[r for job in jobs.values() for r in job.values()], [figures["spawn"]]):
        for run in runs:  # results are for the checks above; parameters stay, briefly
            run["result"] = _brief(run["result"])
    client.close()
    return figures


def note(text: str) -> None:
    """Progress on stderr: a long run shows where it is (stdout has the table)."""
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def _walls(runs: dict) -> dict:
    return {kind: [round(r["s"], 1) for r in each] for kind, each in runs.items()}


def _brief(result) -> dict | None:
    if not isinstance(result, dict):
        return None
    kept = ("version", "model", "params", "customers", "rescheduled_by", "cell_entries",
            "woken_by", "read", "woken")  # fmt: skip
    return {k: result[k] for k in kept if k in result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.population",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("--customers", type=int, default=1_000_000,
                        help="population size (10,000,000: ~3 GB of Redis)")  # fmt: skip
    parser.add_argument("--due", type=int, default=5_000,
                        help="customers due at the watermark (ticks take 1,000 each)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3, help="runs of each job at most")
    parser.add_argument("--job-budget-s", type=float, default=90.0,
                        help="no further run of a job once its runs took this long")  # fmt: skip
    parser.add_argument("--calls", type=int, default=20, help="calls of each request at most")
    parser.add_argument("--call-budget-s", type=float, default=60.0,
                        help="no further call once a request's calls took this long")  # fmt: skip
    parser.add_argument("--sweep-budget-s", type=float, default=600.0,
                        help="stop the sweep pass after this long (reported)")  # fmt: skip
    parser.add_argument("--load-concurrency", type=int, default=1,
                        help="store writes in flight while loading")  # fmt: skip
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=("jobs", "sweep", "requests", "walks"),
                        help="leave these out (the ticks and the load always run; walks: "
                        "the requests that still walk, hours and tens of GB at 10M)")  # fmt: skip
    parser.add_argument("--namespace", help="default: a fresh pop<random> namespace")
    parser.add_argument("--keep", action="store_true", help="keep the namespace's keys")
    parser.add_argument("--redis-cluster", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rtba-population-") as scratch:
        given = os.environ.get("KAFKA_BOOTSTRAP") and os.environ.get("REDIS_URL")
        cluster = "1" if args.redis_cluster else "0"
        own = (
            None
            if given
            else stack.up(Settings.from_env({"RTBA_HOME": scratch, "RTBA_REDIS_CLUSTER": cluster}))
        )
        url = own["redis_url"] if own else os.environ["REDIS_URL"]
        namespace = args.namespace or f"pop{uuid.uuid4().hex[:8]}"
        try:
            figures = measure(url, namespace, args)
        finally:
            if not args.keep:
                _delete_keys(Settings.from_env({"REDIS_URL": url, "RTBA_NAMESPACE": namespace}))
            if own:
                stack.down(Settings.from_env({"RTBA_HOME": scratch}))
    print("\n".join(table(figures)))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Scenarios g and h of S5 at a population's size, without replaying its events: Redis
bytes per customer, and the leader's time-driven tick with 1,000 of N customers due.

Template customers are folded from synthetic events by the worker's own pure pipeline
(decode, fold: their orders, refunds and clicks as a worker writes them), then written N
times over under new ids through the worker's own store (``StateStore.save``: the Lua
write, orders, refund ids, due index). ``--due`` of them are due before the watermark,
the rest far after it. Then:

- g: Redis's used memory after the load minus before, over N;
- h: the leader's re-scoring step (``Rescorer``, limit 1,000) timed tick by tick until
  every due customer is re-scored: the median and the worst tick, and the worst stall
  the ticks cause on the event loop (measured as in i);
- i: a churn refit and an RFM-edge refresh over the population, each run off the event
  loop as the leader runs them (``streams.processing.app``), while a 1 ms timer on the loop
  records how late it wakes: the job's duration and the loop's worst stall, against
  the worst stall of the same timer with no job running.

Uses the stack given by KAFKA_BOOTSTRAP and REDIS_URL (only Redis is used), or starts one
(``--redis-cluster`` for a three-master Redis Cluster).

Run: .venv/bin/python -m benchmarks.population [--customers N] [--due D] [--redis-cluster]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path

from launcher import stack
from online_models.customer import CustomerState
from online_models.rfm import RFMScorer
from producers import synthetic
from streams.api.history import sizes_sample
from streams.processing.offload import run_off_loop
from streams.processing.pipeline import (
    Models,
    Record,
    decode_batch,
    fold_batch,
    lookups,
)
from streams.processing.schemas import Limits
from streams.processing.worker import BatchProcessor, Rescorer, refit_churn, refresh_rfm_edges
from streams.read.reader import StateReader
from streams.settings import Settings
from streams.state import facts
from streams.state.keys import Keys
from streams.state.redis_client import info_per_server
from streams.state.store import StateStore, connect

DAY_MS = 86_400_000
END_MS = 1_760_000_000_000
TEMPLATES = 2_000


def templates(seed: int = 7) -> list[CustomerState]:
    """Customers folded from a year of synthetic events, as a worker would write them."""
    start = END_MS - 365 * DAY_MS
    raw = [json.dumps(e).encode()
           for e in synthetic.generate(seed, TEMPLATES, 40 * TEMPLATES, start, END_MS)]  # fmt: skip
    records = [Record(0, i, None, v) for i, v in enumerate(raw)]
    valid, _ = decode_batch(records, END_MS, Limits())
    states = {cid: CustomerState(cid) for cid in lookups(valid)}
    fold_batch(valid, states, Models(RFMScorer()))
    return [s for s in states.values() if s.last_event_ms is not None]


def used_memory(client) -> int:
    return sum(int(i["used_memory"]) for i in info_per_server(client, "memory"))


async def load(store: StateStore, models: list[CustomerState], customers: int, due: int,
               watermark_ms: int) -> None:  # fmt: skip
    """``customers`` copies of the templates under new ids, ``due`` of them due now."""
    for at in range(0, customers, 1000):
        states, due_at = {}, {}
        for i in range(at, min(at + 1000, customers)):
            model = models[i % len(models)]
            cid = f"p{i:09d}"
            states[cid] = dataclasses.replace(model, customer_id=cid, version=0)
            due_at[cid] = watermark_ms - DAY_MS if i < due else watermark_ms + 3650 * DAY_MS
        # the population facts (the edge refresh reads their histograms), as a worker's writes
        added = {cid: facts.contribution(state) for cid, state in states.items()}
        result = await store.save(states, due_at, {}, {0: watermark_ms}, watermark_ms, added)
        assert not result.conflicts


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


async def worst_stall(job, at_least_s: float = 2.0) -> tuple[float, float]:
    """Run ``job`` off the loop (``run_off_loop``, as the leader does), watched; the job's
    seconds and the loop's worst stall in ms. With ``job`` None, the timer alone for
    ``at_least_s``: the baseline."""
    _, seconds, worst_ms = await watched(run_off_loop(job) if job else asyncio.sleep(at_least_s))
    return seconds, worst_ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.population",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=5_000,
                        help="customers due at the watermark (ticks take 1,000 each)")  # fmt: skip
    parser.add_argument("--redis-cluster", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    models = templates()
    # Late enough that every due customer's recency has crossed edges: real re-scoring.
    watermark_ms = END_MS + 200 * DAY_MS
    with tempfile.TemporaryDirectory(prefix="rtba-population-") as scratch:
        given = os.environ.get("KAFKA_BOOTSTRAP") and os.environ.get("REDIS_URL")
        cluster = "1" if args.redis_cluster else "0"
        own = (
            None
            if given
            else stack.up(Settings.from_env({"RTBA_HOME": scratch, "RTBA_REDIS_CLUSTER": cluster}))
        )
        url = own["redis_url"] if own else os.environ["REDIS_URL"]
        namespace = f"pop{uuid.uuid4().hex[:8]}"
        try:
            client = connect(url)
            before = used_memory(client)
            began = time.perf_counter()
            store = StateStore.from_url(url, Keys(namespace))
            asyncio.run(load(store, models, args.customers, args.due, watermark_ms))
            load_s = time.perf_counter() - began
            per_customer = (used_memory(client) - before) / args.customers
            tick_ms, _, tick_stall_ms = asyncio.run(
                watched(ticks(StateStore.from_url(url, Keys(namespace)), args.due))
            )
            settings = Settings.from_env({"REDIS_URL": url, "RTBA_NAMESPACE": namespace})
            stalls = {"idle": asyncio.run(worst_stall(None))}
            stalls["refit"] = asyncio.run(worst_stall(partial(refit_churn, settings)))
            stalls["refresh"] = asyncio.run(worst_stall(partial(refresh_rfm_edges, settings)))
            # The API's dashboard sample walks everyone too (streams/api/history.py).
            reader = StateReader(settings)
            began = time.perf_counter()
            sizes_sample(reader, 0, None)
            sample_s = time.perf_counter() - began
            reader.close()
        finally:
            if own:
                stack.down(Settings.from_env({"RTBA_HOME": scratch}))
    figures = {"customers": args.customers, "due": args.due, "load_s": load_s,
               "bytes_per_customer": per_customer, "tick_ms": tick_ms,
               "tick_worst_stall_ms": tick_stall_ms, "dashboard_sample_s": sample_s,
               "stalls": {k: {"job_s": job_s, "worst_stall_ms": ms}
                          for k, (job_s, ms) in stalls.items()}}  # fmt: skip
    print(f"{args.customers:,} customers ({len(models):,} templates) written in {load_s:.0f}s "
          f"({args.customers / load_s:,.0f}/s)")  # fmt: skip
    print(f"g  Redis bytes per customer (used_memory):       {per_customer:>8,.0f} (goal ≤ 300)")
    median, worst = statistics.median(tick_ms), max(tick_ms)
    print(f"h  tick with 1,000 due, median of {len(tick_ms)} (ms):   "
          f"{median:>8,.1f} (worst {worst:,.1f}; goal ≤ 50)")  # fmt: skip
    print(f"h  worst loop stall during those ticks (ms):     {tick_stall_ms:>8,.1f} "
          f"({tick_stall_ms / max(stalls['idle'][1], 0.01):,.0f} x idle; goal ≤ 50)")  # fmt: skip
    idle_ms = stalls["idle"][1]
    for name in ("refit", "refresh"):
        job_s, stall_ms = stalls[name]
        ratio = stall_ms / max(idle_ms, 0.01)
        print(f"i  {name:<7} {job_s:>6,.1f}s; worst loop stall (ms):  {stall_ms:>8,.1f} "
              f"({ratio:,.0f} x idle {idle_ms:.1f}; goal ≤ 50)")  # fmt: skip
    refit_s = stalls["refit"][0]
    print(f"j  a dashboard sample (segment and cluster sizes): {sample_s:>6,.1f}s "
          f"({sample_s / max(refit_s, 0.01):.2f} x the refit's {refit_s:,.1f}s, which reads "
          "everyone too)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

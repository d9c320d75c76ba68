"""The leader's cluster sweep at a population's size (S10, issue #27 item 4): customers
read per tick and the event loop's worst stall while the sweep assigns a new snapshot.

N customers are written through the worker's own store (benchmarks.population's loader:
template customers folded from synthetic events), a cluster snapshot is published, and
the leader's ``Rescorer`` ticks as a worker's timer would run it (slices of 50, 200 swept
a tick, a third of the loop) while a 1 ms timer on the same loop records how late it
wakes (as benchmarks.population.watched does). Reported: customers read per tick (median and
most), each tick's time (its pauses for the agent included), and the timer's lateness
during the ticks against 3 s of the loop idle (the machine's own noise). ``--inline``
decodes and assigns on the loop, for the comparison. The namespace is
deleted afterwards.

Uses the Redis given by REDIS_URL (source /work/helpers/stack.env-style files), or starts
a stack.

Run: .venv/bin/python -m benchmarks.sweep [--customers N] [--ticks T]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid

import numpy as np

from benchmarks.population import END_MS, load, templates
from launcher import stack
from online_models.clusters import ClusterSnapshot
from online_models.features import FEATURES
from online_models.rfm import RFMScorer
from streams.processing.schemas import Limits
from streams.processing.worker import BatchProcessor, Rescorer
from streams.settings import Settings
from streams.state.keys import Keys
from streams.state.store import StateStore, connect

DAY_MS = 86_400_000


def snapshot(version: int, k: int = 6, seed: int = 3) -> ClusterSnapshot:
    """k random centres in standardised space: the distance work of a real snapshot."""
    rng = np.random.default_rng(seed)
    width = len(FEATURES)
    return ClusterSnapshot(version, list(range(k)), rng.normal(size=(k, width)),
                           np.zeros(width), np.ones(width))  # fmt: skip


async def sweep(url: str, namespace: str, ticks: int) -> tuple[list[int], list[float], float]:
    """Customers read and milliseconds of each of ``ticks`` ticks, and the worst stall."""
    store = StateStore.from_url(url, Keys(namespace))
    await store.publish_clusters(snapshot(1), b"")
    read: list[int] = []
    scan = store.scan_customers

    async def counted(*args, **kwargs):
        cursor, ids = await scan(*args, **kwargs)
        read[-1] += len(ids)
        return cursor, ids

    store.scan_customers = counted
    rescorer = Rescorer(BatchProcessor(store, RFMScorer(), Limits()))
    times: list[float] = []

    async def run() -> None:
        for _ in range(ticks):
            read.append(0)
            began = time.perf_counter()
            await rescorer.tick()
            times.append((time.perf_counter() - began) * 1000)

    idle = await lateness(asyncio.sleep(3.0))
    busy = await lateness(run())
    await store.client.aclose()
    return read, times, idle, busy


async def lateness(work, tick_s: float = 0.001) -> list[float]:
    """Await ``work`` while a timer on the same loop sleeps ``tick_s`` again and again: how
    late it woke each time, in ms (how long the loop was held at a stretch, as the agent
    serving events would feel it)."""
    task = asyncio.ensure_future(work)
    late: list[float] = []
    while not task.done():
        asked = time.perf_counter()
        await asyncio.sleep(tick_s)
        late.append((time.perf_counter() - asked - tick_s) * 1000)
    await task
    return late


def spread(late: list[float]) -> str:
    ordered = sorted(late)
    p99 = ordered[int(0.99 * (len(ordered) - 1))]
    return f"p50 {statistics.median(ordered):.2f}, p99 {p99:.2f}, worst {ordered[-1]:.1f}"


def drop(url: str, namespace: str) -> None:
    client = connect(url)
    batch = []
    for key in client.scan_iter(match=f"{namespace}:*", count=10_000):
        batch.append(key)
        if len(batch) >= 10_000:
            client.unlink(*batch)
            batch = []
    if batch:
        client.unlink(*batch)
    client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.sweep",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--ticks", type=int, default=10)
    parser.add_argument("--inline", action="store_true",
                        help="decode and assign on the event loop (the comparison)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.inline:

        async def inline(step, *a, **kw):
            return step(*a, **kw)

        asyncio.to_thread = inline  # this process's only to_thread is the sweep's slice
    models = templates()
    watermark_ms = END_MS + 30 * DAY_MS
    with tempfile.TemporaryDirectory(prefix="rtba-sweep-") as scratch:
        given = os.environ.get("REDIS_URL")
        own = None if given else stack.up(Settings.from_env({"RTBA_HOME": scratch}))
        url = own["redis_url"] if own else os.environ["REDIS_URL"]
        namespace = f"sweep{uuid.uuid4().hex[:8]}"
        try:
            began = time.perf_counter()
            asyncio.run(load(StateStore.from_url(url, Keys(namespace)), models,
                             args.customers, 0, watermark_ms))  # fmt: skip
            load_s = time.perf_counter() - began
            read, times, idle, busy = asyncio.run(sweep(url, namespace, args.ticks))
        finally:
            drop(url, namespace)
            if own:
                stack.down(Settings.from_env({"RTBA_HOME": scratch}))
    print(f"{args.customers:,} customers written in {load_s:.0f}s; {len(times)} ticks")
    print(f"customers read per tick: median {statistics.median(read):,.0f}, most {max(read):,}"
          f" (the sweep's limit: 200)")  # fmt: skip
    print(f"tick ms: median {statistics.median(times):,.1f}, worst {max(times):,.1f}")
    print(f"1 ms timer's lateness during the ticks (ms): {spread(busy)} (goal: worst <= 10)")
    print(f"1 ms timer's lateness, idle 3 s (ms):        {spread(idle)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

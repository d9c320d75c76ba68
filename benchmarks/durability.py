"""What durable state writes cost: the worker's batch step (decode, load, fold, save with
the outbox) against a real redis-server with ``appendfsync always`` and with
``appendfsync everysec``, in the same run.

Kafka is left out on purpose: the policy changes Redis's cost only, and a broker would add
its own noise to both sides. Each mode gets a fresh redis-server of its own; every run
replays the same synthetic events in batches of 500 into an emptied database.

Run: .venv/bin/python -m benchmarks.durability [--customers N] [--events M] [--runs R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis

from launcher import stack
from online_models.rfm import RFMScorer
from producers import synthetic
from streams.processing.pipeline import Record
from streams.processing.schemas import Limits
from streams.processing.worker import BatchProcessor
from streams.state.keys import Keys
from streams.state.store import StateStore

END_MS = 1_760_000_000_000


async def one_run(url: str, raw: list[bytes], batch: int) -> float:
    client = aioredis.Redis.from_url(url)
    await client.flushdb()
    processor = BatchProcessor(StateStore(client, Keys("bench")), RFMScorer(), Limits(),
                               clock=lambda: END_MS / 1000)  # fmt: skip
    began = time.perf_counter()
    for at in range(0, len(raw), batch):
        chunk = raw[at : at + batch]
        await processor.process([Record(at % 6, at + i, None, v) for i, v in enumerate(chunk)])
    elapsed = time.perf_counter() - began
    await client.aclose()
    return len(raw) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    start = END_MS - 365 * synthetic.MS_PER_DAY
    raw = [json.dumps(e).encode()
           for e in synthetic.generate(5, args.customers, args.events, start, END_MS)]  # fmt: skip
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("everysec", "always"):
            port = stack.free_port()
            pid = stack.start_redis(Path(tmp) / mode, port, fsync=mode)
            try:
                url = f"redis://127.0.0.1:{port}/0"
                results[mode] = [asyncio.run(one_run(url, raw, args.batch))
                                 for _ in range(args.runs)]  # fmt: skip
            finally:
                stack.stop_pid(pid)
    base = statistics.median(results["everysec"])
    print(f"{len(raw)} events, {args.customers} customers, batches of {args.batch}, "
          f"{args.runs} runs each")  # fmt: skip
    print(f"{'appendfsync':12} {'events/s':>10} {'min':>10} {'max':>10} {'x everysec':>10}")
    for mode, rates in results.items():
        med = statistics.median(rates)
        print(f"{mode:12} {med:>10.0f} {min(rates):>10.0f} {max(rates):>10.0f} "
              f"{med / base:>10.2f}")  # fmt: skip


if __name__ == "__main__":
    main()

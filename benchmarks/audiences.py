"""What live audiences cost the worker's hot path, measured on the synthetic personas.

The same events go through the worker's own pure pipeline (decode, fold in batches of
500, next due times), once without audience definitions (the baseline, measured in the
same run) and once with the example holiday set (five audiences: segment, windowed
counts, monetary, days since the last event, churn risk). Reported: events per second
(median of 3 runs each) and the ratio, the mean encoded state size of each, the largest
per-customer log, and how many enters and exits the set produced. The re-scoring tick
that walks due times is the same code (pipeline.rescore_due) and costs one evaluation
per due time; its cost at 1M customers is in benchmarks/population.py.

Run: .venv/bin/python -m benchmarks.audiences [--customers N] [--events M] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from online_models.customer import CustomerState
from online_models.rfm import RFMScorer
from producers import synthetic
from streams.audiences.definitions import EXAMPLE, load
from streams.processing.pipeline import Models, Record, decode_batch, fold_batch, lookups
from streams.processing.schemas import Limits
from streams.state import state_codec

END_MS = 1_767_000_000_000  # 2025-12-29: the holiday season in the synthetic calendar
BATCH = 500


def run(raw: list[bytes], models: Models) -> tuple[float, dict[str, CustomerState], int]:
    """Seconds to fold every record, the final states, and the audience changes made."""
    states: dict[str, CustomerState] = {}
    changes = 0
    started = time.perf_counter()
    for at in range(0, len(raw), BATCH):
        records = [Record(0, at + i, None, v) for i, v in enumerate(raw[at : at + BATCH])]
        valid, _ = decode_batch(records, END_MS, Limits())
        for cid in lookups(valid):
            states.setdefault(cid, CustomerState(cid))
        changes += len(fold_batch(valid, states, models).audience_changes)
    return time.perf_counter() - started, states, changes


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)
    start = END_MS - args.days * synthetic.MS_PER_DAY
    raw = [json.dumps(e).encode()
           for e in synthetic.generate(7, args.customers, args.events, start, END_MS)]  # fmt: skip
    plain = Models(RFMScorer())
    with_set = Models(RFMScorer(), audiences=load(EXAMPLE), audiences_version=1)
    figures = {}
    for name, models in (("baseline", plain), ("audiences", with_set)):
        runs = [run(raw, models) for _ in range(3)]
        seconds = statistics.median(r[0] for r in runs)
        states = runs[0][1]
        sizes = [len(state_codec.encode(s)) for s in states.values()]
        figures[name] = {
            "events_per_s": round(len(raw) / seconds),
            "mean_state_bytes": round(statistics.mean(sizes), 1),
            "largest_log": max(
                (sum(map(len, s.recent.values())) for s in states.values()), default=0
            ),  # fmt: skip
            "audience_changes": runs[0][2],
        }
    figures["ratio"] = round(figures["audiences"]["events_per_s"]
                             / figures["baseline"]["events_per_s"], 3)  # fmt: skip
    figures["events"], figures["customers"] = len(raw), args.customers
    print(f"{len(raw):,} events, {args.customers:,} customers, batches of {BATCH}")
    for name in ("baseline", "audiences"):
        f = figures[name]
        print(f"  {name:10} {f['events_per_s']:>9,} events/s (median of 3)   state "
              f"{f['mean_state_bytes']:.0f} B mean   largest log {f['largest_log']}   "
              f"audience changes {f['audience_changes']:,}")  # fmt: skip
    print(f"  with the example audiences: {figures['ratio']:.2f}x the baseline's throughput")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=2)
    return figures


if __name__ == "__main__":
    main()

"""Which clusterer for behavioural clusters? Measured on the synthetic personas.

rtba's (StableClusterer: k-means over a uniform customer sample as of now, warm-started
from the previous snapshot) against River's online clusterers behind River's
StandardScaler (River's KMeans was rtba's learner up to S2). For each: learn over every
customer's feature vector (one pass, shuffled), snapshot, learn a second pass over the
*same* data, snapshot again; report

- ARI of the second snapshot's assignment against the true persona,
- stability: share of customers whose cluster id changed between the two snapshots
  although the data did not change (ids matched by StableClusterer),
- microseconds per learn_one (median of 3 runs) and the ratio to KMeans's, and the
  milliseconds one snapshot takes (rtba fits its k-means there),
- snapshot size (JSON bytes) and cluster count.

Then, for the learners that keep ids, stability in the stream: the same events go through
the worker's own pipeline (decode, fold) in batches of 1, 10, 100 and 500 events, each
batch's samples (one per changed customer) train the learner, and a snapshot is taken
every 500 samples after a warm-up of 2,000, as the trainer does. Reported per batch size,
over the snapshots of the second half of the stream: the median share of customers (their
final feature vectors, a fixed population) whose cluster id changes from one snapshot to
the next, the last snapshot's ARI against the personas, and the median ARI of the
snapshots (the last one alone is one draw of a moving model).

The default window (500 customers, 200 days, every event) is long enough for the churners
to fall silent: over a shorter one (the S2 default, 1,500 customers capped at 150,000
events, which is 43 days) churners and loyal customers have the same features.

Run: .venv/bin/python -m benchmarks.clustering [--customers N] [--days D] [--events M]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from decimal import Decimal

import numpy as np
from river import cluster, preprocessing

from online_models.clusters import (
    ClusterSnapshot,
    StableClusterer,
    adjusted_rand_index,
    next_snapshot,
)
from online_models.customer import CustomerState
from online_models.features import FEATURES, as_rows, behaviour_features
from online_models.rfm import RFMScorer
from producers import synthetic
from streams.processing.pipeline import Models, Record, decode_batch, fold_batch, lookups
from streams.processing.schemas import Limits, to_epoch_ms

END_MS = 1_760_000_000_000
BATCH_SIZES = (1, 10, 100, 500)

CANDIDATES = {
    "rtba": None,  # StableClusterer: k-means over a customer sample, as of now
    "KMeans": lambda: cluster.KMeans(n_clusters=5, halflife=0.05, sigma=1.0, seed=42),
    "STREAMKMeans": lambda: cluster.STREAMKMeans(chunk_size=100, n_clusters=5, seed=42),
    "CluStream": lambda: cluster.CluStream(
        n_macro_clusters=5, max_micro_clusters=50, time_gap=500, seed=42
    ),  # fmt: skip
    "DenStream": lambda: cluster.DenStream(
        decaying_factor=0.01, beta=0.5, mu=2.5, epsilon=1.5, n_samples_init=300
    ),  # fmt: skip
    "DBSTREAM": lambda: cluster.DBSTREAM(
        clustering_threshold=1.5, fading_factor=0.001, cleanup_interval=4, minimum_weight=1.0
    ),  # fmt: skip
}


class RiverClusters:
    """A River clusterer behind River's online StandardScaler, snapshotted with rtba's id
    matching: how rtba clustered up to S2 (KMeans), for comparison."""

    def __init__(self, learner, match_radius: float = 1.0):
        self.learner = learner
        self.match_radius = match_radius
        self.scaler = preprocessing.StandardScaler()
        self.last: ClusterSnapshot | None = None
        self.next_id = 0
        self.seen = 0

    def learn_one(self, x: dict[str, float], customer_id=None, last_event_ms=None) -> None:
        x = {f: 0.0 if v is None else v for f, v in x.items()}  # S2 filled unknowns with 0
        self.scaler.learn_one(x)
        self.learner.learn_one(self.scaler.transform_one(x))
        self.seen += 1

    def snapshot(self) -> ClusterSnapshot:
        mean = np.array([self.scaler.means.get(f, 0.0) for f in FEATURES])
        var = np.array([self.scaler.vars.get(f, 0.0) for f in FEATURES])
        scale = np.where(var > 1e-12, np.sqrt(var), 1.0)
        centers = [c for c in self.learner.centers.values() if c]
        rows = np.array([[c.get(f, 0.0) for f in FEATURES] for c in centers], dtype=float)
        rows = rows.reshape(len(centers), len(FEATURES))
        self.last, self.next_id = next_snapshot(self.last, rows, mean, scale,
                                                self.match_radius, self.next_id)  # fmt: skip
        return self.last


def make(name: str):
    if name == "rtba":
        return StableClusterer(n_clusters=5, seed=42)
    return RiverClusters(CANDIDATES[name]())


def population(seed: int, customers: int, events: int, days: int = 365):
    """Final states of synthetic customers (folded directly, no broker) and true personas."""
    end = END_MS
    start = end - days * synthetic.MS_PER_DAY
    states: dict[str, CustomerState] = {}
    for e in synthetic.generate(seed, customers, events, start, end):
        s = states.setdefault(e["customer_id"], CustomerState(e["customer_id"]))
        ts = to_epoch_ms(e["ts"])
        if e["type"] == "purchase":
            cats: dict[str, int] = {}
            for item in e["items"]:
                cats[item["category"]] = cats.get(item["category"], 0) + item["quantity"]
            s.apply_purchase(ts, Decimal(e["amount"]), e["order_id"], cats,
                             discounted=Decimal(e["discount"]) > 0,
                             items=sum(i["quantity"] for i in e["items"]))  # fmt: skip
        elif e["type"] == "refund":
            s.apply_refund(ts, Decimal(e["amount"]), e["order_id"], e["event_id"])
        else:
            s.apply_click(ts, e["action"], e.get("category"))
    truth = synthetic.personas(seed, customers)
    vectors = {cid: behaviour_features(s, end) for cid, s in states.items()}
    ids = sorted(vectors)
    return ids, [vectors[c] for c in ids], [truth[c] for c in ids]


def evaluate(name: str, ids, vectors, truth, seed: int) -> dict:
    rows = as_rows(vectors)
    timings, result = [], {}
    for run in range(3):
        model = make(name)
        order = list(range(len(vectors)))
        random.Random(seed + run).shuffle(order)
        began = time.perf_counter()
        for i in order:
            model.learn_one(vectors[i], ids[i])
        timings.append((time.perf_counter() - began) / len(order) * 1e6)
        first = model.snapshot()
        if not first.ids:
            return {"algorithm": name, "clusters": 0, "ari": float("nan"),
                    "changed": float("nan"), "us_per_sample": statistics.median(timings),
                    "snapshot_bytes": 0, "snapshot_ms": 0.0}  # fmt: skip
        before = assign(model, first, rows)
        for i in order:
            model.learn_one(vectors[i], ids[i])
        began = time.perf_counter()
        second = model.snapshot()
        snapshot_ms = (time.perf_counter() - began) * 1000
        after = assign(model, second, rows)
        if run == 0:
            result = {
                "algorithm": name,
                "clusters": len(second.ids),
                "ari": adjusted_rand_index(truth, after),
                "changed": float(np.mean(before != after)),
                "snapshot_bytes": len(json.dumps(second.to_dict())),
                "snapshot_ms": snapshot_ms,
            }
    result["us_per_sample"] = statistics.median(timings)
    return result


def stream_stability(
    name: str,
    seed: int,
    customers: int,
    events: int,
    batch_size: int,
    rows: np.ndarray,
    truth,
    days: int = 365,
    every: int = 500,
    warmup: int = 2000,
) -> dict:
    """Train through the worker's pipeline in batches of ``batch_size`` events; return the
    median relabelled share between consecutive snapshots and the median ARI of the
    snapshots, over the second half of the stream."""
    start = END_MS - days * synthetic.MS_PER_DAY
    raw = [json.dumps(e).encode() for e in synthetic.generate(seed, customers, events, start,
                                                              END_MS)]  # fmt: skip
    model = make(name)
    models, limits = Models(RFMScorer()), Limits()
    states: dict[str, CustomerState] = {}
    personas = synthetic.personas(seed, customers)
    shares, aris, now_aris, previous, since = [], [], [], None, 0
    for at in range(0, len(raw), batch_size):
        records = [Record(0, at + i, None, v) for i, v in enumerate(raw[at : at + batch_size])]
        valid, _ = decode_batch(records, END_MS, limits)
        for cid in lookups(valid):
            states.setdefault(cid, CustomerState(cid))
        for cid, x in fold_batch(valid, states, models).samples.items():
            model.learn_one(x["features"], cid, x["last_event_ms"])
            since += 1
        if since < every or model.seen < warmup:
            continue
        since, snapshot = 0, model.snapshot()
        labels = assign(model, snapshot, rows) if snapshot.ids else None
        if previous is not None and labels is not None and at >= len(raw) // 2:
            shares.append(float(np.mean(previous != labels)))
            aris.append(adjusted_rand_index(truth, labels))
            now_aris.append(as_of_ari(model, snapshot, states, personas))
        previous = labels
    return {
        "relabelled": statistics.median(shares) if shares else float("nan"),
        "snapshots": len(shares),
        "ari": statistics.median(aris) if aris else float("nan"),
        "last_ari": aris[-1] if aris else float("nan"),
        "now_ari": statistics.median(now_aris) if now_aris else float("nan"),
    }


def assign(model, snapshot: ClusterSnapshot, rows: np.ndarray) -> np.ndarray:
    """Cluster ids of raw rows, each learner with its own treatment of unknown values."""
    if isinstance(model, RiverClusters):
        rows = np.nan_to_num(rows, nan=0.0)  # as it learned them
    return snapshot.assign_many(rows)


def as_of_ari(model, snapshot: ClusterSnapshot, states: dict[str, CustomerState],
              personas) -> float:  # fmt: skip
    """ARI of the snapshot on the customers as they are at its time (what the sweep assigns)."""
    now = max(s.clock_ms for s in states.values() if s.clock_ms is not None)
    seen = sorted(cid for cid, s in states.items() if s.last_event_ms is not None)
    rows = as_rows(behaviour_features(states[c], now) for c in seen)
    return adjusted_rand_index([personas[c] for c in seen], assign(model, snapshot, rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument(
        "--events",
        type=int,
        default=10**9,
        help="cap on events (default: every event of the window)",
    )
    parser.add_argument(
        "--days",
        type=int,
        default=200,
        help="window length: long enough for churners to fall silent",
    )
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--stream", nargs="*", default=["rtba", "KMeans"],
                        help="learners to run through the stream by batch size")  # fmt: skip
    args = parser.parse_args()
    ids, vectors, truth = population(args.seed, args.customers, args.events, args.days)
    print(f"{len(ids)} customers over {args.days} days, personas: "
          f"{ {p: truth.count(p) for p in sorted(set(truth))} }")  # fmt: skip
    rows = [evaluate(name, ids, vectors, truth, args.seed) for name in CANDIDATES]
    base = next(r["us_per_sample"] for r in rows if r["algorithm"] == "KMeans")  # the baseline
    print(f"{'algorithm':14} {'clusters':>8} {'ARI':>6} {'id changed':>10} "
          f"{'us/sample':>10} {'x KMeans':>8} {'snapshot B':>10} {'snapshot ms':>11}")  # fmt: skip
    for r in rows:
        print(f"{r['algorithm']:14} {r['clusters']:>8} {r['ari']:>6.3f} {r['changed']:>10.3f} "
              f"{r['us_per_sample']:>10.1f} {r['us_per_sample'] / base:>8.2f} "
              f"{r['snapshot_bytes']:>10} {r['snapshot_ms']:>11.1f}")  # fmt: skip
    print("\nin the stream, by events per batch: share relabelled per snapshot / last ARI / "
          "median ARI / median ARI as of each snapshot (second half's snapshots)")  # fmt: skip
    print(f"{'algorithm':14} " + " ".join(f"{f'B={b}':>29}" for b in BATCH_SIZES))
    matrix = as_rows(vectors)
    for name in args.stream:
        cells = []
        for b in BATCH_SIZES:
            r = stream_stability(
                name, args.seed, args.customers, args.events, b, matrix, truth, days=args.days
            )
            cells.append(f"{r['relabelled']:.3f} / {r['last_ari']:.3f} / {r['ari']:.3f} / "
                         f"{r['now_ari']:.3f}")  # fmt: skip
        print(f"{name:14} " + " ".join(f"{c:>29}" for c in cells))


if __name__ == "__main__":
    main()

"""The churn refit from a bounded customer sample against the fit on everyone (S10).

Simulates a population of N customers under the MBG/NBD story (purchase rate
lambda ~ Gamma(r, alpha), a drop-out chance p ~ Beta(a, b) at the first purchase and
after each repeat one, ages T uniform over 1..78 weeks) with Gamma-Gamma spend (values
~ Gamma(p, nu), nu ~ Gamma(q, gamma)), ids ``c0000000``..., and fits, with the pure fit
functions the refit uses (no Redis):

- the churn model (``--model``, the refit's default mbgnbd) and Gamma-Gamma on everyone;
- the same on the sample the refit reads: the customers of the first due-index buckets
  (crc32(id) % 16384, streams.state.sample) holding at least S customers, for each S of
  ``--sample``.

and the refit's own fits on everyone from the cells: Gamma-Gamma on the spend cells
(``gg:<x>:<mean repeat value to three significant digits>``), and the churn fit on the
day cells (S10 item 3: customers per
``<x>:<first purchase date>:<last purchase date>``, as the writers keep them in
``{ns}:cells:*``), with the refit's functions (churn_risk.cell_rows: t_x in whole dates,
T from the middle of the first date; the weighted fit). ``--store`` also writes the cells
to the Redis of REDIS_URL (16 shards of a single server, namespace ``--namespace``,
deleted after) and times the refit's read of them (facts.read_cells).

Prints each parameter of each fit, each parameter's relative difference from the full
fit's, and the times; ``--json`` prints one JSON object instead.

Run: .venv/bin/python -m benchmarks.refit_sample [--customers 1000000]
     [--sample 50000,100000,200000] [--model mbgnbd] [--seed 0] [--store]
"""

from __future__ import annotations

import argparse
import json
import time
from decimal import Decimal

import numpy as np

from online_models import churn_risk
from online_models.churn import MODELS, GammaGamma
from streams.state.due_index import BUCKETS, bucket_of
from streams.state.sample import buckets_needed

TRUTH = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.5}  # CDNOW-like, weeks
SPEND = {"p": 6.0, "q": 4.0, "gamma": 15.0}


def simulate(n: int, seed: int) -> dict[str, np.ndarray]:
    """(x, t_x, T) in weeks and the mean repeat value m of ``n`` customers, vectorised over
    customers one purchase round at a time."""
    rng = np.random.default_rng(seed)
    big_t = rng.uniform(1.0, 78.0, n)
    lam = rng.gamma(TRUTH["r"], 1 / TRUTH["alpha"], n)
    p = rng.beta(TRUTH["a"], TRUTH["b"], n)
    x, t_x, now = np.zeros(n), np.zeros(n), np.zeros(n)
    alive = rng.random(n) >= p  # MBG/NBD: a drop-out chance right after the first purchase
    while alive.any():
        idx = np.flatnonzero(alive)
        now[idx] += rng.exponential(1 / lam[idx])
        bought = now[idx] <= big_t[idx]
        got = idx[bought]
        x[got] += 1
        t_x[got] = now[got]
        alive[idx[~bought]] = False
        alive[got] = rng.random(len(got)) >= p[got]
    nu = rng.gamma(SPEND["q"], 1 / SPEND["gamma"], n)
    repeat = x > 0
    m = np.zeros(n)
    # the mean of x Gamma(p, nu) values is Gamma(p x, rate x nu)
    m[repeat] = rng.gamma(SPEND["p"] * x[repeat], 1 / (x[repeat] * nu[repeat]))
    return {"x": x, "t_x": t_x, "T": big_t, "m": m}


def sample_mask(n: int, size: int) -> np.ndarray:
    """Which of customers ``c0000000``.. are in the refit's sample of ``size``."""
    buckets = np.fromiter((bucket_of(f"c{i:07d}") for i in range(n)), dtype=np.int64, count=n)
    sizes = np.bincount(buckets, minlength=BUCKETS)
    return buckets < buckets_needed(sizes, size)


def fit(pop: dict[str, np.ndarray], keep: np.ndarray, model: str) -> dict:
    """Both fits on the kept customers: parameters and seconds."""
    started = time.perf_counter()
    churn = MODELS[model]().fit(pop["x"][keep], pop["t_x"][keep], pop["T"][keep])
    churn_s = time.perf_counter() - started
    started = time.perf_counter()
    spend = GammaGamma().fit(pop["x"][keep], pop["m"][keep])
    spend_s = time.perf_counter() - started
    return {
        "customers": int(keep.sum()),
        "params": {**churn.params, **spend.params},
        "converged": churn.converged and spend.converged,
        "churn_s": round(churn_s, 2),
        "spend_s": round(spend_s, 2),
    }


DAY_MS = 86_400_000


def day_cells(pop: dict[str, np.ndarray], seed: int) -> tuple[dict[str, int], int]:
    """The population as the writers keep it: ``<x>:<first date>:<last date>`` -> customers
    (day numbers), and an as-of (epoch ms) at a random time of day 1,000 days in."""
    as_of = 1000.0 + np.random.default_rng(seed + 1).random()  # days
    first = as_of - pop["T"] * 7
    first_date = np.floor(first)
    last_date = np.floor(first + pop["t_x"] * 7)
    rows, counts = np.unique(np.column_stack([pop["x"], first_date, last_date]), axis=0,
                             return_counts=True)  # fmt: skip
    cells = {f"{int(x)}:{int(f)}:{int(la)}": int(n)
             for (x, f, la), n in zip(rows, counts, strict=True)}  # fmt: skip
    return cells, int(as_of * DAY_MS)


def cell_fit(pop: dict[str, np.ndarray], seed: int, model: str) -> dict:
    """The refit's fit on the cells: rows from the cells, then the weighted fit."""
    cells, as_of_ms = day_cells(pop, seed)
    started = time.perf_counter()
    x, t_x, big_t, weights = churn_risk.cell_rows(cells, as_of_ms)
    rows_s = time.perf_counter() - started
    churn = MODELS[model]().fit(x, t_x, big_t, weights)
    return {"cells": len(cells), "customers": churn.customers, "params": churn.params,
            "converged": churn.converged, "rows_s": round(rows_s, 2),
            "churn_s": round(time.perf_counter() - started, 2), "_cells": cells}  # fmt: skip


def spend_cells(pop: dict[str, np.ndarray]) -> dict[str, int]:
    """The repeat customers as the writers keep them for Gamma-Gamma: ``gg:<x>:<mean
    repeat value to three significant digits>`` -> customers (streams.state.facts)."""
    from streams.state.facts import spend_cell

    out: dict[str, int] = {}
    for x, m in zip(pop["x"], pop["m"], strict=True):
        value = Decimal(f"{m * x:.2f}")  # the repeat value as the writers see it: cents
        if x > 0 and value > 0:
            name = spend_cell(int(x), value)
            out[name] = out.get(name, 0) + 1
    return out


def spend_cell_fit(pop: dict[str, np.ndarray]) -> dict:
    """The refit's Gamma-Gamma on the spend cells: rows from the cells, the weighted fit."""
    cells = spend_cells(pop)
    started = time.perf_counter()
    spend = GammaGamma().fit(*churn_risk.spend_cell_rows(cells))
    return {"cells": len(cells), "customers": spend.customers, "params": spend.params,
            "converged": spend.converged,
            "spend_s": round(time.perf_counter() - started, 2)}  # fmt: skip


def store_timing(cells: dict[str, int], namespace: str) -> dict:
    """Write the cells to the Redis of REDIS_URL as the writers would (each cell in a
    shard), time the refit's read of them, and delete them."""
    import os

    from streams.state import facts
    from streams.state.keys import Keys
    from streams.state.redis_client import connect

    client = connect(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    keys = Keys(namespace)
    names = facts.cell_shard_keys(keys, facts.is_clustered(client))
    shards: list[dict[str, int]] = [{} for _ in names]
    for i, (cell, n) in enumerate(cells.items()):
        shards[i % len(names)][cell] = n  # customers spread evenly over the shards
    try:
        for name, mapping in zip(names, shards, strict=True):
            items = list(mapping.items())
            for at in range(0, len(items), 10_000):
                client.hset(name, mapping=dict(items[at : at + 10_000]))
        started = time.perf_counter()
        read = facts.read_cells(client, keys)
        read_s = time.perf_counter() - started
        assert read == cells
        memory = sum(client.memory_usage(name) or 0 for name in names)
    finally:
        client.delete(*names)
        client.close()
    return {"read_s": round(read_s, 2), "redis_bytes": memory}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--sample", default="50000,100000,200000",
                        help="sample sizes, comma-separated")  # fmt: skip
    parser.add_argument("--model", choices=sorted(MODELS), default="mbgnbd")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--store", action="store_true",
                        help="also time reading the cells from Redis (REDIS_URL)")  # fmt: skip
    parser.add_argument("--namespace", default="bench-cells")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    pop = simulate(args.customers, args.seed)
    out: dict = {"customers": args.customers, "model": args.model,
                 "simulate_s": round(time.perf_counter() - started, 2)}  # fmt: skip
    out["full"] = fit(pop, np.ones(args.customers, dtype=bool), args.model)
    out["samples"] = []
    for size in (int(s) for s in args.sample.split(",")):
        row = fit(pop, sample_mask(args.customers, size), args.model)
        row["asked"] = size
        row["relative_difference"] = {
            k: v / out["full"]["params"][k] - 1 for k, v in row["params"].items()
        }
        row["worst"] = max(abs(d) for d in row["relative_difference"].values())
        out["samples"].append(row)
    cells = cell_fit(pop, args.seed, args.model)
    kept = cells.pop("_cells")
    if args.store:
        cells["store"] = store_timing(kept, args.namespace)
    cells["relative_difference"] = {
        k: v / out["full"]["params"][k] - 1 for k, v in cells["params"].items()
    }
    out["day_cells"] = cells
    spend = spend_cell_fit(pop)
    spend["relative_difference"] = {
        k: v / out["full"]["params"][k] - 1 for k, v in spend["params"].items()
    }
    out["spend_cells"] = spend
    if args.json:
        print(json.dumps(out))
    else:
        report(out)
    return out


def report(out: dict) -> None:
    full = out["full"]
    names = list(full["params"])
    print(f"{out['model']} + Gamma-Gamma, {out['customers']:,} simulated customers "
          f"(simulated in {out['simulate_s']} s)")  # fmt: skip
    print(f"{'fit':>18} {'customers':>10} " + " ".join(f"{n:>9}" for n in names)
          + "   churn s  spend s")  # fmt: skip
    rows = [("everyone", full)] + [(f"sample {s['asked']:,}", s) for s in out["samples"]]
    for label, row in rows:
        values = " ".join(f"{row['params'][n]:>9.4f}" for n in names)
        print(f"{label:>18} {row['customers']:>10,} {values} {row['churn_s']:>9} "
              f"{row['spend_s']:>8}")  # fmt: skip
    print("relative difference from the fit on everyone:")
    for s in out["samples"]:
        diffs = " ".join(f"{s['relative_difference'][n]:>+9.2%}" for n in names)
        print(f"{'sample ' + format(s['asked'], ','):>18} {s['customers']:>10,} {diffs}"
              f"   worst {s['worst']:.2%}")  # fmt: skip
    cells = out["day_cells"]
    diffs = " ".join(f"{d:>+9.4%}" for d in cells["relative_difference"].values())
    print(f"{'day cells':>18} {cells['cells']:>10,} {diffs}   (churn model only; rows "
          f"{cells['rows_s']} s, rows + fit {cells['churn_s']} s)")  # fmt: skip
    spend = out["spend_cells"]
    diffs = " ".join(f"{d:>+9.4%}" for d in spend["relative_difference"].values())
    print(f"{'spend cells':>18} {spend['cells']:>10,} {'':>40}{diffs}   (Gamma-Gamma only; "
          f"rows + fit {spend['spend_s']} s)")  # fmt: skip
    if "store" in cells:
        store = cells["store"]
        print(f"{'':>18} read from Redis in {store['read_s']} s ({store['redis_bytes']:,} "
              "bytes of cells hashes)")  # fmt: skip


if __name__ == "__main__":
    main()

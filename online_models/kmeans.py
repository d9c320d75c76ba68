"""Sequential (MacQueen) k-means: online k-means whose centres settle on a stationary
population instead of jittering around it.

River's ``cluster.KMeans`` moves the nearest centre a constant fraction (``halflife``) of
the way to every sample, so its centres never stop moving: with one event per worker
batch (live low-rate traffic) 45% of customers changed cluster between two snapshots of
an unchanged population. Here a centre is the running mean of the samples it won (step
1/n), floored at ``min_rate`` so it still follows slow drift; it starts from k-means++
over the first ``init_size`` samples, seeded by ``seed`` and independent of
PYTHONHASHSEED (features are taken in sorted order, never in set order). Written here
because no River clusterer has a decaying step (see docs/clustering.md).
"""

from __future__ import annotations

import numpy as np
from river import base


class SequentialKMeans(base.Clusterer):
    """Online k-means with per-centre step 1/n (floored), started by k-means++.

    Parameters
    ----------
    n_clusters
        Number of centres.
    init_size
        Samples buffered before the centres are started (k-means++ and Lloyd steps).
    min_rate
        Smallest step a centre takes towards a sample it wins: how fast it follows drift.
    n_init
        k-means++ starts tried on the buffer; the one of least inertia is kept.
    seed
        Seed of the k-means++ start.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(1)
    >>> model = SequentialKMeans(n_clusters=2, init_size=20, seed=3)
    >>> for _ in range(500):
    ...     c = rng.choice([0.0, 10.0])
    ...     model.learn_one({"a": rng.gauss(c, 1), "b": rng.gauss(c, 1)})
    >>> sorted(round(centre["a"]) for centre in model.centers.values())
    [0, 10]
    >>> model.predict_one({"a": 9.0, "b": 11.0}) == model.predict_one({"a": 10.0, "b": 10.0})
    True
    """

    def __init__(self, n_clusters: int = 5, init_size: int = 200, min_rate: float = 0.002,
                 n_init: int = 10, seed: int = 42):  # fmt: skip
        self.n_clusters = n_clusters
        self.init_size = init_size
        self.min_rate = min_rate
        self.n_init = n_init
        self.seed = seed
        self._features: list | None = None
        self._buffer: list[np.ndarray] = []
        self._centres: np.ndarray | None = None
        self._counts: np.ndarray | None = None

    def _vector(self, x: dict) -> np.ndarray:
        if self._features is None:
            self._features = sorted(x)
        return np.array([x.get(f, 0.0) for f in self._features], dtype=float)

    def _nearest(self, v: np.ndarray) -> int:
        return int(((self._centres - v) ** 2).sum(axis=1).argmin())

    def learn_one(self, x: dict) -> None:
        v = self._vector(x)
        if self._centres is None:
            self._buffer.append(v)
            if len(self._buffer) >= max(self.init_size, self.n_clusters):
                self._start(np.array(self._buffer))
                self._buffer = []
            return
        k = self._nearest(v)
        self._counts[k] += 1
        rate = max(1.0 / self._counts[k], self.min_rate)
        self._centres[k] += rate * (v - self._centres[k])

    def _start(self, rows: np.ndarray) -> None:
        """The best (least inertia) of ``n_init`` k-means++ starts, each refined by Lloyd."""
        rng = np.random.default_rng(self.seed)
        best = None
        for _ in range(self.n_init):
            centres, labels = _lloyd(rows, _kmeans_pp(rows, self.n_clusters, rng))
            inertia = ((rows - centres[labels]) ** 2).sum()
            if best is None or inertia < best[0]:
                best = (inertia, centres, labels)
        _, self._centres, labels = best
        self._counts = np.bincount(labels, minlength=self.n_clusters).astype(float)

    def predict_one(self, x: dict) -> int:
        if self._centres is None:
            return 0
        return self._nearest(self._vector(x))

    @property
    def centers(self) -> dict[int, dict]:
        """Centre i as {feature: value} (empty before the start), as River clusterers have."""
        if self._centres is None:
            return {}
        return {k: dict(zip(self._features, map(float, c), strict=True))
                for k, c in enumerate(self._centres)}  # fmt: skip


def _kmeans_pp(rows: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centres = [rows[rng.integers(len(rows))]]
    for _ in range(1, k):  # far points are likelier seeds
        d2 = np.min([((rows - c) ** 2).sum(axis=1) for c in centres], axis=0)
        total = d2.sum()
        pick = rng.integers(len(rows)) if total <= 0 else rng.choice(len(rows), p=d2 / total)
        centres.append(rows[pick])
    return np.array(centres)


def _lloyd(rows: np.ndarray, centres: np.ndarray, steps: int = 20):
    for _ in range(steps):
        labels = ((rows[:, None, :] - centres[None]) ** 2).sum(axis=2).argmin(axis=1)
        for k in range(len(centres)):
            if np.any(labels == k):
                centres[k] = rows[labels == k].mean(axis=0)
    labels = ((rows[:, None, :] - centres[None]) ** 2).sum(axis=2).argmin(axis=1)
    return centres, labels

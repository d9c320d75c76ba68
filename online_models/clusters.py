"""Behavioural clusters learned online with River, published as snapshots whose
cluster ids stay stable.

A River clusterer learns from standardised feature vectors (River's online
StandardScaler). ``snapshot()`` freezes the centroids and the scaling into a
:class:`ClusterSnapshot` that every worker assigns with (nearest centroid,
vectorised), so all workers agree for a given version. Ids are matched to the
previous snapshot's by minimum-cost assignment (Hungarian) on centroid
distance in original units re-standardised with the current scaling: a
centroid that drifted keeps its id; one with no partner within ``match_radius``
is a new cluster with a new id ("appeared"); an old id with no partner "died".
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
from river import cluster, preprocessing
from scipy.optimize import linear_sum_assignment

from online_models.features import FEATURES
from online_models.kmeans import SequentialKMeans

# feature -> (word when high, word when low), for generated labels
_WORDS = {
    "frequency": ("frequent", "rare"),
    "monetary": ("high value", "low value"),
    "discount_share": ("discount-driven", "full price"),
    "recency": ("lapsed", "recently active"),
    "browsing": ("heavy browser", "decisive"),
    "category_spread": ("explorer", "focused"),
    "basket_size": ("big baskets", "small baskets"),
    "view_to_cart": ("carts often", "rarely carts"),
}


def label_of(z: dict[str, float], words: int = 3, threshold: float = 0.5) -> str:
    """A short label from a centroid's standardised coordinates.

    >>> label_of({"frequency": 1.2, "monetary": 0.9, "discount_share": -0.1, "recency": -0.7})
    'frequent · high value · recently active'
    >>> label_of({"frequency": 0.1})
    'typical'
    """
    ranked = sorted(
        ((abs(v), f) for f, v in z.items() if f in _WORDS and abs(v) >= threshold), reverse=True
    )
    parts = [_WORDS[f][0 if z[f] > 0 else 1] for _, f in ranked[:words]]
    return " · ".join(parts) if parts else "typical"


@dataclass
class ClusterSnapshot:
    """Frozen centroids and scaling: what workers assign clusters with."""

    version: int
    ids: list[int]
    centroids: np.ndarray  # standardised, one row per id
    mean: np.ndarray
    scale: np.ndarray
    events: list[dict] = field(default_factory=list)  # appeared / died, versus the previous

    def standardise(self, rows: np.ndarray) -> np.ndarray:
        return (rows - self.mean) / self.scale

    def assign_many(self, rows: np.ndarray) -> np.ndarray:
        """Cluster id of each row of raw feature vectors (columns in FEATURES order)."""
        z = self.standardise(np.atleast_2d(rows))
        d2 = ((z[:, None, :] - self.centroids[None, :, :]) ** 2).sum(axis=2)
        return np.asarray(self.ids)[d2.argmin(axis=1)]

    def assign(self, features: dict[str, float]) -> int:
        return int(self.assign_many(np.array([[features[f] for f in FEATURES]]))[0])

    def profile(self, cluster_id: int) -> dict:
        i = self.ids.index(cluster_id)
        z = dict(zip(FEATURES, map(float, self.centroids[i]), strict=True))
        centre = self.centroids[i] * self.scale + self.mean
        return {
            "id": cluster_id,
            "label": label_of(z),
            "centroid": dict(zip(FEATURES, map(float, centre), strict=True)),
        }

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "ids": list(self.ids),
            "centroids": self.centroids.tolist(),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "events": self.events,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ClusterSnapshot:
        return cls(
            data["version"], list(data["ids"]), np.array(data["centroids"], dtype=float),
            np.array(data["mean"], dtype=float), np.array(data["scale"], dtype=float),
            list(data.get("events", [])),
        )  # fmt: skip


def kmeans(n_clusters: int = 5, seed: int = 42, init_size: int = 200):
    """The default learner, chosen by benchmarks/clustering.py (see docs/clustering.md)."""
    return SequentialKMeans(n_clusters=n_clusters, init_size=init_size, seed=seed)


def river_kmeans(n_clusters: int = 5, seed: int = 42):
    """River's constant-step KMeans, the previous default (kept for the benchmark)."""
    return cluster.KMeans(n_clusters=n_clusters, halflife=0.05, sigma=1.0, seed=seed)


class StableClusterer:
    """An online clusterer whose snapshots keep cluster ids stable.

    Parameters
    ----------
    learner
        A River clusterer with ``learn_one`` and ``centers`` (default: KMeans).
    match_radius
        Largest standardised distance at which a new centroid inherits an old id.
    seed
        Seed of the default learner.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(0)
    >>> model = StableClusterer(learner=kmeans(n_clusters=2, seed=1))
    >>> points = [{f: rng.gauss(c, 0.1) for f in FEATURES} for c in (0, 5) for _ in range(300)]
    >>> rng.shuffle(points)
    >>> for x in points:
    ...     model.learn_one(x)
    >>> first = model.snapshot()
    >>> for x in points:
    ...     model.learn_one(x)
    >>> second = model.snapshot()
    >>> sorted(first.ids) == sorted(second.ids), second.version
    (True, 2)
    >>> first.assign(points[0]) == second.assign(points[0])
    True
    """

    def __init__(self, learner=None, match_radius: float = 1.0, seed: int = 42):
        self.learner = learner if learner is not None else kmeans(seed=seed)
        self.match_radius = match_radius
        self.seed = seed
        self.scaler = preprocessing.StandardScaler()
        self.last: ClusterSnapshot | None = None
        self.next_id = 0
        self.seen = 0

    def learn_one(self, x: dict[str, float]) -> None:
        self.scaler.learn_one(x)
        self.learner.learn_one(self.scaler.transform_one(x))
        self.seen += 1

    def _scaling(self) -> tuple[np.ndarray, np.ndarray]:
        mean = np.array([self.scaler.means.get(f, 0.0) for f in FEATURES])
        var = np.array([self.scaler.vars.get(f, 0.0) for f in FEATURES])
        return mean, np.where(var > 1e-12, np.sqrt(var), 1.0)

    def snapshot(self) -> ClusterSnapshot:
        """Freeze the current centroids, with ids matched to the previous snapshot's."""
        mean, scale = self._scaling()
        centers = [c for c in self.learner.centers.values() if c]
        rows = np.array([[c.get(f, 0.0) for f in FEATURES] for c in centers], dtype=float)
        rows = rows.reshape(len(centers), len(FEATURES))
        ids: list[int | None] = [None] * len(rows)
        events: list[dict] = []
        if self.last is not None and len(self.last.ids):
            if len(rows):
                # previous centroids in original units, re-standardised with today's scaling
                old = (self.last.centroids * self.last.scale + self.last.mean - mean) / scale
                cost = np.sqrt(((rows[:, None, :] - old[None, :, :]) ** 2).sum(axis=2))
                # Radius-aware: pairs beyond the radius cost more than all others together,
                # so the matching first keeps as many ids as the radius allows, then the
                # least total drift among those.
                far = cost > self.match_radius
                gated = np.where(far, cost.sum() + 1.0 + cost, cost)
                for i, j in zip(*linear_sum_assignment(gated), strict=True):
                    if not far[i, j]:
                        ids[i] = self.last.ids[j]
            kept = {i for i in ids if i is not None}
            events += [{"event": "died", "cluster": i} for i in self.last.ids if i not in kept]
        for i, found in enumerate(ids):
            if found is None:
                ids[i] = self.next_id
                events.append({"event": "appeared", "cluster": self.next_id})
                self.next_id += 1
        version = (self.last.version if self.last else 0) + 1
        self.last = ClusterSnapshot(version, ids, rows, mean, scale, events)
        return self.last

    def clone(self) -> StableClusterer:
        """A fresh, unfitted copy with the same parameters (River's clone contract)."""
        return StableClusterer(copy.deepcopy(self.learner).clone(), self.match_radius, self.seed)


def adjusted_rand_index(truth, predicted) -> float:
    """Adjusted Rand index of two labelings (1 = identical partitions, ~0 = chance).

    >>> adjusted_rand_index([0, 0, 1, 1], [5, 5, 7, 7])
    1.0
    >>> adjusted_rand_index([0, 0, 1, 1], [1, 1, 1, 1])
    0.0
    """
    _, t = np.unique(np.asarray(truth), return_inverse=True)
    _, p = np.unique(np.asarray(predicted), return_inverse=True)
    table = np.zeros((t.max() + 1, p.max() + 1))
    np.add.at(table, (t, p), 1)

    def pairs(n):
        return n * (n - 1) / 2

    index = pairs(table).sum()
    rows, cols, total = pairs(table.sum(1)).sum(), pairs(table.sum(0)).sum(), pairs(len(t))
    expected = rows * cols / total if total else 0.0
    maximum = (rows + cols) / 2
    if math.isclose(maximum, expected):
        return 1.0
    return float((index - expected) / (maximum - expected))

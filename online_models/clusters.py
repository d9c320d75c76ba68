"""Behavioural clusters over a uniform sample of customers, published as snapshots whose
cluster ids stay stable.

The learner keeps a bounded sample of distinct customers with each one's latest feature
vector (:class:`CustomerSample`). ``snapshot()`` ages the sample to the latest event seen
(a silent customer's recency grows), standardises it, and runs k-means over it, warm-started
from the previous snapshot's centres so that an unchanged population keeps its partition.
The snapshot (:class:`ClusterSnapshot`) freezes the centroids and the scaling that every
worker assigns with (nearest centroid, vectorised), so all workers agree for a given
version. Ids are matched to the previous snapshot's by minimum-cost assignment (Hungarian)
on centroid distance: a centroid that drifted keeps its id; one with no partner within
``match_radius`` is a new cluster with a new id ("appeared"); an old id with no partner
"died".
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from river import base
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

from online_models.features import FEATURES, as_row, recency

_RECENCY = FEATURES.index("recency")

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
    "order_value": ("big orders", "small orders"),
    "wishlist_share": ("wishlister", "no wishlist"),
    "tenure": ("long-standing", "new"),
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
        """Standardised rows; an unknown (NaN) value sits at the mean, 0."""
        return standardise(rows, self.mean, self.scale)

    def centroids_scaled_by(self, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """These centroids in original units, standardised with another scaling."""
        return (self.centroids * self.scale + self.mean - mean) / scale

    def assign_many(self, rows: np.ndarray) -> np.ndarray:
        """Cluster id of each row of raw feature vectors (columns in FEATURES order)."""
        z = self.standardise(np.atleast_2d(rows))
        d2 = ((z[:, None, :] - self.centroids[None, :, :]) ** 2).sum(axis=2)
        return np.asarray(self.ids)[d2.argmin(axis=1)]

    def assign(self, features: dict[str, float]) -> int:
        return int(self.assign_many(as_row(features))[0])

    def profile(self, cluster_id: int) -> dict:
        i = self.ids.index(cluster_id)
        z = dict(zip(FEATURES, map(float, self.centroids[i]), strict=True))
        centre = self.centroids[i] * self.scale + self.mean
        return {
            "id": cluster_id,
            "label": label_of(z),
            "centroid": dict(zip(FEATURES, map(float, centre), strict=True)),
            "standardised": z,  # in population standard deviations: what the label reads
        }

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "ids": list(self.ids),
            "centroids": self.centroids.tolist(),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "events": self.events,
            "features": list(FEATURES),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ClusterSnapshot | None:
        """The snapshot, or None for one over another feature set (an older rtba's): its
        centroids do not fit today's vectors, and the trainer publishes a new one."""
        if tuple(data.get("features", ())) != FEATURES:
            return None
        return cls(
            data["version"], list(data["ids"]), np.array(data["centroids"], dtype=float),
            np.array(data["mean"], dtype=float), np.array(data["scale"], dtype=float),
            list(data.get("events", [])),
        )  # fmt: skip


class CustomerSample:
    """A uniform sample of distinct customers, each with its latest feature vector.

    A customer is in the sample while a keyed hash of its id is among the ``size`` smallest
    seen (a bottom-k sketch). So every customer is equally likely to be in it however many
    events they send; membership depends on the seed alone, not on arrival order or
    PYTHONHASHSEED; and two samples merge (``+=``) into the sample of their union.

    Parameters
    ----------
    size
        Customers kept.
    seed
        Key of the hash that picks them.

    Examples
    --------
    >>> s = CustomerSample(size=2, seed=1)
    >>> for day, cid in enumerate("abcde"):
    ...     s.add(cid, {"frequency": 1.0}, last_event_ms=day * 86_400_000)
    >>> backwards = CustomerSample(size=2, seed=1)
    >>> for cid in "edcba":
    ...     backwards.add(cid, {})
    >>> len(s), s.ids() == backwards.ids()
    (2, True)
    >>> s.ids(), s.rows()[:, FEATURES.index("recency")].round(3).tolist()  # aged to day 4
    (['c', 'd'], [1.099, 0.693])
    """

    def __init__(self, size: int = 2000, seed: int = 42):
        self.size = size
        self.seed = seed
        self.features = FEATURES  # the columns of the rows kept (a stored sample is checked)
        self._rows: dict[str, tuple[int, np.ndarray, int | None]] = {}
        self._largest: list[tuple[int, str]] = []  # heap of (-hash, id): evict from the top
        self.latest_ms: int | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def _hash(self, customer_id: str) -> int:
        key = str(self.seed).encode()[:64]
        digest = hashlib.blake2b(customer_id.encode(), digest_size=8, key=key).digest()
        return int.from_bytes(digest, "big")

    def add(self, customer_id: str, x: dict[str, float], last_event_ms: int | None = None):
        """Keep ``x`` as the customer's vector if the customer is (or now gets) sampled."""
        self._saw(last_event_ms)
        self._keep(customer_id, as_row(x), last_event_ms)

    def _keep(self, customer_id: str, row: np.ndarray, last_event_ms: int | None) -> None:
        if customer_id in self._rows:
            h, _, before = self._rows[customer_id]
            if before is None or last_event_ms is None or last_event_ms >= before:
                self._rows[customer_id] = (h, row, last_event_ms)
            return
        h = self._hash(customer_id)
        if len(self._rows) >= self.size:
            if h >= -self._largest[0][0]:
                return
            del self._rows[heapq.heappop(self._largest)[1]]
        heapq.heappush(self._largest, (-h, customer_id))
        self._rows[customer_id] = (h, row, last_event_ms)

    def ids(self) -> list[str]:
        """Sampled customers in hash order (the order ``rows`` uses)."""
        return sorted(self._rows, key=lambda cid: self._rows[cid][0])

    def rows(self) -> np.ndarray:
        """The sampled vectors (columns in FEATURES order) as of the latest event seen: a
        vector taken at an event has recency 0, the customer's recency now is what counts."""
        ids = self.ids()
        out = np.zeros((len(ids), len(FEATURES)))
        for i, cid in enumerate(ids):
            _, row, last = self._rows[cid]
            out[i] = row
            if last is not None and self.latest_ms is not None:
                out[i, _RECENCY] = recency(last, self.latest_ms)
        return out

    def __iadd__(self, other: CustomerSample) -> CustomerSample:
        for cid, (_, row, last) in other._rows.items():
            self._keep(cid, row, last)
        self._saw(other.latest_ms)
        return self

    def _saw(self, ms: int | None) -> None:
        if ms is not None:
            self.latest_ms = ms if self.latest_ms is None else max(self.latest_ms, ms)

    def discard(self, customer_id: str) -> bool:
        """Forget a customer (an erase); whether it was in the sample. Its place stays
        free until a customer whose hash is small enough comes."""
        if customer_id not in self._rows:
            return False
        del self._rows[customer_id]
        self._largest = [(h, cid) for h, cid in self._largest if cid != customer_id]
        heapq.heapify(self._largest)
        return True

    def to_dict(self) -> dict:
        """The sample as data (JSON types; the vectors as raw float64 bytes, NaN kept)."""
        ids = self.ids()
        rows = np.array([self._rows[c][1] for c in ids], dtype="<f8").reshape(len(ids), -1)
        return {
            "size": self.size,
            "seed": self.seed,
            "features": list(self.features),
            "latest_ms": self.latest_ms,
            "ids": ids,
            "last_event_ms": [self._rows[c][2] for c in ids],
            "rows": array_to_dict(rows),
        }

    @classmethod
    def from_dict(cls, data: dict) -> CustomerSample:
        """The sample ``to_dict`` gave; raises ValueError when ``data`` is not one. The
        hashes are computed again from the ids, never taken from the data."""
        sample = cls(_int(data["size"]), _int(data["seed"]))
        sample.features = tuple(str(f) for f in data["features"])
        sample.latest_ms = _int_or_none(data["latest_ms"])
        ids, lasts = list(data["ids"]), list(data["last_event_ms"])
        rows = array_from_dict(data["rows"])
        if not (len(ids) == len(lasts) == len(rows) <= sample.size):
            raise ValueError("a stored sample whose ids, times and rows disagree")
        for cid, last, row in zip(ids, lasts, rows, strict=True):
            if not isinstance(cid, str):
                raise ValueError("a stored sample with an id that is not a string")
            sample._keep(cid, row.copy(), _int_or_none(last))
        return sample


class StableClusterer(base.Clusterer):
    """k-means over a sample of customers as of now, with ids that stay stable (a River
    clusterer: ``learn_one`` / ``predict_one`` over dicts, River's ``clone``).

    Parameters
    ----------
    n_clusters
        Number of clusters.
    sample_size
        Customers in the sample the clusters are fitted on.
    n_init
        k-means++ starts tried at each snapshot; the one of least inertia is the fresh fit.
    switch_gain
        The fresh fit replaces the one warm-started from the previous centres only when its
        inertia is lower by this factor: a better partition is taken, a tie is not.
    match_radius
        Largest standardised distance at which a new centroid inherits an old id.
    seed
        Seed of the sample's hash and of the k-means++ starts.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(0)
    >>> model = StableClusterer(n_clusters=2, seed=1)
    >>> for i in range(600):
    ...     c = rng.choice([0, 5])
    ...     model.learn_one({f: rng.gauss(c, 0.1) for f in FEATURES}, customer_id=f"c{i}")
    >>> first = model.snapshot()
    >>> for i in range(600):  # the same customers again: same partition, same ids
    ...     c = rng.choice([0, 5])
    ...     model.learn_one({f: rng.gauss(c, 0.1) for f in FEATURES}, customer_id=f"c{i}")
    >>> second = model.snapshot()
    >>> sorted(first.ids) == sorted(second.ids), second.version, second.events
    (True, 2, [])
    >>> model.predict_one({f: 5.0 for f in FEATURES}) == second.assign({f: 5.1 for f in FEATURES})
    True
    """

    def __init__(self, n_clusters: int = 5, sample_size: int = 2000, n_init: int = 10,
                 switch_gain: float = 0.97, match_radius: float = 1.0, seed: int = 42):  # fmt: skip
        self.n_clusters = n_clusters
        self.sample_size = sample_size
        self.n_init = n_init
        self.switch_gain = switch_gain
        self.match_radius = match_radius
        self.seed = seed
        self.sample = CustomerSample(sample_size, seed)
        self.last: ClusterSnapshot | None = None
        self.next_id = 0
        self.seen = 0

    def learn_one(self, x: dict[str, float], customer_id: str | None = None,
                  last_event_ms: int | None = None) -> None:  # fmt: skip
        """A customer's vector taken at ``last_event_ms`` (its recency is re-aged at each
        snapshot); without an id every call is a customer of its own."""
        self.sample.add(customer_id if customer_id is not None else f"#{self.seen}", x,
                        last_event_ms)  # fmt: skip
        self.seen += 1

    def __iadd__(self, other: StableClusterer) -> StableClusterer:
        """Learn what ``other`` learned (its sample); this model's centres and ids stay."""
        self.sample += other.sample
        self.seen += other.seen
        return self

    def snapshot(self) -> ClusterSnapshot:
        """Fit the sample as of now and freeze it, with ids matched to the previous ones."""
        rows = self.sample.rows()
        mean, scale = scaling(rows)
        centres = np.empty((0, len(FEATURES)))
        if len(rows) >= self.n_clusters:
            centres = self._fit(standardise(rows, mean, scale), mean, scale)
        self.last, self.next_id = next_snapshot(self.last, centres, mean, scale,
                                                self.match_radius, self.next_id)  # fmt: skip
        return self.last

    def _fit(self, z: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():  # fewer distinct points than clusters: still a fit
            warnings.simplefilter("ignore", ConvergenceWarning)
            fresh = KMeans(self.n_clusters, n_init=self.n_init, random_state=self.seed).fit(z)
            if self.last is None or len(self.last.ids) != self.n_clusters:
                return fresh.cluster_centers_
            start = self.last.centroids_scaled_by(mean, scale)
            warm = KMeans(self.n_clusters, init=start, n_init=1).fit(z)
        better = fresh.inertia_ < self.switch_gain * warm.inertia_
        return (fresh if better else warm).cluster_centers_

    def continue_after(self, older: StableClusterer) -> None:
        """Take over from a learner whose snapshots cannot be matched (another feature set):
        versions go on after its last one and ids are never reused, so a worker neither
        mistakes a new snapshot for one it has nor an old id for a new cluster.

        >>> old = StableClusterer(n_clusters=1, seed=1)
        >>> for i in range(3):
        ...     old.learn_one({"frequency": float(i)}, customer_id=str(i))
        >>> old.snapshot().version
        1
        >>> new = StableClusterer(n_clusters=1, seed=1)
        >>> new.continue_after(old)
        >>> for i in range(3):
        ...     new.learn_one({"frequency": float(i)}, customer_id=str(i))
        >>> s = new.snapshot()
        >>> s.version, s.ids
        (2, [1])
        """
        last = getattr(older, "last", None)  # a learner from before S3 may lack either
        version = last.version if last is not None else 0
        self.continue_from(version, getattr(older, "next_id", 0))

    def continue_from(self, version: int, next_id: int) -> None:
        """``continue_after`` a learner known only by its last snapshot's version and the
        next fresh id (a stored learner that is refused: its snapshot tells them)."""
        width = len(FEATURES)
        self.last = ClusterSnapshot(version, [], np.empty((0, width)), np.zeros(width),
                                    np.ones(width))  # fmt: skip
        self.next_id = max(self.next_id, next_id)

    def forget(self, customer_id: str) -> bool:
        """Take an erased customer out of the sample; whether it was there."""
        return self.sample.discard(customer_id)

    def to_dict(self) -> dict:
        """The learner as data that cannot execute (JSON types and raw float64 arrays):
        what the trainer stores in Redis instead of a pickle. ``from_dict`` gives back a
        learner that predicts, snapshots and goes on learning the same."""
        params = {name: getattr(self, name) for name in _PARAMS}
        return {
            "kind": "StableClusterer",
            "format": LEARNER_FORMAT,
            "params": params,
            "next_id": self.next_id,
            "seen": self.seen,
            "last": None if self.last is None else self.last.to_dict(),
            "sample": self.sample.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> StableClusterer:
        """The learner ``to_dict`` gave; raises ValueError (or KeyError, TypeError) when
        ``data`` is not one of this format."""
        if data.get("kind") != "StableClusterer" or data.get("format") != LEARNER_FORMAT:
            raise ValueError("not a stored StableClusterer of this format")
        params = data["params"]
        model = cls(**{name: _PARAM_TYPES[name](params[name]) for name in _PARAMS})
        model.sample = CustomerSample.from_dict(data["sample"])
        model.next_id, model.seen = _int(data["next_id"]), _int(data["seen"])
        model.last = None if data["last"] is None else ClusterSnapshot.from_dict(data["last"])
        return model

    def predict_one(self, x: dict[str, float]) -> int:
        """The id of the nearest centroid of the last snapshot (0 before the first)."""
        if self.last is None or not self.last.ids:
            return 0
        return self.last.assign(x)


LEARNER_FORMAT = 1
_PARAM_TYPES = {"n_clusters": int, "sample_size": int, "n_init": int, "switch_gain": float,
                "match_radius": float, "seed": int}  # fmt: skip
_PARAMS = tuple(_PARAM_TYPES)


def array_to_dict(a: np.ndarray) -> dict:
    """A float64 array as data: its shape, dtype and raw little-endian bytes (base64), so
    it comes back bit for bit, NaN included.

    >>> array_from_dict(array_to_dict(np.array([[1.5, np.nan]]))).tolist()
    [[1.5, nan]]
    """
    a = np.ascontiguousarray(a, dtype="<f8")
    return {"dtype": "<f8", "shape": list(a.shape),
            "data": base64.b64encode(a.tobytes()).decode("ascii")}  # fmt: skip


def array_from_dict(data: dict) -> np.ndarray:
    """The array ``array_to_dict`` gave; raises ValueError on any other dtype, or on a
    shape the bytes do not fill."""
    if data.get("dtype") != "<f8":
        raise ValueError("a stored array that is not float64")
    shape = tuple(_int(n) for n in data["shape"])
    raw = base64.b64decode(data["data"], validate=True)
    return np.frombuffer(raw, dtype="<f8").reshape(shape).copy()


def _int(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"a stored value that should be an integer: {value!r}")
    return value


def _int_or_none(value) -> int | None:
    return None if value is None else _int(value)


def scaling(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each column over its known (not NaN) values; a column
    with none, or with one value only, gets mean 0 and scale 1.

    >>> m, s = scaling(np.array([[1.0, np.nan], [3.0, np.nan]]))
    >>> m.tolist(), s.tolist()
    ([2.0, 0.0], [1.0, 1.0])
    """
    known = ~np.isnan(rows)
    n = known.sum(axis=0)
    filled = np.where(known, rows, 0.0)
    mean = np.divide(filled.sum(axis=0), n, out=np.zeros(rows.shape[1]), where=n > 0)
    var = np.divide((np.where(known, rows - mean, 0.0) ** 2).sum(axis=0), n,
                    out=np.zeros(rows.shape[1]), where=n > 0)  # fmt: skip
    sd = np.sqrt(var)
    return mean, np.where(sd > 1e-12, sd, 1.0)


def standardise(rows: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``(rows - mean) / scale`` with an unknown (NaN) value at the mean: 0.

    >>> standardise(np.array([[4.0, np.nan]]), np.array([2.0, 1.0]), np.array([2.0, 1.0]))
    array([[1., 0.]])
    """
    return np.nan_to_num((np.atleast_2d(rows) - mean) / scale, nan=0.0)


def next_snapshot(last: ClusterSnapshot | None, centres: np.ndarray, mean: np.ndarray,
                  scale: np.ndarray, match_radius: float,
                  next_id: int) -> tuple[ClusterSnapshot, int]:  # fmt: skip
    """The snapshot after ``last`` with new standardised ``centres``: a centre takes the
    previous snapshot's id when it lies within ``match_radius`` of an old one, a fresh id
    otherwise, and the appeared and died events say which. Returns it and the next fresh
    id."""
    ids: list[int | None] = [None] * len(centres)
    events: list[dict] = []
    if last is not None and len(last.ids):
        if len(centres):
            old = last.centroids_scaled_by(mean, scale)
            cost = np.sqrt(((centres[:, None, :] - old[None, :, :]) ** 2).sum(axis=2))
            # Radius-aware: pairs beyond the radius cost more than all others together, so
            # the matching first keeps as many ids as the radius allows, then the least
            # total drift among those.
            far = cost > match_radius
            gated = np.where(far, cost.sum() + 1.0 + cost, cost)
            for i, j in zip(*linear_sum_assignment(gated), strict=True):
                if not far[i, j]:
                    ids[i] = last.ids[j]
        kept = {i for i in ids if i is not None}
        events += [{"event": "died", "cluster": i} for i in last.ids if i not in kept]
    for i, found in enumerate(ids):
        if found is None:
            ids[i] = next_id
            events.append({"event": "appeared", "cluster": next_id})
            next_id += 1
    version = (last.version if last else 0) + 1
    return ClusterSnapshot(version, ids, centres, mean, scale, events), next_id


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

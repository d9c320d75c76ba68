"""The cluster learner is stored in Redis as data, never as a pickle (issue #26, item 8),
and an erased customer leaves its sample (item 9).

- ``to_dict`` / ``from_dict`` round trip: the copy predicts, snapshots and goes on
  learning exactly as the original does;
- a Redis value holding a pickle that would run a command (write a marker file) is
  refused with one warning line, the marker never appears, and the new learner's
  versions and ids go on after the stored snapshot's;
- a tombstone taken by the trainer drops the customer from its sample and stores the
  learner again without it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import random
from types import SimpleNamespace

import numpy as np

from online_models.clusters import StableClusterer
from online_models.features import FEATURES
from streams.state.keys import Keys
from streams.state.store import StateStore


def trained(seed: int = 3) -> StableClusterer:
    rng = random.Random(seed)
    model = StableClusterer(3, sample_size=300, seed=7)
    for i in range(900):
        centre = rng.choice([0.0, 4.0, 9.0])
        x = {f: rng.gauss(centre, 0.4) for f in FEATURES}
        x[FEATURES[-1]] = float("nan") if i % 7 == 0 else x[FEATURES[-1]]  # unknowns kept
        model.learn_one(x, customer_id=f"c{i % 450}", last_event_ms=i * 60_000)
    model.snapshot()
    return model


def probes(n: int = 50) -> list[dict]:
    rng = random.Random(11)
    return [{f: rng.uniform(-1.0, 10.0) for f in FEATURES} for _ in range(n)]


def test_a_learner_comes_back_from_its_data_predicting_and_learning_the_same():
    model = trained()
    text = json.dumps(model.to_dict())  # plain JSON: nothing in it can execute
    copy = StableClusterer.from_dict(json.loads(text))
    assert [copy.predict_one(x) for x in probes()] == [model.predict_one(x) for x in probes()]
    assert copy.sample.ids() == model.sample.ids()
    assert np.array_equal(copy.sample.rows(), model.sample.rows(), equal_nan=True)
    assert (copy.next_id, copy.seen, copy.last.version) == (
        model.next_id, model.seen, model.last.version)  # fmt: skip
    rng = random.Random(5)  # the same new data for both: the same next snapshot
    more = [({f: rng.gauss(rng.choice([0.0, 9.0]), 0.4) for f in FEATURES}, f"n{i}")
            for i in range(200)]  # fmt: skip
    for learner in (model, copy):
        for x, cid in more:
            learner.learn_one(x, customer_id=cid, last_event_ms=10**8)
    a, b = model.snapshot(), copy.snapshot()
    assert (a.version, a.ids, a.events) == (b.version, b.ids, b.events)
    assert np.array_equal(a.centroids, b.centroids)


class FakeRedis:
    """The few async commands the trainer's load and store use, over a dict."""

    def __init__(self, hashes: dict[str, dict[str, bytes]]):
        self.hashes = hashes

    def register_script(self, _):
        return None

    async def hget(self, key, field):
        return self.hashes.get(key, {}).get(field)

    async def hmget(self, key, *fields):
        return [self.hashes.get(key, {}).get(f) for f in fields]

    async def hset(self, key, mapping):
        self.hashes.setdefault(key, {}).update(
            {k: v if isinstance(v, bytes) else str(v).encode() for k, v in mapping.items()}
        )


SETTINGS = SimpleNamespace(clusters=3, cluster_snapshot_every=10, cluster_warmup=0,
                           cluster_snapshot_min_s=0.0)  # fmt: skip


class RunsACommand:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_in_redis_is_refused_unread_and_a_new_learner_goes_on_after_it(tmp_path, caplog):
    from streams.processing.worker import ClusterTrainer

    marker = tmp_path / "ran"
    keys = Keys("t")
    snapshot = {"version": 7, "ids": [0, 4, 5], "events": [{"event": "died", "cluster": 6}],
                "centroids": [], "mean": [], "scale": [], "features": list(FEATURES)}  # fmt: skip
    redis = FakeRedis({keys.cluster_model: {"learner": pickle.dumps(RunsACommand(marker)),
                                            "json": json.dumps(snapshot).encode()}})  # fmt: skip
    with caplog.at_level(logging.WARNING):
        trainer = asyncio.run(ClusterTrainer.resume(StateStore(redis, keys), SETTINGS))
    assert not marker.exists(), "the pickle ran"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "refused" in warnings[0] and "\n" not in warnings[0]
    learner = trainer.learner
    assert isinstance(learner, StableClusterer) and len(learner.sample) == 0
    rng = random.Random(1)
    for i in range(30):
        learner.learn_one({f: rng.gauss(i % 3 * 5.0, 0.2) for f in FEATURES}, customer_id=str(i))
    after = learner.snapshot()
    assert after.version == 8 and min(after.ids) == 7  # after v7, and after every id it named


def test_a_tombstone_drops_the_customer_and_the_learner_is_stored_without_it():
    from streams.processing.worker import ClusterTrainer, training_samples

    keys = Keys("t")
    redis = FakeRedis({})
    model = trained()
    gone = model.sample.ids()[0]
    trainer = ClusterTrainer(StateStore(redis, keys), model, every=10**6)
    pairs = training_samples(gone.encode(), None)  # the features topic's tombstone
    assert pairs == [(gone, None)]
    assert asyncio.run(trainer.train(pairs)) is None  # no snapshot due, stored anyway
    assert gone not in model.sample.ids()
    stored = redis.hashes[keys.cluster_model]["learner"]
    assert gone.encode() not in stored
    assert StableClusterer.from_dict(json.loads(stored)).sample.ids() == model.sample.ids()
    # a customer that sends events after its erase is a new one: it can be sampled again
    x = {f: 0.0 for f in FEATURES}
    asyncio.run(trainer.train([(gone, {"features": x, "last_event_ms": 10**9})]))
    assert gone in model.sample.ids()


def test_a_restarted_trainer_resumes_the_stored_learner():
    from streams.processing.worker import ClusterTrainer

    keys = Keys("t")
    redis = FakeRedis({})
    first = ClusterTrainer(StateStore(redis, keys), StableClusterer(3, seed=42), every=1)
    rng = random.Random(4)
    batch = [
        (f"c{i}", {"features": {f: rng.gauss(i % 3 * 4.0, 0.3) for f in FEATURES},
                   "last_event_ms": i})
        for i in range(60)
    ]  # fmt: skip
    snapshot = asyncio.run(first.train(batch))
    again = asyncio.run(ClusterTrainer.resume(StateStore(redis, keys), SETTINGS))
    assert again.learner.last.version == snapshot.version
    assert again.learner.sample.ids() == first.learner.sample.ids()
    assert [again.learner.predict_one(x) for x in probes()] == [
        first.learner.predict_one(x) for x in probes()
    ]

"""The cluster sweep's cursor and pacing (S10, issue #27 item 4).

- A pass driven call by call over buckets that change between calls (customers added,
  removed, their due times moved) hands out at most ``count`` a call, every customer
  present for the whole pass exactly once, and nobody twice (hypothesis).
- The trainer holds its next snapshot while the sweep's pass over the published one is
  under way, goes on learning meanwhile, and publishes the next version (no version
  skipped) with what it learnt once the pass is done.

The oracle is a model written here: the set of customers present at every call of the
pass, computed from the mutations the test itself applies.
"""

from __future__ import annotations

import asyncio
import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from online_models.clusters import StableClusterer
from online_models.features import FEATURES
from streams.state import sweep
from streams.state.keys import Keys
from streams.state.store import StateStore
from tests.unit.test_cluster_storage import FakeRedis  # the trainer's few hash commands


def run_pass(buckets: list[dict[str, float]], count: int, mutate, width: int = 3):
    """Drive ``sweep.take`` as StateStore.scan_customers does, reading ``width`` buckets
    at a time as ZRANGE would (by score, then member), calling ``mutate(call)`` between
    calls. Returns the ids of each call."""
    cursor, calls = sweep.START, []
    while True:
        mutate(len(calls))
        ids: list[str] = []
        while cursor[0] < len(buckets) and len(ids) < count:
            first = cursor[0]
            read = [sorted(b, key=lambda m, b=b: (b[m], m)) for b in buckets[first : first + width]]
            cursor, taken = sweep.take(cursor, count - len(ids), read)
            ids += taken
        calls.append(ids)
        if cursor[0] >= len(buckets):
            return calls


@settings(max_examples=150, deadline=None)
@given(
    n_buckets=st.integers(1, 6),
    customers=st.integers(0, 120),
    count=st.integers(1, 17),
    width=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
    churn=st.booleans(),
)
def test_a_pass_hands_out_at_most_count_a_call_and_everyone_present_exactly_once(
    n_buckets, customers, count, width, seed, churn
):
    rng = random.Random(seed)
    buckets: list[dict[str, float]] = [{} for _ in range(n_buckets)]
    home = {}

    def add(cid: str) -> None:
        home[cid] = rng.randrange(n_buckets)
        buckets[home[cid]][cid] = rng.random()

    for i in range(customers):
        add(f"c{i}")
    present_throughout = set(home)
    added = 0

    def mutate(call: int) -> None:
        nonlocal added
        if not churn or call == 0:
            return
        for _ in range(rng.randrange(4)):  # newcomers
            add(f"n{added}")
            added += 1
        for cid in rng.sample(sorted(home), min(len(home), rng.randrange(3))):  # leavers
            del buckets[home.pop(cid)][cid]
            present_throughout.discard(cid)
        for cid in rng.sample(sorted(home), min(len(home), 5)):  # due times move
            buckets[home[cid]][cid] = rng.random()

    calls = run_pass(buckets, count, mutate, width)
    handed = [cid for ids in calls for cid in ids]
    assert all(len(ids) <= count for ids in calls)  # 64-bit key ties: none among these ids
    assert len(handed) == len(set(handed)), "someone handed out twice in one pass"
    assert present_throughout <= set(handed)
    if not churn:
        assert sorted(handed) == sorted(home)
        assert all(len(ids) == count for ids in calls[:-1])  # full calls until the end


def test_a_tie_of_order_keys_is_taken_whole(monkeypatch):
    """Two customers of one bucket with the same order key (a 64-bit collision, forced
    here): a call never splits them, since a cursor could not tell them apart."""
    keys = {"c0": 0, "c1": 1, "c2": 5, "c3": 5, "c4": 7, "c5": 8}
    monkeypatch.setattr(sweep, "order_key", keys.__getitem__)
    members = ["c5", "c3", "c0", "c4", "c2", "c1"]  # in the bucket's (score) order
    cursor, first = sweep.take(sweep.START, 3, [members])
    assert (cursor, first) == ((0, 5), ["c0", "c1", "c2", "c3"])  # one over: the tie
    assert sweep.take(cursor, 3, [members]) == ((1, -1), ["c4", "c5"])


def test_the_trainer_holds_its_next_snapshot_until_the_sweep_has_passed_the_last():
    from streams.processing.worker import ClusterTrainer

    keys, redis = Keys("t"), FakeRedis({})
    trainer = ClusterTrainer(StateStore(redis, keys), StableClusterer(2, seed=1), every=10)
    rng = random.Random(2)

    def batch(tag: str) -> list:
        return [(f"{tag}{i}", {"features": {f: rng.gauss(i % 2 * 5.0, 0.3) for f in FEATURES},
                               "last_event_ms": i}) for i in range(10)]  # fmt: skip

    def published() -> int:
        return int(redis.hashes.get(keys.cluster_model, {}).get("version", 0))

    assert asyncio.run(trainer.train(batch("a"))).version == 1 and published() == 1
    # The sweep has not passed v1 (no "swept" yet): the trainer learns but publishes nothing.
    for tag in ("b", "c", "d"):
        assert asyncio.run(trainer.train(batch(tag))) is None
    assert published() == 1
    redis.hashes[keys.cluster_sweep] = {"sweeping": b"1", "swept": b"0"}  # pass under way
    assert asyncio.run(trainer.train(batch("e"))) is None and published() == 1
    redis.hashes[keys.cluster_sweep]["swept"] = b"1"  # the pass over v1 is done
    after = asyncio.run(trainer.train(batch("f")))
    assert after is not None and after.version == 2 and published() == 2
    learnt = set(trainer.learner.sample.ids())
    assert {"b0", "d9", "e5"} <= learnt  # what came while it held is in the next fit


def test_a_snapshot_no_worker_can_use_holds_nothing():
    """An older rtba's snapshot (another feature set) is never swept: the new trainer's
    first snapshot must not wait for a pass that will not come."""
    from streams.processing.worker import ClusterTrainer

    keys, redis = Keys("t"), FakeRedis({})
    foreign = {"version": 4, "ids": [0], "centroids": [[0.0]], "mean": [0.0], "scale": [1.0],
               "features": ["an older rtba's feature"]}  # fmt: skip
    redis.hashes[keys.cluster_model] = {"version": b"4", "json": json.dumps(foreign).encode()}
    learner = StableClusterer(2, seed=1)
    learner.continue_from(4, 1)
    trainer = ClusterTrainer(StateStore(redis, keys), learner, every=10)
    rng = random.Random(3)
    batch = [(f"c{i}", {"features": {f: rng.gauss(i % 2 * 5.0, 0.3) for f in FEATURES},
                        "last_event_ms": i}) for i in range(10)]  # fmt: skip
    assert asyncio.run(trainer.train(batch)).version == 5

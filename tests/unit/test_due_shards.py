"""The due index's shards: every due_set.lua call stays in one Redis Cluster slot (or, on
a single server, one call holds them all), each customer is written once, in its own
bucket's shard; the workers holding every events
partition between them re-score every shard exactly once (slots by redis-py's own
implementation of Redis's hash-tag rule)."""

from __future__ import annotations

import zlib

from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from streams.state.due_index import set_calls, shards_of
from streams.state.keys import DUE_SHARDS, Keys

IDS = st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=300, unique=True)


@given(IDS, st.sampled_from(["set", "lt", "nx"]), st.booleans())
def test_each_call_is_one_shards_and_writes_each_customer_once(ids, mode, across_shards):
    keys = Keys("behavior")
    due = {cid: (i if i % 3 else None) for i, cid in enumerate(ids[::2])}
    forget = ids[1::2]
    written = {}
    calls = set_calls(keys, due, forget, mode, across_shards)
    for names, args in calls:
        if not across_shards:
            assert len({key_slot(name.encode()) for name in names}) == 1
        assert args[0] == mode and len(names) == len(set(names))
        for s, k, cid, score in zip(*(args[i::4] for i in range(1, 5)), strict=True):
            bucket = zlib.crc32(cid.encode()) % 16_384
            assert names[k - 1] == f"behavior:due:{{behavior:due:{bucket % 64}}}:{bucket}"
            assert names[s - 1] == f"behavior:due:{{behavior:due:{bucket % 64}}}"
            assert cid not in written
            written[cid] = score
    want = {cid: "+inf" if t is None else t for cid, t in due.items()}
    assert written == {**want, **dict.fromkeys(forget, "")}
    if across_shards:  # one call per 1,000 customers, whatever the shards
        assert len(calls) == 1


def test_the_shards_spread_over_a_clusters_slots():
    keys = Keys("behavior")
    slots = {key_slot(keys.due_summary(s).encode()) for s in range(DUE_SHARDS)}
    assert len(slots) == DUE_SHARDS
    # three masters, slots split evenly: no master holds more than half the shards
    masters = [sum(1 for slot in slots if slot * 3 // 16_384 == m) for m in range(3)]
    assert max(masters) <= DUE_SHARDS // 2, masters


@given(st.integers(1, 200), st.data())
def test_workers_holding_every_partition_rescore_every_shard_once(partitions, data):
    workers = data.draw(st.integers(1, min(partitions, 8)))
    owner = data.draw(st.lists(st.integers(0, workers - 1), min_size=partitions,
                               max_size=partitions))  # fmt: skip
    held = [[p for p in range(partitions) if owner[p] == w] for w in range(workers)]
    taken = [s for mine in held for s in shards_of(mine, partitions)]
    assert sorted(taken) == list(range(DUE_SHARDS))
    for mine in held:  # a shard goes with the partition s % partitions, nothing else
        assert all(s % partitions in mine for s in shards_of(mine, partitions))


def test_shards_go_to_workers_in_proportion_to_their_partitions():
    halves = [shards_of([0, 2, 4], 6), shards_of([1, 3, 5], 6)]
    assert [len(h) for h in halves] == [32, 32]
    assert shards_of([], 6) == []

"""The due index: every customer with state, by the event time it is next due for
re-scoring (``+inf`` while nothing is due), in BUCKETS small sorted sets plus a summary
of each bucket's least due time (keys: streams.state.keys; scripts: due_set.lua, due_until.lua).

Why buckets: one sorted set of every customer cost ~113 bytes a member (a skiplist node
and a dict entry each); a sorted set of up to 128 members is a listpack, ~20 bytes a
member. BUCKETS keeps buckets that small up to ~2M customers on Redis's defaults (the
local stack's ``zset-max-listpack-entries 512``: ~8M). The summary lets a tick read only
the buckets with someone due.

Why shards: the buckets are spread over DUE_SHARDS shards (bucket b in shard b %
DUE_SHARDS), each with its own summary and hash tag. One tag for the whole index put
~3 operations per changed customer and 2.5 GB at 100M customers in one Cluster slot,
and one leader re-scored everyone. Now each worker re-scores the shards of the events
partitions it holds (shards_of), so the tick grows with workers, and a call over a
shard's buckets still stays in one slot. The price on a single server: a batch's due
times take one script call per shard touched instead of one (same round trip).

This module builds the script arguments; streams.state.store runs them.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping

from streams.state.keys import DUE_SHARDS, Keys

BUCKETS = 16_384
NEVER = "+inf"  # the score of a customer nothing is due for
_PER_CALL = 1_000  # customers per due_set.lua call: bounds how long one call holds Redis


def bucket_of(customer_id: str) -> int:
    """The bucket of a customer: stable across processes and Python versions.

    >>> bucket_of("c000001") == bucket_of("c000001"), 0 <= bucket_of("") < BUCKETS
    (True, True)
    """
    return zlib.crc32(customer_id.encode()) % BUCKETS


def shard_of(bucket: int) -> int:
    """The due-index shard holding a bucket (Keys.due_bucket names it so)."""
    return bucket % DUE_SHARDS


def customer_shard(customer_id: str) -> int:
    """The shard of a customer's due-index bucket, which its outbox-index entry shares."""
    return shard_of(bucket_of(customer_id))


def shards_of(partitions: Iterable[int], partition_count: int) -> list[int]:
    """The due-index shards re-scored by the worker holding these events partitions: shard
    s goes with partition s % partition_count. Every shard has one partition, so workers
    holding every partition between them re-score every shard once; with more partitions
    than shards the partitions past DUE_SHARDS hold none.

    >>> shards_of([1], 30)
    [1, 31, 61]
    >>> sorted(shards_of([0, 2], 4) + shards_of([1, 3], 4)) == list(range(64))
    True
    """
    mine = set(partitions)
    return [s for s in range(DUE_SHARDS) if s % partition_count in mine]


def set_calls(
    keys: Keys,
    due: Mapping[str, int | None],
    forget: Iterable[str] = (),
    mode: str = "set",
    across_shards: bool = False,
) -> list[tuple[list[str], list]]:
    """KEYS and ARGV of the due_set.lua calls that write ``due`` (None: nothing due) and
    take the ``forget`` customers out of the index: one call per shard touched (and per
    _PER_CALL customers), or with ``across_shards`` (a single server: no slot to stay
    in) one call per _PER_CALL customers. ``mode`` "lt" only moves due times earlier,
    "nx" only adds customers the index lacks.

    >>> calls = set_calls(Keys("ns"), {"c000001": 5, "c000002": None}, ["c000003"])
    >>> [(names[0], args) for names, args in calls]  # doctest: +NORMALIZE_WHITESPACE
    [('ns:due:{ns:due:21}', ['set', 1, 2, 'c000001', 5]),
     ('ns:due:{ns:due:47}', ['set', 1, 2, 'c000002', '+inf']),
     ('ns:due:{ns:due:57}', ['set', 1, 2, 'c000003', ''])]
    >>> [len(names) for names, _ in set_calls(Keys("ns"), {"c000001": 5, "c000002": 6},
    ...                                       across_shards=True)]
    [4]
    """
    by_shard: dict[int, list[tuple[str, int, object]]] = {}
    for cid, score in [*((c, NEVER if t is None else t) for c, t in due.items()),
                       *((c, "") for c in forget)]:  # fmt: skip
        bucket = bucket_of(cid)
        by_shard.setdefault(-1 if across_shards else shard_of(bucket), []).append(
            (cid, bucket, score)
        )
    calls = []
    for group in sorted(by_shard):
        entries = by_shard[group]
        for at in range(0, len(entries), _PER_CALL):
            position: dict[str, int] = {}  # key name -> its index in KEYS (Lua's, from 1)
            args: list = [mode]
            for cid, bucket, score in entries[at : at + _PER_CALL]:
                for name in (keys.due_summary(shard_of(bucket)), keys.due_bucket(bucket)):
                    args.append(position.setdefault(name, len(position) + 1))
                args += [cid, score]
            names = list(position)
            calls.append((names, args))
    return calls

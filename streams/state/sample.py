"""A deterministic, uniform customer sample of bounded size: the customers of the first
due-index buckets.

A customer's bucket is crc32(id) % BUCKETS (streams.state.due_index): a hash, so the
customers of any set of buckets are a uniform sample of the population, and the same
customers every time (only newcomers hashed into those buckets join it). The sample is
the customers of buckets 0, 1, 2, ... up to the first bucket at which it holds ``size``
customers: reading it costs the bucket reads and ``size`` (+ one bucket) states, whatever
the population's size.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from streams.state import due_index
from streams.state.keys import Keys

# Buckets per pipelined read: at 1M customers a bucket holds ~61, so 64 buckets are ~4k ids.
_BUCKETS_PER_READ = 64


def buckets_needed(sizes: Iterable[int], size: int) -> int:
    """How many leading buckets (of the given sizes, bucket 0 first) make a sample of at
    least ``size`` customers; all of them when the population is smaller.

    >>> buckets_needed([3, 0, 4, 5], 5), buckets_needed([3, 0, 4, 5], 7), buckets_needed([1, 1], 9)
    (3, 3, 2)
    """
    held, count = 0, 0
    for n in sizes:
        held, count = held + n, count + 1
        if held >= size:
            break
    return count


def sample_customer_ids(client: redis.Redis, keys: Keys, size: int) -> list[str]:
    """The customers of the first due-index buckets, at least ``size`` of them (everyone in
    a smaller population), sorted. Reads only those buckets."""
    ids: list[str] = []
    for start in range(0, due_index.BUCKETS, _BUCKETS_PER_READ):
        if len(ids) >= size:
            break
        with client.pipeline(transaction=False) as pipe:
            for bucket in range(start, min(start + _BUCKETS_PER_READ, due_index.BUCKETS)):
                pipe.zrange(keys.due_bucket(bucket), 0, -1)
            for members in pipe.execute():
                if len(ids) >= size:  # whole buckets only: the sample is a set of buckets
                    break
                ids += [m.decode() if isinstance(m, bytes) else m for m in members]
    return sorted(ids)

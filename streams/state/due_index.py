"""The due index: every customer with state, by the event time it is next due for
re-scoring (``+inf`` while nothing is due), in BUCKETS small sorted sets plus a summary
of each bucket's least due time (keys: streams.state.keys; scripts: due_set.lua, due_until.lua).

Why buckets: one sorted set of every customer cost ~113 bytes a member (a skiplist node
and a dict entry each); a sorted set of up to 128 members is a listpack, ~20 bytes a
member. BUCKETS keeps buckets that small up to ~2M customers on Redis's defaults (the
local stack's ``zset-max-listpack-entries 512``: ~8M). The summary lets a tick read only
the buckets with someone due. Every due key shares one hash tag: a call over several
buckets stays in one Cluster slot, and the whole index is ~25 bytes a customer in that
slot (2.5 GB at 100M customers).

This module builds the script arguments; streams.state.store runs them.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping

from streams.state.keys import Keys

BUCKETS = 16_384
NEVER = "+inf"  # the score of a customer nothing is due for
_PER_CALL = 1_000  # customers per due_set.lua call: bounds how long one call holds Redis


def bucket_of(customer_id: str) -> int:
    """The bucket of a customer: stable across processes and Python versions.

    >>> bucket_of("c000001") == bucket_of("c000001"), 0 <= bucket_of("") < BUCKETS
    (True, True)
    """
    return zlib.crc32(customer_id.encode()) % BUCKETS


def set_calls(
    keys: Keys,
    due: Mapping[str, int | None],
    forget: Iterable[str] = (),
    mode: str = "set",
) -> list[tuple[list[str], list]]:
    """KEYS and ARGV of the due_set.lua calls that write ``due`` (None: nothing due) and
    take the ``forget`` customers out of the index; ``mode`` "lt" only moves due times
    earlier.

    >>> [(k, a) for k, a in set_calls(Keys("ns"), {"a": 5, "b": None}, ["c"])][0][1][:7]
    ['set', 2, 'a', 5, 3, 'b', '+inf']
    """
    entries = [(cid, NEVER if t is None else t) for cid, t in due.items()]
    entries += [(cid, "") for cid in forget]
    calls = []
    for at in range(0, len(entries), _PER_CALL):
        names, position, args = [keys.due], {}, [mode]
        for cid, score in entries[at : at + _PER_CALL]:
            bucket = bucket_of(cid)
            if bucket not in position:
                names.append(keys.due_bucket(bucket))
                position[bucket] = len(names)  # Lua's KEYS count from 1
            args += [position[bucket], cid, score]
        calls.append((names, args))
    return calls

"""A pass over every customer of the due index, at most ``count`` customers a call: the
cursor of the leader's cluster sweep and audience backfill (StateStore.scan_customers).

The cursor is (bucket, after): the due index's bucket the pass is in, and the last
*order key* handed out of it (-1: the bucket's start). A customer's order key is a 64-bit
hash of its id, so its place in its bucket is fixed: it does not move when its due time
(the bucket's score) changes or when others come and go, as a rank would. Each call reads
whole buckets (ZRANGE: they are small, ~61 customers at 1M) and hands out, in key order,
the members past ``after``.

Guarantees (tests/unit/test_sweep_cursor.py, tests/integration/test_sweep.py):

- at most ``count`` customers a call; the one exception is a tie of order keys, taken
  whole so a cursor never splits it (a 64-bit collision within one bucket: none in
  practice);
- a customer present in the index for the whole pass is handed out exactly once in it,
  whatever else changes meanwhile; one added or removed during the pass at most once.

Why not ZSCAN: a bucket up to ``zset-max-listpack-entries`` is a listpack, and ZSCAN
returns a listpack whole whatever its COUNT, so it has no position inside a bucket; and a
rank (ZRANGE by index) moves under a customer whenever a due time or a member changes.
"""

from __future__ import annotations

from hashlib import blake2b

Cursor = tuple[int, int]  # (bucket, the last order key handed out of it; -1: none yet)
START: Cursor = (0, -1)


def order_key(customer_id: str) -> int:
    """A customer's fixed place within its bucket: an unsigned 64-bit hash of its id.

    >>> order_key("c000001") == order_key("c000001"), 0 <= order_key("") < 2**64
    (True, True)
    """
    return int.from_bytes(blake2b(customer_id.encode(), digest_size=8).digest(), "big")


def take(cursor: Cursor, count: int, buckets: list[list[str]]) -> tuple[Cursor, list[str]]:
    """At most ``count`` customers from ``buckets`` (the members of buckets ``cursor[0]``,
    ``cursor[0] + 1``, ... as read) from the cursor on, and the cursor after them.

    The cursor after a bucket taken whole is the next bucket's start, so the caller knows
    the pass is over once it reaches the number of buckets.

    >>> take((3, -1), 2, [["a"], [], ["b", "c"]])[0][0], len(take((3, -1), 9, [["a"], ["b"]])[1])
    (5, 2)
    """
    bucket, after = cursor
    ids: list[str] = []
    for members in buckets:
        rest = sorted((k, m) for m in members if (k := order_key(m)) > after)
        want = count - len(ids)
        if len(rest) > want:
            upto = want
            while 0 < upto < len(rest) and rest[upto][0] == rest[upto - 1][0]:
                upto += 1  # a tie of keys is never split: the cursor could not tell them apart
            if upto < len(rest):
                ids += [m for _, m in rest[:upto]]
                return ((bucket, rest[upto - 1][0]) if upto else (bucket, after)), ids
        ids += [m for _, m in rest]
        bucket, after = bucket + 1, -1
        if len(ids) >= count:
            break
    return (bucket, after), ids

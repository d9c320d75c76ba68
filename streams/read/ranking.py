"""Member and ranking pages from the index the writers keep (streams.state.facts,
``Keys.index``): a segment's or a cluster's members in customer-id order, and everyone
by money spent, a page at a time at a cost that follows the page, not the population.

Each index shard is a sorted set with every score 0, so Redis orders it by the entry's
bytes: ``s:<segment>:<id>``, ``k:<cluster>:<id>``, ``m:<inverted money>:<id>``. A page
asks every shard for its next ``limit`` entries after the cursor (ZRANGE BYLEX LIMIT, one
pipelined round trip), merges them and keeps the first ``limit``: 16 small range reads
on a single server, whatever N. On a Cluster the shards are its 16,384 slots, one read
each (docs/population.md has the measured cost). ``offset`` is served the same way, each
shard asked for ``offset + limit``: its cost grows with the offset, the cursor's does
not, so an offset stops at MAX_OFFSET.
"""

from __future__ import annotations

import heapq
import itertools
import re
from dataclasses import dataclass

from streams.state.facts import MONEY_DIGITS, read_each_shard
from streams.state.keys import Keys

_TOP = b"\xff"  # above every UTF-8 byte: the end of a prefix's range
# The deepest offset a page takes: each shard is asked for offset + limit entries, so a
# deeper one would read the index wholesale. Beyond it, the cursor (``after``).
MAX_OFFSET = 10_000
_MONEY_CURSOR = re.compile(rf"\d{{{MONEY_DIGITS}}}:.", re.DOTALL)


class BadPage(ValueError):
    """A cursor no page gave, or an offset past MAX_OFFSET: a 422, said how to page."""


@dataclass(frozen=True)
class Page:
    ids: list[str]  # the customers, in the index's order
    next: str | None  # the cursor that continues after them; None: this was the last page


def segment_prefix(segment: str) -> str:
    return f"s:{segment}:"


def cluster_prefix(cluster_id: int) -> str:
    return f"k:{cluster_id}:"


MONEY = "m:"


def page(client, keys: Keys, prefix: str, limit: int, after: str | None = None,
         offset: int = 0) -> Page:  # fmt: skip
    """One page of the entries under ``prefix`` (``segment_prefix``, ``cluster_prefix`` or
    MONEY): the customers after ``offset`` entries past the cursor ``after`` (a page's
    ``next``, or None for the start).

    The cursor is the last entry without its prefix: for members the customer id, for
    the money ranking ``<inverted money>:<id>``.
    """
    if offset > MAX_OFFSET:
        raise BadPage(f"offset {offset:,} is past {MAX_OFFSET:,}: page on with after= (each "
                      "page's next)")  # fmt: skip
    if after and prefix == MONEY and not _MONEY_CURSOR.match(after):
        raise BadPage("after= takes a page's next as given (<24 digits>:<customer id>)")
    lower = b"(" + (prefix + after).encode() if after else b"[" + prefix.encode()
    upper = b"[" + prefix.encode() + _TOP
    wanted = offset + limit + 1  # one more tells whether a next page exists

    def ask(pipe, name):
        pipe.zrange(name, lower, upper, bylex=True, offset=0, num=wanted)

    shards = read_each_shard(client, keys.index, ask)
    merged = list(itertools.islice(heapq.merge(*shards), wanted))
    taken = merged[offset : offset + limit]
    tails = [entry[len(prefix.encode()) :].decode() for entry in taken]
    more = len(merged) > offset + limit
    ids = [tail.split(":", 1)[1] for tail in tails] if prefix == MONEY else tails
    return Page(ids, tails[-1] if more and tails else None)

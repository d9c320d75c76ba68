"""Reads whose cost does not grow with the population (S10): an audience's members page is
one ZRANGE by rank; `GET /segments`, the dashboard sample and `rtba segments` read the
population facts, never the customers' states. On the session's real Redis, in a namespace
of each test's own; no worker (the shop run through the real worker: test_api.py)."""

from __future__ import annotations

import json

import pytest

from streams.audiences.definitions import parse
from streams.processing.schemas import iso
from streams.read.audiences import member_rows
from streams.state.keys import Keys
from streams.state.store import publish_audiences

pytestmark = pytest.mark.integration


def test_an_audience_page_is_one_zrange_by_rank_in_entry_order(settings, redis_client):
    keys = Keys(settings.namespace)
    when = {"field": "monetary", "gte": 1}
    publish_audiences(redis_client, keys, parse(json.dumps(
        {"audiences": [{"id": "big", "name": "Big", "when": when}]})))  # fmt: skip
    entered = {"c3": 1_000, "c1": 2_000, "c2": 2_000, "c0": 3_000, "c9": 4_000}
    redis_client.zadd(keys.audience_members("big"), entered)
    ranges = []
    zrange = redis_client.zrange

    def spy(name, start, end, **kw):
        ranges.append((start, end))
        return zrange(name, start, end, **kw)

    redis_client.zrange = spy
    # by entry time, ties by customer id: c3, then c1 and c2 (both at 2,000), c0, c9
    page = member_rows(redis_client, keys, "big", offset=1, limit=3)
    assert page == [{"customer_id": c, "entered": iso(entered[c])} for c in ("c1", "c2", "c0")]
    assert ranges == [(1, 3)]  # the page's ranks only, not the whole set
    everyone = member_rows(redis_client, keys, "big")
    assert [r["customer_id"] for r in everyone] == ["c3", "c1", "c2", "c0", "c9"]
    assert member_rows(redis_client, keys, "big", offset=5, limit=10) == []

"""The AOF rewrites that erasures start, on the session's real Redis (its AOF is on): an
explicit erase may start one a minute per namespace, retention one an hour, each on a
lease of its own (docs/privacy.md)."""

from __future__ import annotations

import asyncio
import time

import pytest

from streams.state.erase import rewrite_aof, rewrite_aof_async
from streams.state.keys import Keys
from streams.state.redis_client import connect_async, info_per_server

pytestmark = pytest.mark.integration


def settle(client) -> None:
    """Wait for the rewrites other tests started: one in progress answers 'recent'."""
    deadline = time.monotonic() + 30
    while any(int(i["aof_rewrite_in_progress"]) for i in info_per_server(client, "persistence")):
        assert time.monotonic() < deadline, "an AOF rewrite ran for 30 s"
        time.sleep(0.05)


def test_retention_rewrites_once_an_hour_and_leaves_the_erase_its_minute(settings, redis_client):
    keys = Keys(settings.namespace)

    async def retention_twice():
        client = connect_async(settings.redis_url)
        try:
            first = await rewrite_aof_async(client, keys)
            settle(redis_client)
            return first, await rewrite_aof_async(client, keys)
        finally:
            await client.aclose()

    settle(redis_client)
    first, second = asyncio.run(retention_twice())
    assert (first, second) == ("started", "recent")
    assert 3500 < redis_client.ttl(f"{settings.namespace}:aof-rewrite:retention") <= 3600
    settle(redis_client)
    assert rewrite_aof(redis_client, keys) == "started"  # an explicit erase is not held back
    assert 0 < redis_client.ttl(f"{settings.namespace}:aof-rewrite") <= 60

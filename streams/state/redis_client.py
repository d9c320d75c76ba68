"""The one way rtba connects to Redis: a single server or a Redis Cluster, told apart by
asking the server (``INFO cluster``), so ``REDIS_URL`` names any node and nothing else
needs setting.

On a Cluster every command and every script call must stay in one hash slot (rtba's keys
are built for that, streams/state/keys.py), and redis-py does not run Lua scripts inside a
cluster pipeline. :class:`Batch` is the write path for both: on a single server one
pipelined round trip, as before; on a Cluster the commands go in cluster pipelines (one
round trip per node) and the script calls run concurrently, each on its slot's node,
keeping the order in which they were queued between commands and scripts.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aioredis

# Script calls in flight at once on a Cluster: enough to fill the round trips of a
# 500-customer batch, few enough not to open hundreds of connections per node.
CONCURRENT_SCRIPTS = 64


_KIND: dict[str, bool] = {}


def is_cluster(url: str, **options: Any) -> bool:
    """Whether the server at ``url`` is a Redis Cluster node (asked once per process).

    A server that cannot be reached counts as a single server and is asked again next
    time: the first real command then fails with the connection error callers handle.
    """
    if url in _KIND:
        return _KIND[url]
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, **options)
    try:
        _KIND[url] = int(client.info("cluster").get("cluster_enabled", 0)) == 1
    except redis.exceptions.RedisError:
        return False
    finally:
        client.close()
    return _KIND[url]


def connect(url: str, **options: Any) -> redis.Redis:
    """A synchronous client (CLI, views, tests): ``RedisCluster`` on a Cluster.
    ``options`` are redis-py's (the login and TLS files: Settings.redis_options)."""
    if is_cluster(url, **options):
        return redis.RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, **options)


def connect_async(url: str, **options: Any) -> aioredis.Redis:
    """An asyncio client (workers): ``RedisCluster`` on a Cluster."""
    if is_cluster(url, **options):
        return aioredis.RedisCluster.from_url(url, **options)
    return aioredis.Redis.from_url(url, **options)


def clustered(client) -> bool:
    return isinstance(client, aioredis.RedisCluster | redis.RedisCluster)


def info_per_server(client: redis.Redis, section: str) -> list[dict]:
    """``INFO section`` of the one server, or of every master of a Cluster."""
    if clustered(client):
        return list(client.info(section, target_nodes=client.PRIMARIES).values())
    return [client.info(section)]


@dataclass
class Batch:
    """Commands and script calls written in one go; ``run`` returns their replies in the
    order they were queued.

    Each step after a command or script sees that command's or script's effect (a single
    server pipelines in order; a Cluster runs each stretch of commands, then each stretch
    of scripts, then the next). The batch is not atomic on either: each script call is.
    """

    steps: list[tuple] = field(default_factory=list)

    def command(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.steps.append(("command", name, args, kwargs))

    def script(self, script, keys: list[str], args: list) -> None:
        self.steps.append(("script", script, keys, args))

    async def run(self, client) -> list:
        if not self.steps:
            return []
        if not clustered(client):
            async with client.pipeline(transaction=False) as pipe:
                for step in self.steps:
                    await _queue(pipe, step)
                return await pipe.execute()
        # Concurrent first commands on a cluster client each start its initialisation
        # (slots, nodes), which can drop connections others are using; redis-py then
        # retries a script call the server already ran (seen: spurious version conflicts
        # and "'NoneType' object has no attribute 'writelines'"). Initialise once first.
        await client.initialize()
        replies: list = []
        for kind, group in itertools.groupby(self.steps, key=lambda step: step[0]):
            group = list(group)
            if kind == "command":
                async with client.pipeline() as pipe:
                    for step in group:
                        await _queue(pipe, step)
                    replies += await pipe.execute()
            else:
                for at in range(0, len(group), CONCURRENT_SCRIPTS):
                    chunk = group[at : at + CONCURRENT_SCRIPTS]
                    replies += await asyncio.gather(
                        *(script(keys=keys, args=args) for _, script, keys, args in chunk)
                    )
        return replies


async def _queue(pipe, step: tuple) -> None:
    if step[0] == "command":
        _, name, args, kwargs = step
        getattr(pipe, name)(*args, **kwargs)
    else:
        _, script, keys, args = step
        await script(keys=keys, args=args, client=pipe)

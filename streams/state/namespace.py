"""Wiping a namespace (`rtba reset`): exactly its own keys, topics and consumer groups.

Names are matched exactly, never by prefix: a namespace may hold '.' and '-', so
"behavior" is a prefix of the topics of a namespace called "behavior.eu".
"""

from __future__ import annotations

from streams.errors import RtbaError
from streams.processing.topics import admin_client
from streams.settings import Settings
from streams.state.redis_client import clustered, connect


def groups(settings: Settings) -> list[str]:
    return [settings.app_id, f"{settings.app_id}-dlq-redrive"]


def topics(settings: Settings) -> list[str]:
    # Faust's own: the assignor's leader topic (rtba keeps no Faust tables).
    return [*settings.all_topics, f"{settings.app_id}-__assignor-__leader"]


def _delete_keys(settings: Settings) -> int:
    client = connect(settings.redis_url, **settings.redis_options())
    pattern = f"{settings.namespace}:*"  # ':' cannot be in a namespace: exactly its keys
    deleted = 0
    try:
        nodes = client.get_primaries() if clustered(client) else [None]
        for node in nodes:
            scan = (
                client.scan_iter(match=pattern, count=1000, target_nodes=node)
                if node
                else client.scan_iter(match=pattern, count=1000)
            )
            batch = []
            for key in scan:
                batch.append(key)
                if len(batch) == 500:
                    deleted += _unlink(client, batch)
                    batch = []
            deleted += _unlink(client, batch)
    finally:
        client.close()
    return deleted


def _unlink(client, keys: list) -> int:
    # One key per call on a Cluster (keys of a batch span slots).
    if not keys:
        return 0
    if clustered(client):
        return sum(client.unlink(k) for k in keys)
    return client.unlink(*keys)


def wipe(settings: Settings) -> dict:
    """Delete the namespace's Redis keys, topics and consumer groups; refused while one of
    its workers is a member of the group."""
    admin = admin_client(settings.kafka_bootstrap, timeout_s=5, **settings.kafka_options())
    try:
        present = {group["group_id"] for group in admin.list_groups()}
        ours = [g for g in groups(settings) if g in present]
        for name, group in (admin.describe_groups(ours) if ours else {}).items():
            if group.get("members"):
                raise RtbaError(
                    f"{len(group['members'])} member(s) of {name} are running: stop "
                    f"the workers of namespace {settings.namespace!r} first"
                )
        doomed = [t for t in topics(settings) if t in set(admin.list_topics())]
        if doomed:
            admin.delete_topics(doomed)
        if ours:
            admin.delete_groups(ours)
    finally:
        admin.close()
    return {"keys": _delete_keys(settings), "topics": doomed, "groups": ours}

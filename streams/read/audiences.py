"""What `rtba audience` and the API show about audiences: definitions, sizes, members and
the backfill's progress, read from Redis (synchronous client)."""

from __future__ import annotations

import json

import redis

from streams.audiences.definitions import AudienceSet
from streams.errors import NotFound
from streams.processing.schemas import iso
from streams.state.keys import Keys
from streams.state.store import audience_backfill, audience_members, audience_sizes, read_audiences


def backfill_status(client: redis.Redis, keys: Keys, version: int) -> dict:
    """How far the leader's backfill of definitions ``version`` has come."""
    position = audience_backfill(client, keys)
    if version and position.get("swept", 0) >= version:
        return {"state": "done", "version": version, "done": position.get("total", 0),
                "total": position.get("total", 0)}  # fmt: skip
    if version and position.get("sweeping") == version:
        done, total = position.get("done", 0), position.get("total", 0)
        return {"state": "running", "version": version, "done": min(done, total), "total": total}
    return {"state": "waiting" if version else "none", "version": version, "done": 0,
            "total": None}  # fmt: skip


def audience_rows(client: redis.Redis, keys: Keys) -> dict:
    """Every defined audience with its size, and the backfill's progress."""
    audiences, version = read_audiences(client, keys)
    defined = audiences.audiences if audiences else ()
    sizes = audience_sizes(client, keys, [a.id for a in defined])
    rows = [{"id": a.id, "name": a.name, "members": sizes[a.id]} for a in defined]
    return {"version": version, "digest": audiences.digest if audiences else None,
            "audiences": rows, "backfill": backfill_status(client, keys, version)}  # fmt: skip


def _defined(client: redis.Redis, keys: Keys, audience_id: str) -> tuple[AudienceSet, int]:
    audiences, version = read_audiences(client, keys)
    if audiences is None or audience_id not in audiences.ids:
        known = ", ".join(sorted(audiences.ids)) if audiences and audiences.ids else "none"
        raise NotFound(f"no audience {audience_id!r} is defined (defined: {known}); "
                       "`rtba audience list` shows them")  # fmt: skip
    return audiences, version


def audience_detail(client: redis.Redis, keys: Keys, audience_id: str) -> dict:
    audiences, version = _defined(client, keys, audience_id)
    audience = audiences.by_id[audience_id]
    return {
        **json.loads(audience.model_dump_json(by_alias=True, exclude_none=True)),
        "members": audience_sizes(client, keys, [audience_id])[audience_id],
        "version": version,
        "backfill": backfill_status(client, keys, version),
    }


def member_rows(client: redis.Redis, keys: Keys, audience_id: str, offset: int = 0,
                limit: int | None = None) -> list[dict]:  # fmt: skip
    """Members in the order they entered (event time), then by customer id:
    ``{"customer_id", "entered"}`` (ISO). A page costs one ZRANGE by rank."""
    _defined(client, keys, audience_id)
    return [{"customer_id": cid, "entered": iso(at)}
            for cid, at in audience_members(client, keys, audience_id, offset, limit)]  # fmt: skip

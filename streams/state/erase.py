"""Erasing customers from Redis: every key and index entry that names one, and its place
in the population facts (the caller sends the tombstones: streams.erasure).

What names a customer in Redis (streams/state/keys.py): its state string and its outbox
hash (one slot, deleted by one script call, which also takes its entries out of the
member and ranking index shard in that slot), its member in a due-index bucket, in the
outbox index and in the audience indexes it belongs to (and, should a first erase have
died half-way, those of every defined audience). The population facts (streams.state.
facts: sizes, sums, the histograms behind the adaptive RFM edges) count customers
without naming them; the customer's contribution is taken out in the script call that
deletes its state, computed from the state read just before and applied only if that
state is still the one stored (its version), so the facts never lose or keep it. The
cluster learner's
sample of customers does hold ids: the stored learner is rewritten without the customer
(and the running trainer drops it at the customer's tombstone on the features topic).
The customer's HMAC under a random per-namespace salt, with the erase time, goes into
``keys.erased`` so that a DLQ re-drive skips it; an AOF rewrite is started so that the
deleted values leave the append-only file. Nothing else holds an id: counters, the other
models, the dashboard's samples and the sweeps' cursors are about the population.

Crash safety: the state and its contribution go first, in one atomic step. Should the
process die before the rest, running the erase again finishes it (the index entries go;
the state is gone, so no contribution is taken twice).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass

import redis

from online_models.clusters import StableClusterer
from online_models.days import UTC_DAYS, Days
from streams.audiences.definitions import AudienceSet
from streams.errors import RtbaError
from streams.state import due_index, facts, state_codec
from streams.state.keys import Keys
from streams.state.redis_client import clustered
from streams.state.store import lua, script_keys

log = logging.getLogger(__name__)

SALT = "salt"
# An AOF rewrite rewrites the whole dataset: at most one a minute per namespace, however
# many erases (docs/privacy.md). Retention erases someone on most ticks of a large shop,
# so its rewrites (a lease of their own) come at most once an hour: a rewrite a minute
# would be a fork and a full write of the dataset on a timer, forever.
AOF_REWRITE_EVERY_S = 60
RETENTION_AOF_REWRITE_EVERY_S = 3600


def erased_field(salt: bytes, customer_id: str) -> str:
    """The field an erased customer gets in ``keys.erased``: ``h:`` + HMAC-SHA256 of its
    id under the namespace's random salt (the id itself is never kept)."""
    return "h:" + hmac.new(salt, customer_id.encode(), hashlib.sha256).hexdigest()


def namespace_salt(client: redis.Redis, keys: Keys) -> bytes:
    """The namespace's salt for erased-id hashes, made on first use."""
    client.hsetnx(keys.erased, SALT, secrets.token_hex(16))
    return client.hget(keys.erased, SALT)


def record_erased(client: redis.Redis, keys: Keys, customer_ids, now_ms: int | None = None):
    """Remember that these customers were erased now (for `rtba dlq --redrive`)."""
    salt = namespace_salt(client, keys)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    fields = {erased_field(salt, cid): now_ms for cid in customer_ids}
    if fields:
        client.hset(keys.erased, mapping=fields)


class ErasedIds:
    """Who was erased, and when: read once (``keys.erased``), asked per customer id."""

    def __init__(self, stored: dict):
        stored = {_text(k): _text(v) for k, v in stored.items()}
        self._salt = stored.pop(SALT, "").encode()
        self._at = {k: int(v) for k, v in stored.items() if k.startswith("h:")}

    @classmethod
    def read(cls, client: redis.Redis, keys: Keys) -> ErasedIds:
        return cls(client.hgetall(keys.erased))

    def erased_at_ms(self, customer_id: str) -> int | None:
        """When the customer was last erased (wall clock, ms), or None."""
        if not self._at:
            return None
        return self._at.get(erased_field(self._salt, customer_id))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def learner_without(saved: bytes, customer_ids) -> bytes | None:
    """A stored learner without these customers: its new JSON; ``b""`` when it cannot
    be read (an older rtba's pickle, deleted unread: it may hold the ids); None when
    none of them is in its sample."""
    if saved.startswith(b"{") and not any(_as_json(cid) in saved for cid in customer_ids):
        return None  # none of them is named (as to_dict's json.dumps writes ids): no parse
    try:
        learner = StableClusterer.from_dict(json.loads(saved))
    except Exception:
        return b""
    if not any([learner.forget(cid) for cid in customer_ids]):
        return None
    return json.dumps(learner.to_dict()).encode()


def _as_json(customer_id: str) -> bytes:
    """The id as json.dumps writes it in a stored learner (quotes included)."""
    return json.dumps(customer_id).encode()


# The trainer stores its learner every few seconds at most; a replace that keeps losing
# to it gives up, and the trainer's own copy drops the ids at their tombstone.
_REPLACE_TRIES = 5


def forget_in_learner(client: redis.Redis, keys: Keys, customer_ids: list[str]) -> bool:
    """Take erased customers out of the stored cluster learner's sample (the running
    trainer drops them from its own copy at their tombstone on the features topic, and
    stores it again). A compare-and-set (replace_learner.lua) never puts an older learner
    back over one the trainer stored meanwhile. Whether the stored learner changed."""
    replace = client.register_script(lua("replace_learner"))
    for _ in range(_REPLACE_TRIES):
        saved = client.hget(keys.cluster_model, "learner")
        new = None if saved is None else learner_without(saved, customer_ids)
        if new is None:
            return False
        if replace(keys=[keys.cluster_model], args=[saved, new]):
            return True
    return False


async def forget_in_learner_async(client, keys: Keys, customer_ids: list[str]) -> bool:
    """``forget_in_learner`` for a worker's asyncio client (the retention erase)."""
    replace = client.register_script(lua("replace_learner"))
    for _ in range(_REPLACE_TRIES):
        saved = await client.hget(keys.cluster_model, "learner")
        new = None if saved is None else learner_without(saved, customer_ids)
        if new is None:
            return False
        if await replace(keys=[keys.cluster_model], args=[saved, new]):
            return True
    return False


def rewrite_aof(client: redis.Redis, keys: Keys) -> str:
    """Start an AOF rewrite, so that the erased values leave the append-only file too
    (Redis keeps them in it until one): on every node of a Cluster, at most once every
    AOF_REWRITE_EVERY_S per namespace. What happened, in a word: ``started``, ``off`` (no
    AOF), ``recent`` (one started within the minute), ``refused`` (not allowed to the
    Redis user by its ACL, or another error: logged in one line)."""
    try:
        if not _aof_enabled(client):
            return "off"
        if not client.set(keys.aof_rewrite, int(time.time() * 1000), nx=True,
                          ex=AOF_REWRITE_EVERY_S):  # fmt: skip
            return "recent"
        if clustered(client):  # every node by name: redis-py 8 drops a node flag here
            client.execute_command("BGREWRITEAOF", target_nodes=client.get_nodes())
        else:
            client.bgrewriteaof()
        return "started"
    except Exception as exc:  # the erase is done: a rewrite that cannot start is said, not raised
        if "already in progress" in str(exc):  # it started after the erase? not known
            client.delete(keys.aof_rewrite)
            return "recent"
        log.warning("could not start an AOF rewrite after the erase (%s): the erased values "
                    "stay in Redis's append-only file until it rewrites it", exc)  # fmt: skip
        return "refused"


async def rewrite_aof_async(client, keys: Keys) -> str:
    """``rewrite_aof`` for a worker's asyncio client (the retention erase), at most once
    every RETENTION_AOF_REWRITE_EVERY_S per namespace."""
    try:
        if clustered(client):
            infos = await client.info("persistence", target_nodes=client.get_nodes())
            # one node answers with its info, several with one per node
            infos = [infos] if "aof_enabled" in infos else list(infos.values())
        else:
            infos = [await client.info("persistence")]
        if not any(int(info.get("aof_enabled", 0)) for info in infos):
            return "off"
        if not await client.set(keys.aof_rewrite_retention, int(time.time() * 1000), nx=True,
                                ex=RETENTION_AOF_REWRITE_EVERY_S):  # fmt: skip
            return "recent"
        if clustered(client):
            await client.execute_command("BGREWRITEAOF", target_nodes=client.get_nodes())
        else:
            await client.bgrewriteaof()
        return "started"
    except Exception as exc:  # the erase is done: said, not raised (the tick would redo it)
        if "already in progress" in str(exc):
            await client.delete(keys.aof_rewrite_retention)
            return "recent"
        log.warning("could not start an AOF rewrite after the retention erase (%s): the "
                    "erased values stay in Redis's append-only file until it rewrites it",
                    exc)  # fmt: skip
        return "refused"


async def namespace_salt_async(client, keys: Keys) -> bytes:
    """``namespace_salt`` for a worker's asyncio client."""
    await client.hsetnx(keys.erased, SALT, secrets.token_hex(16))
    return await client.hget(keys.erased, SALT)


async def record_erased_async(client, keys: Keys, customer_ids) -> None:
    """``record_erased`` for a worker's asyncio client (the retention erase)."""
    salt = await namespace_salt_async(client, keys)
    now_ms = int(time.time() * 1000)
    fields = {erased_field(salt, cid): now_ms for cid in customer_ids}
    if fields:
        await client.hset(keys.erased, mapping=fields)


def _aof_enabled(client: redis.Redis) -> bool:
    from streams.state.redis_client import info_per_server

    return any(int(info.get("aof_enabled", 0)) for info in info_per_server(client, "persistence"))


@dataclass(frozen=True)
class Erased:
    customer_id: str
    had_state: bool
    unsent_events: int  # output events still in its outbox, now never sent

    def to_json(self) -> dict:
        return {"customer_id": self.customer_id, "had_state": self.had_state,
                "unsent_events": self.unsent_events}  # fmt: skip


def followups(keys: Keys, customer_id: str, stored: bytes | None):
    """What is left once erase_customer.lua deleted a customer's state (and its
    contribution to the facts): the due_set.lua calls that take it out of the due index,
    and the audience indexes it is a member of (the outbox index entry is a ZREM of
    its shard of ``keys.outbox_index``)."""
    try:
        state = state_codec.decode(customer_id, stored) if stored else None
    except state_codec.CorruptState:  # the caller asks every defined audience as well
        state = None
    audiences = [keys.audience_members(aid) for aid in (state.audiences if state else ())]
    return due_index.set_calls(keys, {}, [customer_id]), audiences


# A worker writing the customer between the read and the delete makes the erase read it
# again; one that keeps winning (events for the customer arriving without pause) for
# this many tries makes the erase fail, saying so.
_ERASE_TRIES = 20


def _written_version(raw: bytes) -> int:
    """The version in front of a stored value as the erase script reads it: 0 when there
    is none."""
    try:
        return state_codec.version_of(raw)
    except state_codec.CorruptState:
        return 0


class Eraser:
    """``rtba erase`` and the API's: one synchronous client's scripts, registered once.
    ``days``: the namespace's calendar (RTBA_TIMEZONE), which its writers' facts used."""

    def __init__(self, client: redis.Redis, keys: Keys, days: Days = UTC_DAYS):
        self.client, self.keys, self.days = client, keys, days
        self._erase = client.register_script(lua("erase_customer", "add_counts", "add_members"))
        self._due_set = client.register_script(lua("due_set"))

    def _delete(self, customer_id: str) -> tuple[bytes | None, int]:
        """Delete the state and take its contribution out of the facts, in one script
        call checked against the version read (erase_customer.lua): the stored value and
        the number of outbox entries deleted unsent."""
        names = script_keys(self.keys, customer_id, clustered(self.client))
        for _ in range(_ERASE_TRIES):
            raw = self.client.get(names[0])
            try:
                state = state_codec.decode(customer_id, raw)  # version 0 when there is none
                version = state.version
                taken = facts.delta(facts.stored_contribution(state, self.days), None)
            except state_codec.CorruptState:  # unreadable: its counts are not known, but
                # its index entries name it: found by a scan, taken out in the same call
                version = _written_version(raw)  # erased only if still the one read
                found = self._entries_naming(names[4], customer_id)
                taken = {facts.INDEX + entry: -1 for entry in found}
            args = [version, *facts.script_args(taken)]
            stored, unsent = self._erase(keys=names, args=args)
            if int(unsent) >= 0:
                return stored, int(unsent)
        # an ordinary case (the customer's events keep coming): one line, not a traceback
        raise RtbaError(f"{customer_id} was written {_ERASE_TRIES} times while being "
                        "erased; erase it again")  # fmt: skip

    def _entries_naming(self, index: str, customer_id: str) -> list[str]:
        """The index entries of a customer whose state cannot be read (so not known one by
        one): a scan of its index shard, which only this rare case pays (no id may
        outlive its erase)."""
        pattern = "*:" + "".join("\\" + ch if ch in "*?[]\\" else ch for ch in customer_id)
        found = [m.decode() for m, _ in self.client.zscan_iter(index, match=pattern, count=1000)]
        # "*:bob" also matches "x:bob"'s entries: an entry's id is what follows its fields
        return [entry for entry in found if facts.entry_id(entry) == customer_id]

    def erase(self, customer_id: str) -> Erased:
        keys = self.keys
        stored, unsent = self._delete(customer_id)
        due_calls, audiences = followups(keys, customer_id, stored)
        # A first erase that died after the state went left no record of the audiences:
        # every defined one is asked too.
        defined = self.client.hget(keys.audiences, "json")
        if defined:
            ids = AudienceSet.model_validate_json(defined).ids
            audiences = sorted(set(audiences) | {keys.audience_members(a) for a in ids})
        for name in audiences:
            self.client.zrem(name, customer_id)
        for names, args in due_calls:
            self._due_set(keys=names, args=args)
        self.client.zrem(keys.outbox_index(due_index.customer_shard(customer_id)), customer_id)
        return Erased(customer_id, bool(stored), int(unsent))

    def erase_all(self, customer_ids: list[str]) -> list[Erased]:
        """Erase each customer, then take them all out of the stored cluster learner (one
        read and write of it, however many) and remember them as erased."""
        erased = [self.erase(cid) for cid in customer_ids]
        forget_in_learner(self.client, self.keys, customer_ids)
        record_erased(self.client, self.keys, customer_ids)
        return erased

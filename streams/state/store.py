"""Customer state in Redis: the worker's async store and the CLI's read helpers (the
state value itself is streams.state.state_codec's).

A worker's batch costs two round trips on a single Redis: one pipelined read of the
customers it touches, one pipelined write (script calls of up to WRITE_CHUNK customers
each, every customer under its own version check, plus due times, counters and the
watermark). On a Redis Cluster the write is phased (streams.state.redis_client.Batch): no
script runs inside a cluster pipeline, and a call's customers share one slot.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import redis
import redis.asyncio as aioredis
from redis.crc import key_slot

from online_models.churn_risk import ChurnScorer
from online_models.clusters import ClusterSnapshot
from online_models.customer import CustomerState
from online_models.days import UTC_DAYS, Days
from streams.audiences.definitions import AudienceSet
from streams.processing.outbox import Entry, by_customer
from streams.state import due_cells, due_index, facts, redis_client, state_codec, sweep
from streams.state.keys import DUE_SHARDS, STATS_SHARDS, Keys, slot_tag
from streams.state.redis_client import Batch, connect_async


def lua(name: str, *functions: str) -> str:
    """A script's text, with the function files it calls (e.g. ``add_counts``) in front:
    a script cannot load another, and one definition serves every script that counts."""
    folder = resources.files("streams.state").joinpath("lua")
    return "".join(folder.joinpath(f"{part}.lua").read_text() for part in (*functions, name))


def script_keys(keys: Keys, customer_id: str, clustered: bool) -> list[str]:
    """A customer's state, outbox, and its shards of the facts, day cells and index (one
    slot): the KEYS of apply_customers.lua's customer block and of erase_customer.lua."""
    shard = facts.shard_of(customer_id, clustered)
    return [keys.customer(customer_id), keys.outbox(customer_id), keys.facts(shard),
            keys.cells(shard), keys.index(shard)]  # fmt: skip


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class Marks:
    """Event-time marks, epoch ms: one per source partition, and the max event time seen.

    The watermark is the least partition mark (as in Flink): a partition the workers
    have fallen behind on holds time back, so no customer is re-scored as of a time
    whose events have not all been applied. Partitions that never carried a record
    do not count (producers' heartbeats go to every partition, see producers.kafka).
    """

    partitions: dict[int, int]
    max_event_ts: int | None

    def watermark(self) -> int | None:
        return min(self.partitions.values()) if self.partitions else None

    @classmethod
    def parse(cls, raw: dict) -> Marks:
        fields = {_text(k): int(_text(v)) for k, v in raw.items()}
        parts = {int(k[2:]): v for k, v in fields.items() if k.startswith("p:")}
        return cls(parts, fields.get("max_event_ts"))


@dataclass
class SaveResult:
    conflicts: list[str]


# Customers per write script call: bounds how long one call holds Redis.
WRITE_CHUNK = 200

# Due-index buckets per pipelined read when walking every customer.
_BUCKETS_PER_READ = 1024


def _write_args(state: CustomerState, entries: list[Entry], fact_delta: dict[str, int]) -> list:
    """One customer's block of apply_customers.lua's arguments."""
    args: list = [state.version, state_codec.encode(state), len(entries)]
    for entry in entries:
        args += [entry.event_id, entry.encode()]
    return args + _fact_args(fact_delta)


def _fact_args(fact_delta: dict[str, int]) -> list:
    """f and f field/delta pairs, then g and g day-cell/delta pairs (the scripts' facts
    and cells arguments: facts.script_args)."""
    return facts.script_args(fact_delta)


def decode_states(needed: dict[str, bool], raw: list) -> dict[str, CustomerState]:
    """The states of ``needed``'s customers (in its order) from ``load_raw``'s values, their
    orders parsed where ``needed`` says True. Pure CPU (~5 µs a customer without orders,
    benchmarks.population's templates): the sweep runs it in a thread."""
    return {cid: state_codec.decode(cid, value, with_orders)
            for (cid, with_orders), value in zip(needed.items(), raw, strict=True)}  # fmt: skip


class StateStore:
    """The worker's view of Redis (asyncio client, scripts registered once)."""

    def __init__(self, client: aioredis.Redis, keys: Keys):
        self.client = client
        self.keys = keys
        # The facts' shard keys need the slot-tag table (~0.3 s to build): here, before the
        # event loop serves events, not inside the first write.
        slot_tag(0)
        self._apply = client.register_script(lua("apply_customers", "add_counts", "add_members"))
        self._advance = client.register_script(lua("advance_watermark"))
        self._outbox_ack = client.register_script(lua("outbox_ack"))
        self._outbox_unindex = client.register_script(lua("outbox_unindex"))
        self._topic_epoch = client.register_script(lua("topic_epoch"))
        self._due_set = client.register_script(lua("due_set"))
        self._due_until = client.register_script(lua("due_until"))
        self._erase = client.register_script(lua("erase_customer", "add_counts", "add_members"))
        self._stats_turn = 0

    @classmethod
    def from_url(cls, url: str, keys: Keys, **options) -> StateStore:
        return cls(connect_async(url, **options), keys)

    async def load(
        self, needed: dict[str, bool]
    ) -> tuple[dict[str, CustomerState], tuple[int, int, int, int]]:
        """Each customer's state, its orders parsed where asked for (True: a purchase or
        refund in the batch), and the versions of the stored churn model, RFM edges,
        cluster snapshot and audience definitions (one round trip)."""
        raw, model_versions = await self.load_raw(list(needed))
        return decode_states(needed, raw), model_versions

    async def load_raw(self, customer_ids: list[str]) -> tuple[list, tuple[int, int, int, int]]:
        """``load`` without decoding: each customer's stored value (None: no state), in
        order, for a caller that decodes many off the event loop (``decode_states``)."""
        # One MGET for every state on a single server: a reply per key cost more in
        # redis-py's pipeline than the read itself. A Cluster takes a GET per key (an MGET
        # must stay in one slot).
        one_read = bool(customer_ids) and not redis_client.clustered(self.client)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hget(self.keys.churn_model, "version")
            pipe.hget(self.keys.rfm_model, "version")
            pipe.hget(self.keys.cluster_model, "version")
            pipe.hget(self.keys.audiences, "version")
            if one_read:
                pipe.mget([self.keys.customer(cid) for cid in customer_ids])
            else:
                for cid in customer_ids:
                    pipe.get(self.keys.customer(cid))
            replies = await pipe.execute()
        model_versions = tuple(int(v or 0) for v in replies[:4])
        return (replies[4] if one_read else replies[4:]), model_versions

    async def topic_epoch(self, topic_id: str | None) -> tuple[int, bool]:
        """The events topic's epoch for the id seen now (None: the stored epoch), and
        whether this call raised it."""
        args = [topic_id or ""]
        epoch, changed = await self._topic_epoch(keys=[self.keys.topic], args=args)
        return int(epoch), bool(changed)

    async def rfm_edges(self) -> tuple[dict | None, int]:
        version, text = await self.client.hmget(self.keys.rfm_model, "version", "json")
        return (json.loads(text)["edges"] if text else None), int(version or 0)

    async def cluster_snapshot(self) -> ClusterSnapshot | None:
        text = await self.client.hget(self.keys.cluster_model, "json")
        return ClusterSnapshot.from_dict(json.loads(text)) if text else None

    async def audiences(self) -> AudienceSet | None:
        text = await self.client.hget(self.keys.audiences, "json")
        return None if text is None else AudienceSet.model_validate_json(text)

    async def sweep_position(self, key: str | None = None) -> dict[str, int]:
        """A leader sweep's progress: the cluster sweep's unless ``key`` names another."""
        raw = await self.client.hgetall(key or self.keys.cluster_sweep)
        return {_text(k): int(v) for k, v in raw.items()}

    async def set_sweep_position(self, position: dict[str, int], key: str | None = None) -> None:
        await self.client.hset(key or self.keys.cluster_sweep, mapping=position)

    async def cluster_sweep_behind(self) -> bool:
        """Whether the leader's cluster sweep has yet to finish a pass over the published
        snapshot (its ``swept`` version below the snapshot's): the trainer holds its next
        snapshot until it has (ClusterTrainer.train). A snapshot workers cannot use (over
        another feature set: an older rtba's) is never swept, so it holds nothing."""
        version, text = await self.client.hmget(self.keys.cluster_model, "version", "json")
        swept = await self.client.hget(self.keys.cluster_sweep, "swept")
        if int(swept or 0) >= int(version or 0):
            return False
        return text is not None and ClusterSnapshot.from_dict(json.loads(text)) is not None

    async def customer_count(self) -> int:
        """How many customers have state (the due index's size)."""
        total = 0
        for names in _bucket_chunks(self.keys):
            async with self.client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.zcard(name)
                total += sum(await pipe.execute())
        return total

    async def scan_customers(
        self, cursor: sweep.Cursor, count: int
    ) -> tuple[sweep.Cursor, list[str]]:
        """At most ``count`` customers of the due index from ``cursor`` on (a tie of order
        keys is taken whole: streams.state.sweep), and the cursor after them;
        ``sweep.START`` once the last bucket was read. Buckets are read 1, 2, 4, ... up to
        _BUCKETS_PER_READ a round trip: ~61 customers a bucket at 1M, under one at 10k."""
        ids: list[str] = []
        width = 1
        while cursor[0] < due_index.BUCKETS and len(ids) < count:
            first = cursor[0]
            upto = min(first + width, due_index.BUCKETS)
            async with self.client.pipeline(transaction=False) as pipe:
                for bucket in range(first, upto):
                    pipe.zrange(self.keys.due_bucket(bucket), 0, -1)
                buckets = [[_text(m) for m in members] for members in await pipe.execute()]
            cursor, taken = sweep.take(cursor, count - len(ids), buckets)
            ids += taken
            width = min(2 * width, _BUCKETS_PER_READ)
        return (sweep.START if cursor[0] >= due_index.BUCKETS else cursor), ids

    async def cluster_learner(self) -> tuple[bytes | None, bytes | None]:
        """The stored learner (JSON: StableClusterer.to_dict) and the snapshot's JSON, both
        unread: the caller parses them as data."""
        return tuple(await self.client.hmget(self.keys.cluster_model, "learner", "json"))

    async def publish_clusters(self, snapshot: ClusterSnapshot | None, learner: bytes) -> None:
        """The snapshot and the learner that made it, in one single-key write (the learner
        alone when ``snapshot`` is None: an erase took a customer out of its sample)."""
        mapping: dict = {"learner": learner}
        if snapshot is not None:
            mapping["version"] = snapshot.version
            fitted = {**snapshot.to_dict(), "fitted_at_ms": int(time.time() * 1000)}
            mapping["json"] = json.dumps(fitted)
        await self.client.hset(self.keys.cluster_model, mapping=mapping)

    async def churn_model(self) -> ChurnScorer | None:
        version, text = await self.client.hmget(self.keys.churn_model, "version", "json")
        return None if text is None else ChurnScorer.from_dict(json.loads(text), int(version))

    async def due_customers(self, until_ms: int, limit: int,
                            shards: Sequence[int] | None = None) -> list[str]:  # fmt: skip
        """Up to ``limit`` customers due by ``until_ms`` in the given due-index shards
        (default: all). The shards' summaries name the buckets with someone due (each at
        least one), earliest first; one script call per shard reads them.

        Each summary is asked for its share of ``limit`` buckets, and only the shards that
        filled their share are asked again for the rest: asking each for ``limit`` read
        64 x 50 summary entries for a slice of 50 (6.8 ms of CPU, 136 µs a customer)."""
        shards = list(range(DUE_SHARDS) if shards is None else shards)
        if not shards or limit <= 0:
            return []
        share = -(-limit // len(shards))
        found = await self._due_buckets(until_ms, shards, 0, share)
        full = [s for s in shards if len(found[s]) == share]
        held = sum(len(buckets) for buckets in found.values())
        if held < limit and full:
            more = await self._due_buckets(until_ms, full, share, limit - held)
            for shard in full:
                found[shard] += more[shard]
        earliest = sorted((least, bucket) for buckets in found.values()
                          for bucket, least in buckets)[:limit]  # fmt: skip
        by_shard: dict[int, list[str]] = {}
        for _, bucket in earliest:
            by_shard.setdefault(due_index.shard_of(bucket), []).append(self.keys.due_bucket(bucket))
        batch = Batch()
        for names in by_shard.values():
            batch.script(self._due_until, names, [until_ms, limit])
        replies = await batch.run(self.client)
        return [_text(m) for members in replies for m in members][:limit]

    async def _due_buckets(self, until_ms: int, shards: list[int], start: int,
                           count: int) -> dict[int, list[tuple[int, float]]]:  # fmt: skip
        """Per shard, its summary's (bucket, least due time) entries due by ``until_ms``,
        ``count`` of them from the ``start``-th (one pipelined read)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for shard in shards:
                pipe.zrangebyscore(self.keys.due_summary(shard), "-inf", until_ms, start, count,
                                   withscores=True)  # fmt: skip
            replies = await pipe.execute()
        return {shard: [(int(b), least) for b, least in reply]
                for shard, reply in zip(shards, replies, strict=True)}  # fmt: skip

    async def wake_due_cells(self, until_ms: int, limit: int) -> tuple[int, int]:
        """Mark due at ``until_ms`` (never later than they are: ZADD LT) the members of up
        to ``limit`` due-cells entries that fell due by then (streams.state.due_cells),
        then drop those entries; the re-scoring that follows gives each its exact due
        time. Returns (entries taken, customers marked)."""
        names = await self.client.zrangebyscore(self.keys.due_cells, "-inf", until_ms, 0, limit)
        if not names:
            return 0, 0
        cells = [due_cells.parse(name) for name in names]
        async with self.client.pipeline(transaction=False) as pipe:
            for shard, cell in cells:
                pipe.zrangebylex(self.keys.index(shard), *due_cells.member_range(cell))
            replies = await pipe.execute()
        ids = [_text(m)[len(due_cells.member_prefix(cell)) :]
               for (_, cell), members in zip(cells, replies, strict=True)
               for m in members]  # fmt: skip
        for keys, args in due_index.set_calls(self.keys, dict.fromkeys(ids, until_ms), mode="lt"):
            await self._due_set(keys=keys, args=args)
        # Dropped once its members are due: a crash before this wakes them again (idle).
        # A model published meanwhile only lowered the entry (ZADD LT), to a time already
        # due, and its members are re-scored after this under the newest model.
        await self.client.zrem(self.keys.due_cells, *names)
        return len(names), len(ids)

    def _stats_key(self) -> str:
        """The counters' shard for the next batch or tick's counts: each in turn."""
        self._stats_turn = (self._stats_turn + 1) % STATS_SHARDS
        return self.keys.stats_shard(self._stats_turn)

    async def count(self, counters: dict[str, int]) -> None:
        key = self._stats_key()
        async with self.client.pipeline(transaction=False) as pipe:
            for name, n in counters.items():
                pipe.hincrby(key, name, n)
            await pipe.execute()

    async def marks(self) -> Marks:
        return Marks.parse(await self.client.hgetall(self.keys.watermark))

    async def save(
        self,
        states: dict[str, CustomerState],
        due: dict[str, int | None],
        counters: dict[str, int],
        marks: dict[int, int],
        max_event_ts: int | None,
        fact_deltas: dict[str, dict[str, int]] | None = None,
        outbox: list[Entry] = (),
        forget: list[str] = (),
        memberships: dict[str, dict[str, int | None]] | None = None,
    ) -> SaveResult:
        """Write changed states with their outbox entries, their next due times (None:
        never, as things stand), counters and event-time marks in one round trip; take the
        ``forget`` ids (due, but without state) out of the due index. Each customer's
        ``fact_deltas`` (BatchOutcome.fact_deltas: its contribution to the population
        facts as written minus as read) are applied in its write's script call, only if
        that write wins its version check (streams.state.facts). A due time written
        for a customer whose write then conflicts is harmless: the winner's write (or the
        next tick) sets it again, and a spurious wake-up changes nothing.

        ``memberships`` (BatchOutcome.memberships) go to the audience indexes once the
        states are written, for the customers whose write won only: a second round trip,
        for batches that moved someone in or out of an audience. A crash in between
        leaves those customers' outbox entries unsent, and the relay that sends them
        brings the indexes to the stored states (sync_memberships)."""
        entries = by_customer(outbox)
        # Customers whose outbox gains entries are indexed before their write (see
        # outbox_unindex.lua): one ZADD ahead of every script call.
        indexed: dict[int, dict[str, int]] = {}
        for cid in states:
            if cid in entries:
                shard = due_index.customer_shard(cid)
                indexed.setdefault(shard, {})[cid] = states[cid].version + 1
        batch = Batch()
        for shard, members in indexed.items():
            batch.command("zadd", self.keys.outbox_index(shard), members, gt=True)
        groups = self._write_groups(list(states))
        fact_deltas = fact_deltas or {}
        for group in groups:
            keys, args = [], []
            for cid in group:
                keys += self._customer_keys(cid)
                args += _write_args(states[cid], entries.get(cid, []), fact_deltas.get(cid, {}))
            batch.script(self._apply, keys, args)
        # None: nothing due, but still one of the namespace's customers
        across = not redis_client.clustered(self.client)  # one call on a single server
        for names, args in due_index.set_calls(self.keys, due, forget or (), across_shards=across):
            batch.script(self._due_set, names, args)
        stats = self._stats_key()
        for name, n in counters.items():
            if n:
                batch.command("hincrby", stats, name, n)
        raise_marks = [(f"p:{p}", ts) for p, ts in marks.items()]
        if max_event_ts is not None:
            raise_marks.append(("max_event_ts", max_event_ts))
        if raise_marks:
            args = [v for pair in raise_marks for v in pair]
            batch.script(self._advance, [self.keys.watermark], args)
        replies = await batch.run(self.client)
        calls = replies[len(indexed) :][: len(groups)]
        written = zip(itertools.chain(*groups), itertools.chain(*calls), strict=True)
        conflicts = [cid for cid, version in written if int(version) < 0]
        if memberships:
            lost = set(conflicts)
            await self._index_members({c: m for c, m in memberships.items() if c not in lost})
        return SaveResult(conflicts)

    async def _index_members(self, memberships: dict[str, dict[str, int | None]]) -> None:
        batch = Batch()
        for cid, audiences in memberships.items():
            for audience_id, entered in audiences.items():
                name = self.keys.audience_members(audience_id)
                if entered is None:
                    batch.command("zrem", name, cid)
                else:
                    batch.command("zadd", name, {cid: entered})
        await batch.run(self.client)

    async def sync_memberships(self, audiences: dict[str, set[str]]) -> None:
        """Bring the audience indexes of these customers (id -> audience ids) to what
        their stored states say."""
        if not audiences:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for cid in audiences:
                pipe.get(self.keys.customer(cid))
            raws = await pipe.execute()
        memberships = {}
        for (cid, named), raw in zip(audiences.items(), raws, strict=True):
            held = state_codec.decode(cid, raw).audiences if raw else {}
            memberships[cid] = {aid: held.get(aid) for aid in named | set(held)}
        await self._index_members(memberships)

    async def erase(self, expired: dict[str, int], days: Days = UTC_DAYS) -> int:
        """Erase customers past their retention, each unless written since the version
        given (streams.state.erase has what erasing covers); returns how many went. Each
        one's contribution leaves the population facts in the script call that deletes its
        state (``days``: the namespace's calendar, as its writes used)."""
        from streams import audit
        from streams.state.erase import (
            followups,
            forget_in_learner_async,
            record_erased_async,
            rewrite_aof_async,
        )

        # The states as they are now: one whose version moved on is kept anyway (below),
        # so the contribution taken out is always that of the state deleted.
        read, _ = await self.load(dict.fromkeys(expired, False))
        batch = Batch()
        for cid, version in expired.items():
            state = read[cid]
            gone = facts.stored_contribution(state, days) if state.version == version else None
            args = [version, *_fact_args(facts.delta(gone, None))]
            batch.script(self._erase, self._customer_keys(cid), args)
        replies = await batch.run(self.client)
        cleanup = Batch()
        erased: list[str] = []
        for cid, (stored, unsent) in zip(expired, replies, strict=True):
            if int(unsent) < 0:  # an event brought the customer back: kept
                continue
            erased.append(cid)
            due_calls, audiences = followups(self.keys, cid, stored)
            for name in audiences:
                cleanup.command("zrem", name, cid)
            for names, args in due_calls:
                cleanup.script(self._due_set, names, args)
            cleanup.command("zrem", self.keys.outbox_index(due_index.customer_shard(cid)), cid)
        if erased:
            cleanup.command("hincrby", self._stats_key(), "retention_erased", len(erased))
        await cleanup.run(self.client)
        if erased:  # out of the stored learner; a re-drive skips them; the AOF forgets them
            await forget_in_learner_async(self.client, self.keys, erased)
            await record_erased_async(self.client, self.keys, erased)
            await rewrite_aof_async(self.client, self.keys)
            # every erasure is audited (docs/security.md), the retention's as `retention`
            await audit.record_async(self.client, self.keys.namespace, "retention", erased,
                                     audit.outcome({"had_state": True}))  # fmt: skip
        return len(erased)

    def _customer_keys(self, cid: str) -> list[str]:
        return script_keys(self.keys, cid, redis_client.clustered(self.client))

    def _write_groups(self, customer_ids: list[str]) -> list[list[str]]:
        """Customers written by one script call each: up to WRITE_CHUNK on a single server;
        on a Cluster, those of one slot (one call's keys must share it)."""
        if redis_client.clustered(self.client):
            by_slot: dict[int, list[str]] = {}
            for cid in customer_ids:
                by_slot.setdefault(key_slot(self.keys.customer(cid).encode()), []).append(cid)
            slots = by_slot.values()
        else:
            slots = [customer_ids]
        return [
            ids[at : at + WRITE_CHUNK] for ids in slots for at in range(0, len(ids), WRITE_CHUNK)
        ]

    async def outbox_done(self, entries: list[Entry]) -> None:
        """Forget entries the broker acknowledged; unindex customers left with none."""
        mine = by_customer(entries)
        if not mine:
            return
        batch = Batch()
        for cid, items in mine.items():
            batch.script(self._outbox_ack, [self.keys.outbox(cid)], [e.event_id for e in items])
        left = await batch.run(self.client)
        empty = {
            cid: max(e.version for e in items)
            for (cid, items), n in zip(mine.items(), left, strict=True)
            if int(n) == 0
        }
        await self.unindex(empty)

    async def unindex(self, bounds: dict[str, int]) -> None:
        """Take customers out of the outbox index, each unless a write newer than its
        bound indexed it again (outbox_unindex.lua)."""
        if not bounds:
            return
        batch = Batch()
        for cid, version in bounds.items():
            index = self.keys.outbox_index(due_index.customer_shard(cid))
            batch.script(self._outbox_unindex, [index], [cid, version])
        await batch.run(self.client)

    async def pending_outbox(self, limit: int) -> dict[str, Pending]:
        """Up to ``limit`` indexed customers: the index score, the state version and the
        outbox entries of each (oldest write first within a customer: its events in
        sequence order). The version is read first, so the entries read after it include
        those of every write up to that version. The index's shards take turns, so a
        backlog in one does not hold up the others."""
        async with self.client.pipeline(transaction=False) as pipe:
            for shard in range(DUE_SHARDS):
                pipe.zrange(self.keys.outbox_index(shard), 0, limit - 1, withscores=True)
            shards = await pipe.execute()
        turns = itertools.chain.from_iterable(itertools.zip_longest(*shards))
        indexed = list(itertools.islice((entry for entry in turns if entry), limit))
        if not indexed:
            return {}
        async with self.client.pipeline(transaction=False) as pipe:
            for member, _ in indexed:
                cid = _text(member)
                pipe.get(self.keys.customer(cid))
                pipe.hgetall(self.keys.outbox(cid))
            raws = await pipe.execute()
        out = {}
        for i, (member, score) in enumerate(indexed):
            cid = _text(member)
            version, raw = raws[2 * i], raws[2 * i + 1]
            items = [Entry.decode(cid, _text(k), _text(v)) for k, v in raw.items()]
            items.sort(key=lambda e: e.seq)
            out[cid] = Pending(int(score), state_codec.version_of(version), items)
        return out


@dataclass(frozen=True)
class Pending:
    """An outbox-indexed customer as the relay found it."""

    score: int  # the version of the latest write that indexed the customer
    version: int  # the customer's state version, read before the entries
    entries: list[Entry]

    @property
    def settled(self) -> bool:
        """Nothing to relay, and the write that indexed the customer has happened (or lost
        its version check to one that has): its entries, if any, were among those read.
        A writer indexes before its script call, so an empty outbox alone can mean a
        write still in flight; unindexing then would strand its entries if the writer
        crashed before its send."""
        return not self.entries and self.version >= self.score


# -- read helpers for the CLI (synchronous client) ---------------------------


def connect(url: str, **options) -> redis.Redis:
    """The CLI's client: a single server or a Cluster (streams.state.redis_client)."""
    return redis_client.connect(url, **options)


def durability_warning(client: redis.Redis) -> str | None:
    """What a Redis crash could lose under this server's persistence settings, or None
    when every acknowledged write is on disk (appendonly yes, appendfsync always). Servers
    that refuse CONFIG GET (some managed services) are not second-guessed."""
    try:
        config = client.config_get("append*")
    except redis.exceptions.ResponseError:
        return None
    appendonly, fsync = config.get("appendonly"), config.get("appendfsync")
    if appendonly != "yes":
        return ("Redis has appendonly off: a Redis crash loses every write since its last "
                "snapshot, including events whose Kafka offsets are committed")  # fmt: skip
    if fsync != "always":
        return (f"Redis has appendfsync {fsync}: a Redis crash can lose up to a second of "
                "writes whose Kafka offsets are committed (set appendfsync always; "
                "docs/decisions.md)")  # fmt: skip
    return None


def read_marks(client: redis.Redis, keys: Keys) -> Marks:
    return Marks.parse(client.hgetall(keys.watermark))


def read_states(client: redis.Redis, keys: Keys, customer_ids: list[str]) -> list[CustomerState]:
    """States of the given customers, in the given order (absent ones are skipped): an
    MGET a thousand on a single server (a GET each in a pipeline cost 47 ms of redis-py's
    packing for 1,081 states), a pipelined GET each on a Cluster (an MGET must stay in
    one slot)."""
    one_read = not redis_client.clustered(client)
    out = []
    for start in range(0, len(customer_ids), 1000):
        chunk = customer_ids[start : start + 1000]
        if one_read:
            raws = client.mget([keys.customer(cid) for cid in chunk])
        else:
            with client.pipeline(transaction=False) as pipe:
                for cid in chunk:
                    pipe.get(keys.customer(cid))
                raws = pipe.execute()
        out += [state_codec.decode(cid, raw) for cid, raw in zip(chunk, raws, strict=True) if raw]
    return out


def all_customer_ids(client: redis.Redis, keys: Keys) -> list[str]:
    """Every customer with state (the due index's members), sorted."""
    members = _every_bucket(client, keys, lambda pipe, name: pipe.zrange(name, 0, -1))
    return sorted(_text(m) for bucket in members for m in bucket)


def customer_pages(client: redis.Redis, keys: Keys):
    """Every customer with state (the due index's members), a page of due-index buckets
    at a time (_BUCKETS_PER_READ, one pipelined read each): a walk in bounded memory."""
    for names in _bucket_chunks(keys):
        with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.zrange(name, 0, -1)
            yield [_text(m) for bucket in pipe.execute() for m in bucket]


def customer_count(client: redis.Redis, keys: Keys) -> int:
    """How many customers have state (the due index's size)."""
    return sum(_every_bucket(client, keys, lambda pipe, name: pipe.zcard(name)))


def _every_bucket(client: redis.Redis, keys: Keys, command) -> list:
    """``command(pipe, bucket key)``'s reply for every due-index bucket, pipelined in
    chunks of _BUCKETS_PER_READ."""
    replies: list = []
    for names in _bucket_chunks(keys):
        with client.pipeline(transaction=False) as pipe:
            for name in names:
                command(pipe, name)
            replies += pipe.execute()
    return replies


def _bucket_chunks(keys: Keys):
    """Every due-index bucket's key, in lists of _BUCKETS_PER_READ (one pipeline each)."""
    for at in range(0, due_index.BUCKETS, _BUCKETS_PER_READ):
        yield [
            keys.due_bucket(b) for b in range(at, min(at + _BUCKETS_PER_READ, due_index.BUCKETS))
        ]


def write_due(client: redis.Redis, keys: Keys, due: dict[str, int | None],
              mode: str = "set") -> None:  # fmt: skip
    """Set customers' due times from a synchronous client (``mode`` "lt": only earlier)."""
    script = client.register_script(lua("due_set"))
    for names, args in due_index.set_calls(keys, due, mode=mode):
        script(keys=names, args=args)


def reshard_indexes(client: redis.Redis, keys: Keys) -> int:
    """Move the due index and the outbox index kept by an rtba from before their shards
    (Keys.unsharded_due, Keys.unsharded_outbox_index) into them, a piece at a time;
    returns how many entries moved (0: nothing to move, two reads). A due time is added
    only where the shards lack the customer (one written since, by this rtba, is the
    newer); an outbox-index score is raised to the old one (ZADD GT), as writers do. Each
    piece is dropped from the old keys once moved, so a crash part-way leaves the rest
    for the next start. `rtba worker` runs it at start: stop every older worker first,
    or it goes on writing the old keys."""
    moved = 0
    while indexed := client.zrange(keys.unsharded_outbox_index, 0, 999, withscores=True):
        by_shard: dict[int, dict[str, float]] = {}
        for member, score in indexed:
            by_shard.setdefault(due_index.customer_shard(_text(member)), {})[member] = score
        for shard, members in by_shard.items():
            client.zadd(keys.outbox_index(shard), members, gt=True)
        client.zrem(keys.unsharded_outbox_index, *(member for member, _ in indexed))
        moved += len(indexed)
    script = client.register_script(lua("due_set"))
    while buckets := client.zrange(keys.unsharded_due, 0, 99):
        for bucket in buckets:
            name = f"{keys.unsharded_due}:{_text(bucket)}"
            held = client.zrange(name, 0, -1, withscores=True)
            due = {_text(m): None if score == float("inf") else int(score) for m, score in held}
            for names, args in due_index.set_calls(keys, due, mode="nx"):
                script(keys=names, args=args)
            client.delete(name)
            client.zrem(keys.unsharded_due, bucket)
            moved += len(held)
    return moved


def read_churn_model(client: redis.Redis, keys: Keys) -> ChurnScorer | None:
    version, text = client.hmget(keys.churn_model, "version", "json")
    return None if text is None else ChurnScorer.from_dict(json.loads(text), int(version))


def publish_churn_model(client: redis.Redis, keys: Keys, scorer: ChurnScorer, meta: dict) -> int:
    """Store a newly fitted model as the next version (one key, one transaction)."""
    with client.pipeline(transaction=True) as pipe:
        pipe.hincrby(keys.churn_model, "version", 1)
        pipe.hset(keys.churn_model, "json", json.dumps({**scorer.to_dict(), **meta}))
        pipe.hdel(keys.churn_model, "last_error")
        version, *_ = pipe.execute()
    return int(version)


def record_refit_failure(client: redis.Redis, keys: Keys, reason: str, at_ms: int,
                         kind: str = "skipped") -> None:  # fmt: skip
    """Why the latest churn refit did not run ("skipped") or its fit was not put in force
    ("rejected"); cleared by the next published fit. Counted in the stats as
    ``refit_<kind>:churn`` (rtba stats, rtba_stats_total in /metrics)."""
    error = {"reason": reason, "at_ms": at_ms, "kind": kind}
    client.hset(keys.churn_model, "last_error", json.dumps(error))
    client.hincrby(keys.stats, f"refit_{kind}:churn", 1)


def model_status(client: redis.Redis, keys: Keys, now_ms: int) -> dict:
    """Version, fit time and age (wall clock) of each stored model, and the last refit error."""
    out = {}
    for name, key in (("churn", keys.churn_model), ("rfm", keys.rfm_model),
                      ("clusters", keys.cluster_model)):  # fmt: skip
        version, text, error = client.hmget(key, "version", "json", "last_error")
        meta = json.loads(text) if text else {}
        fitted = meta.get("fitted_at_ms")
        status = {
            "version": int(version or 0),
            "fitted_at_ms": fitted,
            "age_s": None if fitted is None else round((now_ms - fitted) / 1000, 1),
            "as_of_ms": meta.get("as_of_ms"),
        }
        if name == "churn":
            status["model"] = meta.get("churn", {}).get("model")
            status["last_error"] = json.loads(error) if error else None
            # the model in force was published without its spend model: why CLV is null
            status["spend_error"] = meta.get("spend_error")
        out[name] = status
    return out


def read_audiences(client: redis.Redis, keys: Keys) -> tuple[AudienceSet | None, int]:
    """The audience definitions in force and their version (None, 0: never applied)."""
    version, text = client.hmget(keys.audiences, "version", "json")
    return (None if text is None else AudienceSet.model_validate_json(text)), int(version or 0)


def publish_audiences(client: redis.Redis, keys: Keys, audiences: AudienceSet) -> int:
    """Put definitions in force as the next version (one key, one transaction): every
    worker evaluates with them from its next batch, and the leader backfills the rest."""
    with client.pipeline(transaction=True) as pipe:
        pipe.hincrby(keys.audiences, "version", 1)
        pipe.hset(keys.audiences, mapping={"json": audiences.canonical(),
                                           "applied_at_ms": int(time.time() * 1000)})  # fmt: skip
        version, _ = pipe.execute()
    return int(version)


def audience_members(client: redis.Redis, keys: Keys, audience_id: str, offset: int = 0,
                     limit: int | None = None) -> list[tuple[str, int]]:  # fmt: skip
    """(customer id, entered at ms) of an audience's members in the sorted set's own
    order, by entry time then customer id: one ZRANGE by rank, O(log N + page), however
    large the audience (a page by id would have to read and sort all of it)."""
    last = -1 if limit is None else offset + limit - 1
    raw = client.zrange(keys.audience_members(audience_id), offset, last, withscores=True)
    return [(_text(m), int(score)) for m, score in raw]


def audience_sizes(client: redis.Redis, keys: Keys, audience_ids) -> dict[str, int]:
    ids = list(audience_ids)
    with client.pipeline(transaction=False) as pipe:
        for aid in ids:
            pipe.zcard(keys.audience_members(aid))
        return dict(zip(ids, pipe.execute(), strict=True))


def audience_backfill(client: redis.Redis, keys: Keys) -> dict[str, int]:
    return {_text(k): int(v) for k, v in client.hgetall(keys.audience_sweep).items()}


def read_cluster_snapshot(client: redis.Redis, keys: Keys) -> ClusterSnapshot | None:
    text = client.hget(keys.cluster_model, "json")
    return ClusterSnapshot.from_dict(json.loads(text)) if text else None


def read_rfm_edges(client: redis.Redis, keys: Keys) -> dict | None:
    text = client.hget(keys.rfm_model, "json")
    return json.loads(text)["edges"] if text else None


def publish_rfm_edges(client: redis.Redis, keys: Keys, edges: dict, meta: dict) -> int:
    with client.pipeline(transaction=True) as pipe:
        pipe.hincrby(keys.rfm_model, "version", 1)
        pipe.hset(keys.rfm_model, "json", json.dumps({"edges": edges, **meta}))
        version, _ = pipe.execute()
    return int(version)


def read_histograms(client: redis.Redis, keys: Keys) -> dict:
    """The population histograms (lp, f, m) as BucketHistograms: the ``hist:`` fields of
    the population facts (streams.state.facts)."""
    return facts.histograms(facts.read_facts(client, keys))


def read_stats(client: redis.Redis, keys: Keys) -> dict[str, int]:
    """Every counter, summed over its shards (Keys.stats_keys; one pipelined read)."""
    with client.pipeline(transaction=False) as pipe:
        for key in keys.stats_keys:
            pipe.hgetall(key)
        total: Counter = Counter()
        for counts in pipe.execute():
            total.update({_text(k): int(v) for k, v in counts.items()})
    return dict(total)


def read_stat(client: redis.Redis, keys: Keys, name: str) -> int:
    """One counter, summed over its shards (one pipelined read: what a poll needs)."""
    with client.pipeline(transaction=False) as pipe:
        for key in keys.stats_keys:
            pipe.hget(key, name)
        return sum(int(v or 0) for v in pipe.execute())

"""The Redis store under a concurrent writer: a lost write is re-folded, nothing is
counted twice, and the state ends as if the batch had been applied once."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import zlib
from decimal import Decimal

import numpy as np
import pytest

from online_models.clusters import ClusterSnapshot
from online_models.customer import CustomerState
from online_models.features import FEATURES
from online_models.rfm import RFMScorer
from streams.processing.outbox import STALE_MS
from streams.processing.pipeline import Record
from streams.processing.schemas import Limits
from streams.processing.worker import BatchProcessor, OutboxRelay, Rescorer
from streams.state import state_codec
from streams.state.due_index import bucket_of, shards_of
from streams.state.keys import Keys
from streams.state.store import (
    StateStore,
    all_customer_ids,
    connect,
    read_states,
    read_stats,
    reshard_indexes,
    write_due,
)
from tests.conftest import outbox_indexed

pytestmark = pytest.mark.integration


def outbox_index(keys: Keys, cid: str) -> str:
    """The outbox-index shard of a customer: its due-index bucket's (crc32 % 16384 % 64)."""
    return keys.outbox_index(zlib.crc32(cid.encode()) % 16_384 % 64)


def purchase_ms(i: int) -> int:
    return 1_700_000_000_000 + i


def purchase(i: int, cid: str, order: str) -> Record:
    body = {"event_id": f"e{i}", "customer_id": cid, "type": "purchase", "order_id": order,
            "amount": "10.00", "ts": purchase_ms(i)}  # fmt: skip
    return Record(0, i, cid.encode(), json.dumps(body).encode())


def test_a_lost_write_is_refolded_and_counted_once(settings):
    keys = Keys(settings.namespace)
    other_writer = connect(settings.redis_url)

    async def scenario():
        store = StateStore.from_url(settings.redis_url, keys)
        real_load = store.load
        interfered = []

        async def load_then_interfere(needed):
            loaded = await real_load(needed)
            if not interfered:  # someone else writes c1 between our read and our write
                other_writer.set(
                    keys.customer("c1"), b"1|" + state_codec.encode(CustomerState("c1"))
                )
                interfered.append(True)
            return loaded

        store.load = load_then_interfere
        processor = BatchProcessor(store, RFMScorer(), Limits())
        records = [purchase(0, "c1", "o1"), purchase(1, "c2", "o2"), purchase(2, "c1", "o1")]
        return await processor.process(records)

    outcome = asyncio.run(scenario())
    assert (outcome.applied, outcome.duplicates) == (2, 1)
    stats = read_stats(connect(settings.redis_url), keys)
    assert (stats["applied"], stats["duplicates"], stats["records"]) == (2, 1, 3)
    states = {
        s.customer_id: s for s in read_states(connect(settings.redis_url), keys, ["c1", "c2"])
    }
    assert states["c1"].purchases == 1 and str(states["c1"].monetary) == "10.00"
    assert states["c1"].version == 2  # the other writer's bump, then ours
    assert [c.customer_id for c in outcome.changes].count("c1") == 1


def test_a_batch_result_carries_what_the_trainer_needs(settings):
    """Every changed customer's feature vector reaches the outcome the app emits from."""
    keys = Keys(settings.namespace)

    async def scenario():
        processor = BatchProcessor(
            StateStore.from_url(settings.redis_url, keys), RFMScorer(), Limits()
        )
        return await processor.process([purchase(0, "a", "o1"), purchase(1, "b", "o2")])

    outcome = asyncio.run(scenario())
    assert set(outcome.samples) == {"a", "b"}
    assert outcome.samples["a"]["features"]["frequency"] > 0
    assert outcome.samples["a"]["last_event_ms"] == purchase_ms(0)


def test_outbox_entries_live_with_the_state_until_acknowledged(settings):
    """A batch's output events are in Redis with its state; an ack removes them and the
    index entry, unless a newer write indexed the customer again meanwhile."""
    keys = Keys(settings.namespace)
    client = connect(settings.redis_url)

    async def scenario():
        store = StateStore.from_url(settings.redis_url, keys)
        processor = BatchProcessor(store, RFMScorer(), Limits())
        first = await processor.process([purchase(1, "c1", "o1"), purchase(2, "c2", "o2")])
        assert len(first.outbox) == 2  # a first segment for each
        stored = {k.decode() for k in client.hkeys(keys.outbox("c1"))}
        assert stored == {e.event_id for e in first.outbox if e.customer_id == "c1"}
        pending = await store.pending_outbox(10)
        assert {cid: [e.payload for e in p.entries] for cid, p in pending.items()} == {
            e.customer_id: [e.payload] for e in first.outbox
        }
        # c2 is written again (a newer version, a new entry) before c1 and c2's acks land
        second = await processor.process([purchase(3, "c2", "o3"), purchase(4, "c2", "o4")])
        await store.outbox_done(first.outbox)
        assert client.hlen(keys.outbox("c1")) == 0
        assert client.zscore(outbox_index(keys, "c1"), "c1") is None
        assert client.zscore(outbox_index(keys, "c2"), "c2") is not None  # its newer entry waits
        assert client.hlen(keys.outbox("c2")) == len(second.outbox) > 0
        await store.outbox_done(second.outbox)
        assert outbox_indexed(client, settings.namespace) == 0
        assert client.hlen(keys.outbox("c2")) == 0
        await store.client.aclose()

    asyncio.run(scenario())
    client.close()


def test_the_relay_keeps_a_customer_indexed_while_its_write_is_in_flight(settings):
    """A writer indexes a customer, then runs its script; on a Cluster the two are separate
    round trips. The relay looking in between finds the outbox empty, and must not take
    the customer out of the index: if the writer then crashes before its send, the
    entries it wrote are the relay's to send."""
    keys = Keys(settings.namespace)
    client = connect(settings.redis_url)
    now = [time.time()]

    async def scenario():
        store = StateStore.from_url(settings.redis_url, keys)
        processor = BatchProcessor(store, RFMScorer(), Limits())
        relay = OutboxRelay(store, clock=lambda: now[0])
        first = await processor.process([purchase(1, "c1", "o1")])
        await store.outbox_done(first.outbox)
        assert outbox_indexed(client, settings.namespace) == 0

        client.zadd(outbox_index(keys, "c1"), {"c1": 2})  # a writer's first step for version 2
        assert (await relay.leftovers()).outbox == []
        assert client.zscore(outbox_index(keys, "c1"), "c1") == 2  # still indexed

        # the write lands (the second purchase changes the customer's segment) and
        # the writer crashes before sending: the relay sends the entries once stale
        second = await processor.process([purchase(2, "c1", "o2")])
        assert second.outbox, "the second purchase emitted nothing: the test proves little"
        now[0] += 2 * STALE_MS / 1000
        relayed = await relay.leftovers()
        assert [e.event_id for e in relayed.outbox] == [e.event_id for e in second.outbox]

        await store.outbox_done(relayed.outbox)
        assert outbox_indexed(client, settings.namespace) == 0
        client.zadd(outbox_index(keys, "c1"), {"c1": 2})  # a writer that lost its version check
        assert (await relay.leftovers()).outbox == []
        assert outbox_indexed(client, settings.namespace) == 0  # settled: it leaves the index
        await store.client.aclose()

    asyncio.run(scenario())
    client.close()


def test_the_sweep_reaches_everybody_while_snapshots_keep_coming(settings):
    """The trainer publishes a snapshot several times a second while it learns. A new
    snapshot must not send the leader's sweep back to the start of the customer set, or
    the customers past its first chunk are never assigned while training goes on."""
    keys = Keys(settings.namespace)
    customers, chunk = 2_500, 500

    async def scenario():
        store = StateStore.from_url(settings.redis_url, keys)
        processor = BatchProcessor(store, RFMScorer(), Limits())
        records = [purchase(i, f"s{i:04}", f"o{i}") for i in range(customers)]
        for at in range(0, customers, 500):  # no snapshot yet: nobody has a cluster
            await processor.process(records[at : at + 500])
        rescorer = Rescorer(processor, sweep_limit=chunk)
        for version in range(1, 3 * customers // chunk):  # one snapshot per tick
            width = len(FEATURES)
            one_cluster = ClusterSnapshot(version, [7], np.zeros((1, width)), np.zeros(width),
                                          np.ones(width))  # fmt: skip
            await store.publish_clusters(one_cluster, b"")
            await rescorer.tick()

    asyncio.run(scenario())
    client = connect(settings.redis_url)
    states = read_states(client, keys, [f"s{i:04}" for i in range(customers)])
    assert len(states) == customers
    assert sum(s.cluster_id == 7 for s in states) == customers


def test_a_tick_rescores_its_thousand_in_slices_that_leave_the_loop_to_others(settings):
    """1,250 customers fall due at once when event time leaps a year. One tick re-scores
    1,000 of them, the next the rest, and a task sharing the loop (the agent serving
    events, in a worker) runs between slices: it never sees more than one slice's worth
    re-scored since it last ran."""
    keys = Keys(settings.namespace)
    customers, slice_size, day = 1_250, 100, 86_400_000
    client = connect(settings.redis_url)

    def rescored() -> int:
        return read_stats(client, keys).get("rescored", 0)

    async def scenario():
        store = StateStore.from_url(settings.redis_url, keys)
        processor = BatchProcessor(store, RFMScorer(), Limits())
        records = [purchase(i, f"d{i:04}", f"o{i}") for i in range(customers)]
        for at in range(0, customers, 500):
            await processor.process(records[at : at + 500])
        leap = {"event_id": "late", "customer_id": "zz", "type": "click", "action": "view",
                "ts": purchase_ms(0) + 365 * day}  # fmt: skip
        await processor.process([Record(0, customers, b"zz", json.dumps(leap).encode())])
        pauses: list[float] = []

        async def pause(seconds: float) -> None:
            pauses.append(seconds)
            await asyncio.sleep(seconds)

        rescorer = Rescorer(processor, limit=1000, slice_size=slice_size, share=0.5,
                            pause=pause)  # fmt: skip
        seen, ticking = [], True

        async def other_work():  # reads the counter the way a user's `rtba stats` would
            while ticking:
                seen.append(rescored())
                await asyncio.sleep(0)

        watcher = asyncio.create_task(other_work())
        started = time.perf_counter()
        first = await rescorer.tick()
        ticking = False
        # At most half the loop while the tick has work: it pauses as long as each slice took.
        busy = time.perf_counter() - started - sum(pauses)
        assert len(pauses) >= 9 and sum(pauses) >= 0.5 * busy, (pauses, busy)
        await watcher
        after_first = rescored()
        second = await rescorer.tick()
        await store.client.aclose()
        return first, second, seen, after_first

    first, second, seen, after_first = asyncio.run(scenario())
    assert after_first == 1000 and rescored() == customers
    assert len(first.states) == 1000 and len(second.states) == customers - 1000
    steps = [b - a for a, b in zip([0, *seen], [*seen, after_first], strict=True)]
    assert max(steps) <= slice_size, f"the loop was held for {max(steps)} customers at once"
    client.close()


def test_every_customer_is_listed_with_its_own_state_and_only_the_due_are_due(settings):
    """250 customers written by one batch (more than one script call's worth), a third of
    them click-only and so never due; a due id without state leaves the index on a tick."""
    keys = Keys(settings.namespace)
    client = connect(settings.redis_url)
    records = []
    for i in range(250):
        body = {"event_id": f"e{i}", "customer_id": f"k{i:03d}", "ts": purchase_ms(i)}
        if i % 3:
            body.update(type="purchase", order_id=f"o{i}", amount=f"{i}.25")
        else:
            body.update(type="click", action="view")
        records.append(Record(0, i, None, json.dumps(body).encode()))

    async def scenario():
        processor = BatchProcessor(StateStore.from_url(settings.redis_url, keys), RFMScorer(),
                                   Limits())  # fmt: skip
        await processor.process(records)
        write_due(client, keys, {"ghost": 0})  # due at once, and no state
        return await Rescorer(processor).tick()

    asyncio.run(scenario())
    ids = [f"k{i:03d}" for i in range(250)]
    assert all_customer_ids(client, keys) == ids  # the ghost is gone, nobody else
    for i, state in enumerate(read_states(client, keys, ids)):
        assert state.customer_id == ids[i]
        assert state.monetary == (Decimal(f"{i}.25") if i % 3 else 0)
        assert state.purchases == (1 if i % 3 else 0)
        due = client.zscore(keys.due_bucket(bucket_of(ids[i])), ids[i])
        assert (due > purchase_ms(i)) if i % 3 else due == float("inf")


def test_sealed_orders_leave_redis_and_a_repeat_of_one_goes_to_the_dlq(settings):
    """Through the real write script: orders beyond the horizon leave the stored value
    while their figures stay, a waiting refund expires, a repeat of a sealed
    order is set aside as beyond_horizon (and counted so), and a refund of a kept order
    still de-duplicates by its id after the round trip."""
    keys, day = Keys(settings.namespace), 86_400_000
    t0 = 1_700_000_000_000

    def event(i, body):
        body = {"event_id": f"e{i}", "customer_id": "c", "ts": t0, **body}
        return Record(0, i, b"c", json.dumps(body).encode())

    batches = [
        [event(0, {"type": "purchase", "order_id": "old", "amount": "10.00"}),
         event(1, {"type": "refund", "order_id": "never", "amount": "1.00"})],
        [event(2, {"type": "purchase", "order_id": "new", "amount": "20.00", "ts": t0 + 90 * day}),
         event(3, {"type": "refund", "order_id": "new", "amount": "5.00", "ts": t0 + 91 * day})],
        [event(4, {"type": "refund", "order_id": "new", "amount": "5.00", "ts": t0 + 91 * day}),
         event(5, {"type": "purchase", "order_id": "old", "amount": "10.00"})],
    ]  # fmt: skip

    async def scenario():
        store = StateStore.from_url(settings.redis_url, keys)
        processor = BatchProcessor(store, RFMScorer(), Limits(), order_horizon_ms=30 * day)
        return [await processor.process(batch) for batch in batches]

    outcomes = asyncio.run(scenario())
    client = connect(settings.redis_url)
    state = state_codec.decode("c", client.get(keys.customer("c")), with_orders=True)
    assert sorted(state.orders) == ["new"]
    assert (state.purchases, state.monetary) == (2, Decimal("20.00"))  # 10 + 20 - 5 - 5
    assert [(r.offset, why.reason) for r, why in outcomes[2].rejected] == [(5, "beyond_horizon")]
    stats = read_stats(client, keys)
    assert (stats["dlq"], stats["dlq:beyond_horizon"], stats["applied"]) == (1, 1, 5)
    assert stats["refund_unmatched"] == 1  # the refund of "never", expired (rtba stats)
    assert stats["refund_waiting"] == 1 and stats.get("refund_matched_late", 0) == 0


def test_the_bucketed_due_index_returns_exactly_who_is_due(settings):
    """Due times set, moved later and earlier, cleared to +inf and forgotten, over many
    buckets: for every cut-off, the due customers are exactly those of a plain dict kept
    beside it (a bucket whose least time rose must not hide or keep anyone)."""
    keys = Keys(settings.namespace)
    client = connect(settings.redis_url)
    rng = np.random.default_rng(5)
    expected: dict[str, float] = {}

    def write(due: dict, forget=()):
        asyncio.run(save(due, forget))
        for cid, t in due.items():
            expected[cid] = float("inf") if t is None else t
        for cid in forget:
            expected.pop(cid, None)

    async def save(due, forget):
        store = StateStore.from_url(settings.redis_url, keys)
        await store.save({}, due, {}, {}, None, forget=list(forget))
        await store.client.aclose()

    async def due_by(until, limit=100_000):
        store = StateStore.from_url(settings.redis_url, keys)
        try:
            return await store.due_customers(until, limit)
        finally:
            await store.client.aclose()

    ids = [f"d{i:05d}" for i in range(3_000)]
    write({cid: int(t) for cid, t in zip(ids, rng.integers(0, 1_000, len(ids)), strict=True)})
    write({cid: int(t) for cid, t in zip(ids[::2], rng.integers(500, 2_000, 1_500), strict=True)})
    write({cid: None for cid in ids[1::7]}, forget=ids[3::11])
    write({cid: 1 for cid in ids[5::13]})
    for until in (0, 1, 250, 999, 1_500, 5_000):
        want = sorted(cid for cid, t in expected.items() if t <= until)
        assert sorted(asyncio.run(due_by(until))) == want, until
    assert len(asyncio.run(due_by(5_000, limit=10))) == 10
    assert all_customer_ids(client, keys) == sorted(expected)


def test_two_workers_rescore_disjoint_halves_that_cover_everyone_due(settings):
    """600 customers fall due when event time leaps a year. A worker holding the even
    partitions of six re-scores exactly the customers whose due-index shard (crc32 of the
    id, as the test computes it) goes with an even partition; the other worker the rest."""
    keys = Keys(settings.namespace)
    client = connect(settings.redis_url)
    ids = [f"h{i:03d}" for i in range(600)]

    def partition_of(cid: str) -> int:
        return zlib.crc32(cid.encode()) % 16_384 % 64 % 6

    async def scenario():
        store = StateStore.from_url(settings.redis_url, keys)
        processor = BatchProcessor(store, RFMScorer(), Limits())
        await processor.process([purchase(i, cid, f"o{i}") for i, cid in enumerate(ids)])
        leap = {"event_id": "late", "customer_id": "h999", "type": "click", "action": "view",
                "ts": purchase_ms(0) + 365 * 86_400_000}  # fmt: skip
        await processor.process([Record(0, 600, b"h999", json.dumps(leap).encode())])
        rescored = []
        for mine in ([0, 2, 4], [1, 3, 5]):
            rescorer = Rescorer(processor, shards=lambda mine=mine: shards_of(mine, 6))
            out = await rescorer.tick(leader=False)
            rescored.append(sorted(out.states))
        await store.client.aclose()
        return rescored

    even, odd = asyncio.run(scenario())
    assert even == sorted(c for c in ids if partition_of(c) % 2 == 0)
    assert odd == sorted(c for c in ids if partition_of(c) % 2 == 1)
    assert len(even) > 200 and len(odd) > 200
    assert read_stats(client, keys)["rescored"] == len(ids)
    client.close()


def test_indexes_kept_before_the_shards_move_to_them(settings):
    """An rtba from before the shards kept the whole due index under one hash tag, and the
    outbox index in one key. A worker's start moves them: every customer keeps its due
    time (+inf included), except one that this rtba wrote since, whose newer time stands;
    every outbox-index entry keeps the higher of its scores; the old keys are gone, and a
    second start has nothing to move."""
    keys = Keys(settings.namespace)
    client = connect(settings.redis_url)
    ns = settings.namespace
    old_summary = f"{ns}:due:{{{ns}:due}}"  # the old layout, as that rtba named it
    rng = np.random.default_rng(9)
    expected = {f"m{i:04d}": float(t) for i, t in enumerate(rng.integers(0, 1_000, 1_500))}
    expected.update({f"n{i:03d}": float("inf") for i in range(200)})
    buckets: dict[int, dict[str, float]] = {}
    for cid, t in expected.items():
        buckets.setdefault(zlib.crc32(cid.encode()) % 16_384, {})[cid] = t
    for bucket, members in buckets.items():
        client.zadd(f"{old_summary}:{bucket}", members)
        client.zadd(old_summary, {str(bucket): min(members.values())})
    write_due(client, keys, {"m0007": 5_000})  # written by this rtba since: newer
    expected["m0007"] = 5_000.0
    pending = {f"m{i:04d}": 3 + i % 5 for i in range(0, 1_500, 7)}
    client.zadd(f"{ns}:outbox", pending)
    client.zadd(outbox_index(keys, "m0014"), {"m0014": 50})  # indexed since by a new write
    pending["m0014"] = 50

    assert reshard_indexes(client, keys) == 1_700 + len(pending)
    assert reshard_indexes(client, keys) == 0
    assert not client.exists(old_summary, *(f"{old_summary}:{b}" for b in buckets))
    assert not client.exists(f"{ns}:outbox")
    assert all_customer_ids(client, keys) == sorted(expected)
    for cid, score in pending.items():
        assert client.zscore(outbox_index(keys, cid), cid) == score
    assert outbox_indexed(client, ns) == len(pending)

    async def due_by(until):
        store = StateStore.from_url(settings.redis_url, keys)
        try:
            return sorted(await store.due_customers(until, 100_000))
        finally:
            await store.client.aclose()

    for until in (0, 500, 999, 5_000):
        assert asyncio.run(due_by(until)) == sorted(c for c, t in expected.items() if t <= until)
    client.close()


def test_a_retention_erase_skips_a_customer_written_since_it_was_read(settings):
    keys = Keys(settings.namespace)
    client = connect(settings.redis_url)
    for cid in ("back-again", "gone"):
        client.set(keys.customer(cid), b"3|" + state_codec.encode(CustomerState(cid)))
    write_due(client, keys, {"back-again": purchase_ms(0), "gone": purchase_ms(0)})

    async def scenario():
        store = StateStore.from_url(settings.redis_url, keys)
        # read at version 2: "back-again" was written since (it is at 3); "gone" was not
        erased = await store.erase({"back-again": 2, "gone": 3})
        await store.client.aclose()
        return erased

    assert asyncio.run(scenario()) == 1
    assert client.exists(keys.customer("back-again")) and not client.exists(keys.customer("gone"))
    assert all_customer_ids(client, keys) == ["back-again"]
    assert read_stats(client, keys).get("retention_erased") == 1
    # audited like `rtba erase` (docs/security.md): actor "retention", no address, the
    # id as HMAC-SHA256 under the salt of <namespace>:erased, written out here
    salt = client.hget(f"{settings.namespace}:erased", "salt")
    salt = salt if isinstance(salt, bytes) else salt.encode()
    gone = hmac.new(salt, b"gone", hashlib.sha256).hexdigest()
    entries = [
        {_text(k): _text(v) for k, v in fields.items()}
        for _, fields in client.xrange(f"{settings.namespace}:audit")
    ]
    assert [(e["actor"], e["address"], e["id_hmac"], e["outcome"]) for e in entries] == [
        ("retention", "", gone, "erased")
    ]
    client.close()


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def test_a_worker_counts_purchase_days_in_the_shops_time_zone(settings):
    """RTBA_TIMEZONE through the worker and the stored value: 19:59 and 20:01 in New York,
    either side of 00:00 UTC, are one purchase day (two in UTC)."""
    from online_models.days import days_in

    keys, midnight = Keys(settings.namespace), 1_768_435_200_000  # 2026-01-15 00:00 UTC
    batch = [Record(0, i, cid.encode(), json.dumps(
        {"event_id": f"e{cid}{i}", "customer_id": cid, "type": "purchase", "order_id": f"o{i}",
         "amount": "10.00", "ts": midnight + (60_000 if i else -60_000)}).encode())
        for cid in ("ny", "utc") for i in (0, 1)]  # fmt: skip

    async def scenario():
        store = StateStore.from_url(settings.redis_url, keys)
        for zone, cid in (("America/New_York", "ny"), ("UTC", "utc")):
            mine = [r for r in batch if r.key == cid.encode()]
            await BatchProcessor(store, RFMScorer(), Limits(), days=days_in(zone)).process(mine)

    asyncio.run(scenario())
    states = {s.customer_id: s for s in read_states(connect(settings.redis_url), keys,
                                                    ["ny", "utc"])}  # fmt: skip
    assert (states["ny"].purchase_days, states["utc"].purchase_days) == (1, 2)

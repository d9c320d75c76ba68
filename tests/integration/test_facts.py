"""The population facts on a real Redis, through the worker's store and processors: after
a shop's events written by two processors at once (forced write conflicts), lost
replies, a crash between write and send, the leader's ticks (re-scoring, the cluster
sweep, the audience backfill, a retention erase) and user erasures, the facts equal a
sum over the stored states written out here (tests/reference_facts.py), and `rtba
verify` says so; a counter corrupted by hand is named, and --repair puts it right."""

from __future__ import annotations

import asyncio
import json
import random
import time

import numpy as np
import pytest

from online_models.clusters import ClusterSnapshot
from online_models.features import FEATURES
from online_models.rfm import RFMScorer
from streams.audiences.definitions import EXAMPLE, AudienceSet, load
from streams.cli.main import main
from streams.processing.faults import Faults
from streams.processing.outbox import STALE_MS
from streams.processing.pipeline import Record
from streams.processing.schemas import Limits
from streams.processing.worker import BatchProcessor, OutboxRelay, Rescorer
from streams.state import facts
from streams.state import store as store_module
from streams.state.claims import is_whole
from streams.state.erase import Eraser
from streams.state.keys import Keys
from streams.state.redis_client import clustered
from streams.state.store import (
    StateStore,
    all_customer_ids,
    connect,
    publish_audiences,
    read_states,
    read_stats,
)
from tests.reference_facts import cells, index_entries, population, spend_cells

pytestmark = pytest.mark.integration

DAY = 86_400_000
END = 1_760_000_000_000
RETENTION = 150 * DAY


def records(customers: int = 20, events: int = 360) -> list[Record]:
    """A small shop's events over 200 days, in time order, on one partition: purchases
    (free ones too), refunds (some to nothing) and clicks (toys views among them)."""
    rng = random.Random(11)
    orders: dict[str, list[str]] = {}
    out = []
    for i in range(events):
        cid = f"c{rng.randrange(customers):03d}"
        if cid in ("c018", "c019") and i > events // 4:  # two go quiet early: retention
            cid = "c000"
        ts = END - 200 * DAY + i * (200 * DAY // events)
        body = {"event_id": f"e{i}", "customer_id": cid, "ts": ts}
        kind = rng.random()
        if kind < 0.4:
            amount = rng.choice(["0", "9.99", "25.005", "120.00", f"{rng.randrange(1, 900)}.50"])
            body.update(type="purchase", order_id=f"o{i}", amount=amount)
            orders.setdefault(cid, []).append(f"o{i}")
        elif kind < 0.5 and orders.get(cid):
            body.update(type="refund", order_id=rng.choice(orders[cid]),
                        amount=rng.choice(["5.00", "1000.00"]))  # fmt: skip
        else:
            body.update(type="click", action=rng.choice(["view", "add_to_cart"]),
                        category=rng.choice(["toys", "home"]))  # fmt: skip
        out.append(Record(0, i, cid.encode(), json.dumps(body).encode()))
    return out


def with_buyers() -> AudienceSet:
    """The example audiences and one that every buyer is in."""
    data = json.loads(EXAMPLE.read_text())
    data["audiences"].append({"id": "buyers", "name": "Anyone who bought",
                              "when": {"all": [{"field": "frequency", "gte": 1}]}})  # fmt: skip
    return AudienceSet.model_validate(data)


def watermark(offset: int, ts: int) -> Record:
    return Record(0, offset, None, json.dumps({"type": "watermark", "ts": ts}).encode())


def stored_states(client, keys: Keys) -> list:
    """Every state in Redis (the due index lists every customer with state)."""
    return read_states(client, keys, all_customer_ids(client, keys))


def stored_facts(client, keys: Keys, family: str = "facts") -> dict[str, int]:
    """Every facts shard (16 on a server, one per slot on a Cluster) summed here; the day
    cells' shards with ``family="cells"``."""
    shards = 16_384 if clustered(client) else 16
    with client.pipeline(transaction=False) as pipe:
        for shard in range(shards):
            pipe.hgetall(getattr(keys, family)(shard))
        replies = pipe.execute()
    total: dict[str, int] = {}
    for shard, reply in enumerate(replies):
        for field, n in reply.items():
            assert int(n) != 0, f"shard {shard}: {field} at 0 is kept (absent is 0)"
            total[field.decode()] = total.get(field.decode(), 0) + int(n)
    return {k: v for k, v in total.items() if v}


def stored_index(client, keys: Keys) -> set[str]:
    """Every member and ranking index shard's entries, read here (the scores all 0)."""
    shards = 16_384 if clustered(client) else 16
    with client.pipeline(transaction=False) as pipe:
        for shard in range(shards):
            pipe.zrange(keys.index(shard), 0, -1, withscores=True)
        replies = pipe.execute()
    entries = [(member.decode(), score) for reply in replies for member, score in reply]
    assert {score for _, score in entries} <= {0.0}
    return {member for member, _ in entries}


def verify(capsys, *args: str) -> tuple[int, dict]:
    code = main(["verify", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture
def env(rtba_env, monkeypatch):
    for name in ("KAFKA_BOOTSTRAP", "REDIS_URL", "RTBA_NAMESPACE", "RTBA_HOME"):
        monkeypatch.setenv(name, rtba_env[name])


def test_the_facts_stay_the_sum_of_the_stored_states(settings, env, capsys):
    keys = Keys(settings.namespace)
    client = connect(settings.redis_url)
    publish_audiences(client, keys, load(str(EXAMPLE)))  # audiences: audience:<id> fields
    client.hset(keys.audience_sweep, "swept", 1)  # in force from the first event: no backfill
    shop = records()
    half = len(shop) // 2

    def processor(faults: Faults | None = None) -> BatchProcessor:
        store = StateStore.from_url(settings.redis_url, keys)
        return BatchProcessor(store, RFMScorer(), Limits(), faults=faults,
                              retention_ms=RETENTION)  # fmt: skip

    gates: dict[int, asyncio.Barrier] = {}

    def gated(p: BatchProcessor) -> BatchProcessor:
        """A processor whose next load, once a gate is set, waits for the other's."""
        real = p.store.load

        async def load(needed):
            loaded = await real(needed)
            if (gate := gates.pop(id(p), None)) is not None:
                await gate.wait()
            return loaded

        p.store.load = load
        return p

    async def scenario():
        a = gated(processor(Faults({"drop_after_write": 0.3}, seed=5)))
        b = gated(processor())
        # two owners of the partition at once (a rebalance), both from the last committed
        # offset; each reads before either writes, so one of them loses its writes
        for at in range(0, half, 80):
            gates[id(a)] = gates[id(b)] = asyncio.Barrier(2)
            await asyncio.gather(a.process(shop[at : at + 80]), b.process(shop[at : at + 120]))
        # a worker that died between its write and its send: the batch comes again
        crashed = processor()
        written = await crashed.process(shop[half:])
        assert written.outbox  # written, never sent
        again = await a.process(shop[half:])
        assert not again.states and again.redelivered == len(shop) - half
        relay = OutboxRelay(a.store, clock=lambda: time.time() + STALE_MS / 1000 + 1)
        await a.store.outbox_done((await relay.leftovers()).outbox)
        # the leader's ticks: silent customers re-scored and those past retention erased;
        # a cluster snapshot swept in; new audience definitions backfilled
        await a.process([watermark(len(shop), END + 30 * DAY)])
        ticks = [await Rescorer(a, sweep_limit=1000).tick()]
        publish_audiences(client, keys, with_buyers())  # version 2: a backfill
        ticks.append(await Rescorer(a, sweep_limit=1000).tick())
        width = len(FEATURES)
        snapshot = ClusterSnapshot(1, [2, 5], np.array([np.zeros(width), np.ones(width)]),
                                   np.zeros(width), np.ones(width))  # fmt: skip
        await a.store.publish_clusters(snapshot, b"")
        ticks.append(await Rescorer(a, sweep_limit=1000).tick())
        return ticks

    ticks = asyncio.run(scenario())
    stats = read_stats(client, keys)
    assert stats["redelivered"] > 0  # the losers re-folded what the winners had written
    assert sum(len(t.expired) for t in ticks) > 0 and stats["retention_erased"] > 0
    assert stats.get("reassigned", 0) > 0 and stats.get("audience_backfilled", 0) > 0
    # a user erase, run twice (the second finds nothing to take out)
    gone = all_customer_ids(client, keys)[:2]
    Eraser(client, keys).erase_all(gone)
    Eraser(client, keys).erase_all(gone[:1])

    states = stored_states(client, keys)
    assert len(states) > 5 and not set(gone) & {s.customer_id for s in states}
    want = population(states)
    assert {k for k in want if k.startswith("audience:")}  # audiences were counted
    assert {k for k in want if k.startswith("cluster:")} and {k for k in want if "seg:" in k}
    assert stored_facts(client, keys) == want
    assert facts.read_facts(client, keys) == want
    want_cells = cells(states)  # the day cells, kept apart from the facts /segments reads
    assert sum(want_cells.values()) == sum(s.first_purchase_ms is not None for s in states)
    repeat_spenders = spend_cells(states)  # and the spend cells, in the same hashes
    assert repeat_spenders and not set(repeat_spenders) & set(want_cells)
    want_cells |= repeat_spenders
    assert stored_facts(client, keys, "cells") == want_cells
    assert facts.read_cells(client, keys) == want_cells
    want_index = {entry for state in states for entry in index_entries(state)}
    assert stored_index(client, keys) == want_index  # the erased are in no entry either
    assert not {e for e in want_index if e.rsplit(":", 1)[1] in gone}
    code, report = verify(capsys)
    assert code == 0 and report["equal"] and report["customers"] == len(states)

    # a counter corrupted by hand: named, then repaired from the walk
    some = next(s for s in states if s.segment is not None)
    shard = keys.facts(facts.shard_of(some.customer_id, clustered(client)))
    client.hincrby(shard, f"seg:{some.segment}", 1)
    code, report = verify(capsys)
    assert code == 1 and report["different"] == 1
    assert report["differences"][0]["field"] == f"seg:{some.segment}"
    assert report["differences"][0]["stored"] == report["differences"][0]["expected"] + 1
    assert not is_whole(client, settings.namespace, "spend_cells")  # no worker claimed them
    assert not is_whole(client, settings.namespace, "cell_members")
    code, report = verify(capsys, "--repair")
    assert code == 0 and report["repaired_shards"] == 1
    assert is_whole(client, settings.namespace, "spend_cells")  # every cell from the walk
    assert is_whole(client, settings.namespace, "cell_members")
    code, report = verify(capsys)
    assert code == 0 and report["equal"]
    assert facts.read_facts(client, keys) == want

    # a day cell corrupted by hand: named in its cells key, then repaired
    cell_shard = keys.cells(facts.shard_of(some.customer_id, clustered(client)))
    client.hincrby(cell_shard, "0:1:1", 2)  # two customers who never were
    code, report = verify(capsys)
    assert code == 1 and report["different"] == 1
    assert report["differences"][0] == {
        "shard": facts.shard_of(some.customer_id, clustered(client)), "key": cell_shard,
        "field": "cell:0:1:1", "expected": 0, "stored": 2,
    }  # fmt: skip
    code, report = verify(capsys, "--repair")
    assert code == 0 and report["repaired_shards"] == 1
    assert facts.read_cells(client, keys) == want_cells
    assert facts.read_facts(client, keys) == want

    # an index entry for no one, and a member missing: both named, then repaired
    index_shard = keys.index(facts.shard_of(some.customer_id, clustered(client)))
    mine = f"s:{some.segment}:{some.customer_id}"
    other = "Champions" if some.segment == "Lost" else "Lost"
    client.zrem(index_shard, mine)
    client.zadd(index_shard, {f"s:{other}:{some.customer_id}": 0})
    code, report = verify(capsys)
    assert code == 1 and report["different"] == 2
    assert {(d["key"], d["field"], d["expected"], d["stored"]) for d in report["differences"]} == {
        (index_shard, f"idx:{mine}", 1, 0), (index_shard, f"idx:s:{other}:{some.customer_id}", 0, 1)
    }  # fmt: skip
    code, report = verify(capsys, "--repair")
    assert code == 0 and report["repaired_shards"] == 1
    assert stored_index(client, keys) == want_index
    assert facts.read_facts(client, keys) == want and facts.read_cells(client, keys) == want_cells
    client.close()


def test_an_erase_that_meets_a_write_reads_again_and_takes_out_the_new_state(settings):
    """The contribution taken out is the one of the state deleted: a write between the
    erase's read and its delete makes it read again."""
    keys = Keys(settings.namespace)
    client = connect(settings.redis_url)
    shop = [r for r in records(4, 80) if r.key == b"c001"]
    first, later = shop[: len(shop) // 2], shop[len(shop) // 2 :]

    def write(batch):
        async def run():
            store = StateStore.from_url(settings.redis_url, keys)
            await BatchProcessor(store, RFMScorer(), Limits()).process(batch)
            await store.client.aclose()

        asyncio.run(run())

    write(first)
    eraser = Eraser(client, keys)
    real, calls = eraser._erase, []

    def erase_after_a_write(**kwargs):
        if not calls:
            write(later)  # the customer moves on between the read and the delete
        calls.append(kwargs["args"][0])
        return real(**kwargs)

    eraser._erase = erase_after_a_write
    assert eraser.erase("c001").had_state
    assert len(calls) == 2 and calls[1] == calls[0] + 1  # read again at the new version
    assert stored_facts(client, keys) == {}
    assert stored_facts(client, keys, "cells") == {}  # its day cell went with it
    assert stored_index(client, keys) == set()  # and its index entries
    client.close()


def test_erasing_an_unreadable_state_leaves_no_index_entry_naming_it(settings):
    """A state rtba cannot read is deleted as it is; its index entries (not known entry by
    entry) go too, and not those of an id that ends the same way."""
    keys = Keys(settings.namespace)
    client = connect(settings.redis_url)
    # an id that ends in ":c001" and shares its index shard (setup, not the oracle)
    shard = facts.shard_of("c001", clustered(client))
    twin = next(f"{i}:c001" for i in range(10**6)
                if facts.shard_of(f"{i}:c001", clustered(client)) == shard)  # fmt: skip
    shop = [r for r in records(4, 80) if r.key == b"c001"]
    shop += [Record(r.partition, r.offset + 1000, twin.encode(),
                    r.value.replace(b'"c001"', f'"{twin}"'.encode())) for r in shop]  # fmt: skip

    async def run():
        store = StateStore.from_url(settings.redis_url, keys)
        await BatchProcessor(store, RFMScorer(), Limits()).process(shop)
        await store.client.aclose()

    asyncio.run(run())
    other = {e for e in stored_index(client, keys) if e.endswith(f":{twin}")}
    # each a segment, money and day cell entry
    assert len(stored_index(client, keys)) == 2 * len(other) >= 6
    client.set(keys.customer("c001"), b"7|not a state")
    assert Eraser(client, keys).erase("c001").had_state
    assert stored_index(client, keys) == other
    client.close()


def test_verify_does_not_judge_facts_that_move_during_its_walk(settings, env, capsys,
                                                               monkeypatch):  # fmt: skip
    """A worker writing while verify walks: it says so (exit 2) and repairs nothing."""
    keys = Keys(settings.namespace)
    client = connect(settings.redis_url)

    async def write():
        store = StateStore.from_url(settings.redis_url, keys)
        await BatchProcessor(store, RFMScorer(), Limits()).process(records(5, 40))
        await store.client.aclose()

    asyncio.run(write())
    real = store_module.read_states

    def read_while_a_worker_writes(*args):
        client.hincrby(keys.facts(3), "customers", 1)  # a new customer's write, say
        return real(*args)

    monkeypatch.setattr(store_module, "read_states", read_while_a_worker_writes)
    before = facts.read_facts(client, keys)
    code, report = verify(capsys, "--repair")
    assert code == 2 and report["moved"] and report["repaired_shards"] == 0
    assert facts.read_facts(client, keys)["customers"] > before["customers"]  # not undone
    assert main(["verify"]) == 2
    assert "run it again on a quiet system" in capsys.readouterr().out
    client.close()

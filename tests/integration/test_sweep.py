"""The leader's cluster sweep on a real Redis (S10, issue #27 item 4): a tick reads no more
than its limit however many customers share a due-index bucket, a pass reaches every
customer exactly once while others come, go and change due times, and a slice's decoding
and assignment run off the event loop.

The due index gets 8 buckets (monkeypatched) so that each holds ~75 of 600 customers,
as 16,384 buckets do at ~1.2M customers: the case where reading whole buckets hands a
tick hundreds of customers.
"""

from __future__ import annotations

import asyncio
import json
import threading

import numpy as np
import pytest

from online_models.clusters import ClusterSnapshot
from online_models.features import FEATURES
from online_models.rfm import RFMScorer
from streams.processing import worker
from streams.processing.pipeline import Record
from streams.processing.schemas import Limits
from streams.processing.worker import BatchProcessor, Rescorer
from streams.state import due_index
from streams.state.keys import Keys
from streams.state.store import StateStore, connect, read_stats, write_due

pytestmark = pytest.mark.integration

CUSTOMERS = 600


@pytest.fixture
def few_buckets(monkeypatch):
    monkeypatch.setattr(due_index, "BUCKETS", 8)


def purchase(i: int) -> Record:
    cid = f"w{i:04}"
    body = {"event_id": f"e{i}", "customer_id": cid, "type": "purchase", "order_id": f"o{i}",
            "amount": "10.00", "ts": 1_700_000_000_000 + i * 60_000}  # fmt: skip
    return Record(0, i, cid.encode(), json.dumps(body).encode())


def one_cluster(version: int) -> ClusterSnapshot:
    width = len(FEATURES)
    return ClusterSnapshot(version, [7], np.zeros((1, width)), np.zeros(width), np.ones(width))


async def population(store: StateStore) -> BatchProcessor:
    """600 customers with state and no cluster yet, then a snapshot to sweep."""
    processor = BatchProcessor(store, RFMScorer(), Limits())
    records = [purchase(i) for i in range(CUSTOMERS)]
    for at in range(0, CUSTOMERS, 300):
        await processor.process(records[at : at + 300])
    await store.publish_clusters(one_cluster(1), b"")
    return processor


def test_a_tick_sweeps_its_limit_however_full_the_buckets(settings, few_buckets):
    keys = Keys(settings.namespace)
    client = connect(settings.redis_url)

    async def scenario() -> list[int]:
        store = StateStore.from_url(settings.redis_url, keys)
        rescorer = Rescorer(await population(store), sweep_limit=200, slice_size=50,
                            pause=lambda _: asyncio.sleep(0))  # fmt: skip
        swept = []
        for _ in range(4):
            await rescorer.tick()
            swept.append(read_stats(client, keys).get("reassigned", 0))  # all new: all move
        await store.client.aclose()
        return swept

    swept = asyncio.run(scenario())
    # Before S10 the first tick read every bucket whole: all 600 at once.
    assert swept == [200, 400, 600, 600], swept
    assert int(client.hget(keys.cluster_sweep, "swept")) == 1
    client.close()


def test_a_pass_reaches_everyone_present_exactly_once_while_others_come_and_go(
    settings, few_buckets
):
    keys = Keys(settings.namespace)
    client = connect(settings.redis_url)
    first = {f"w{i:04}": 1_000 + i for i in range(CUSTOMERS)}
    write_due(client, keys, first)
    stay = sorted(first)[: CUSTOMERS // 2]  # present all along; their due times move
    leave = sorted(first)[CUSTOMERS // 2 :]

    async def scenario() -> list[list[str]]:
        store = StateStore.from_url(settings.redis_url, keys)
        cursor, calls = (0, -1), []
        while True:
            cursor, ids = await store.scan_customers(cursor, 37)
            calls.append(ids)
            if cursor == (0, -1):
                break
            n = len(calls)
            # Between calls: newcomers, leavers, and due times moved (a bucket's order).
            write_due(client, keys, {f"x{n:03}{j}": j for j in range(5)})
            for cid in leave[3 * n : 3 * n + 3]:
                client.zrem(keys.due_bucket(due_index.bucket_of(cid)), cid)
            write_due(client, keys, {cid: 10**9 - 7 * n - k for k, cid in enumerate(stay)})
        await store.client.aclose()
        return calls

    calls = asyncio.run(scenario())
    handed = [cid for ids in calls for cid in ids]
    assert max(len(ids) for ids in calls) <= 37
    assert all(len(ids) == 37 for ids in calls[:-1])  # the count exactly, until the end
    assert len(handed) == len(set(handed)), "someone was handed out twice in one pass"
    assert set(stay) <= set(handed)
    client.close()


def test_a_slice_is_decoded_and_assigned_off_the_event_loop(settings, monkeypatch):
    keys = Keys(settings.namespace)
    threads: dict[str, set[int]] = {"decode": set(), "assign": set()}

    def recorded(name, real):
        def call(*args, **kwargs):
            threads[name].add(threading.get_ident())
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(worker, "reassign_clusters",
                        recorded("assign", worker.reassign_clusters))  # fmt: skip
    if hasattr(worker, "decode_states"):
        monkeypatch.setattr(worker, "decode_states", recorded("decode", worker.decode_states))

    async def scenario() -> int:
        store = StateStore.from_url(settings.redis_url, keys)
        processor = await population(store)
        loop_thread = threading.get_ident()
        await Rescorer(processor, sweep_limit=100, pause=lambda _: asyncio.sleep(0)).tick()
        await store.client.aclose()
        return loop_thread

    loop_thread = asyncio.run(scenario())
    assert threads["assign"] and loop_thread not in threads["assign"]
    assert threads["decode"] and loop_thread not in threads["decode"]

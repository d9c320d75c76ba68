"""The RFM-edge refresh against a real Redis (S10): recency edges are absolute cut dates,
so a watermark moving, within a day or past midnight, with no purchase moving a cut date,
publishes nothing (and wakes nobody); a moved cut publishes once, and wakes exactly the
customers whose segment it changes.

The population histograms (the facts' ``hist:`` fields, here all in one shard) and the
watermark are written directly (what the workers' writes keep there) where no customer
states are needed; the customers of the last tests go through the worker's own batch
processing and tick, their expected segments from tests/reference.py's fair split.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta

import pytest

from streams.processing import worker
from streams.processing.pipeline import Record
from streams.processing.schemas import Limits
from streams.processing.worker import BatchProcessor, Rescorer
from streams.state.keys import Keys
from streams.state.store import (
    StateStore,
    all_customer_ids,
    read_marks,
    read_rfm_edges,
    read_states,
)
from tests.reference import reference_scores

pytestmark = pytest.mark.integration

DAY = 86_400_000
TODAY = 20_000  # a UTC date number
LAST_PURCHASE_DATES = [TODAY - d for d in range(0, 100, 2)]  # one buyer every other date


@pytest.fixture
def shop(settings, redis_client):
    keys = Keys(settings.namespace)
    for day in LAST_PURCHASE_DATES:
        redis_client.hincrby(keys.facts(0), f"hist:lp:{day}", 1)
        redis_client.hincrby(keys.facts(0), f"hist:f:{1 + day % 4}", 1)
        redis_client.hincrby(keys.facts(0), f"hist:m:{200 + day % 7}", 1)

    def refresh_at(watermark_ms: int) -> dict | None:
        redis_client.hset(keys.watermark, "p:0", watermark_ms)
        return worker.refresh_rfm_edges(settings)

    def version() -> int:
        return int(redis_client.hget(keys.rfm_model, "version") or 0)

    return keys, refresh_at, version


def test_time_alone_publishes_nothing(settings, redis_client, shop, monkeypatch):
    keys, refresh_at, version = shop
    walks = []
    monkeypatch.setattr(worker, "wake_changed", lambda *args: walks.append(args) or 0)
    for minute in range(1, 60 * 24, 97):  # 15 refreshes over the date, no new purchase
        refresh_at(TODAY * DAY + minute * 60_000)
    assert version() == 1 and len(walks) == 1  # S9: a version (and a walk) per refresh
    edges = read_rfm_edges(redis_client, keys)
    # the cut dates of 50 dates split in fifths: 10 dates each, the newest 5 (TODAY - 18 on)
    assert edges["recency_cut_dates"] == [iso(TODAY - d) for d in (18, 38, 58, 78)]
    assert edges["recency_timezone"] == "UTC" and "recency_edges" not in edges

    for later in (DAY + 5, DAY + 3_600_000, 40 * DAY):  # new dates: no cut date moves
        assert refresh_at(TODAY * DAY + later) is None
        # what the leader asks before spawning the refresh's process: nothing to do
        assert worker.rfm_edges_would_move(settings) is False
    assert version() == 1 and len(walks) == 1

    # a purchase today moves the last-purchase split: a new version
    redis_client.hincrby(keys.facts(0), f"hist:lp:{TODAY + 40}", 3)
    redis_client.hset(keys.watermark, "p:0", (TODAY + 40) * DAY + 7_200_000)
    assert worker.rfm_edges_would_move(settings) is True
    refresh_at((TODAY + 40) * DAY + 7_200_000)
    assert worker.rfm_edges_would_move(settings) is False
    assert version() == 2 and len(walks) == 2


def iso(day: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=day)).isoformat()


ONE_TIME = {5: "New", 4: "One-time Recent"}  # R 3..1: "One-time Lapsed" (docs/segments.md)


def purchase(cid: str, ts_ms: int, offset: int) -> Record:
    event = {"event_id": f"{cid}-{ts_ms}", "customer_id": cid, "type": "purchase",
             "order_id": f"{cid}-{ts_ms}", "amount": "50",
             "ts": datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat()}  # fmt: skip
    return Record(0, offset, cid.encode(), json.dumps(event).encode())


class Shop:
    """Customers through the worker's batch processing and the leader's tick."""

    def __init__(self, settings, redis_client):
        self.settings, self.client = settings, redis_client
        self.keys = Keys(settings.namespace)
        self.store = StateStore.from_url(settings.redis_url, self.keys)
        self.processor = BatchProcessor(self.store, settings.scorer(), Limits())
        self.offset = 0
        self.loop = asyncio.new_event_loop()  # one loop: the store's connections live in it

    def run(self, work):
        return self.loop.run_until_complete(work)

    def buy(self, purchases: list[tuple[str, int]]) -> None:
        records = []
        for cid, ts in purchases:
            records.append(purchase(cid, ts, self.offset))
            self.offset += 1
        self.run(self.processor.process(records))

    def at(self, watermark_ms: int) -> None:
        self.client.hset(self.keys.watermark, "p:0", watermark_ms)

    def refresh(self) -> dict | None:
        return worker.refresh_rfm_edges(self.settings)

    def tick(self) -> set[str]:
        """The leader's ticks until nobody is due: the customers whose segment changed."""
        changed = set()
        for _ in range(5):
            out = self.run(Rescorer(self.processor, share=1.0).tick())
            changed |= {c.customer_id for c in out.changes}
            if not out.states:
                break
        return changed

    def due_now(self) -> set[str]:
        watermark = read_marks(self.client, self.keys).watermark()
        return set(self.run(self.store.due_customers(watermark, 10_000)))

    def states(self) -> dict:
        ids = all_customer_ids(self.client, self.keys)
        return {s.customer_id: s for s in read_states(self.client, self.keys, ids)}


def fair_segments(states: dict) -> dict[str, str]:
    """Each one-time buyer's segment from the fair split of the population's last purchases
    (tests/reference.py), whatever the time: R is a rank among the population."""
    ids = sorted(states)
    scores = reference_scores([{"last_purchase_ms": states[c].last_purchase_ms, "purchases": 1,
                                "monetary": "50"} for c in ids])  # fmt: skip
    return {c: ONE_TIME.get(r, "One-time Lapsed") for c, (r, _, _) in zip(ids, scores, strict=True)}


def noon(day: int) -> int:
    return day * DAY + DAY // 2


def test_a_silent_customer_keeps_its_segment_past_midnight(settings, redis_client):
    """The S10 bug: at midnight the customers of a cut date passed their distance edge and
    fell one R; the next refresh re-derived the same cut dates, one date further back, and
    nobody re-scored them: they kept the lower R until their next event or crossing."""
    shop = Shop(settings, redis_client)
    shop.buy([(f"c{d:02d}", noon(TODAY - d)) for d in range(0, 100, 2)])  # one every other date
    shop.at(noon(TODAY))
    assert shop.refresh() is not None
    shop.tick()
    assert {c: s.segment for c, s in shop.states().items()} == fair_segments(shop.states())
    assert shop.states()["c18"].segment == "New"  # dated on the newest cut date

    shop.at((TODAY + 1) * DAY + 5)  # midnight, and the leader's tick
    shop.tick()
    shop.refresh()  # the next refresh: the same population
    shop.tick()
    states = shop.states()
    assert {c: s.segment for c, s in states.items()} == fair_segments(states)


def test_a_republish_wakes_exactly_the_customers_whose_segment_changes(settings, redis_client):
    shop = Shop(settings, redis_client)
    shop.buy([(f"c{d:02d}", noon(TODAY - d)) for d in range(0, 100, 2)])
    shop.at(noon(TODAY))
    shop.refresh()
    shop.tick()
    assert shop.due_now() == set()
    before = {c: s.segment for c, s in shop.states().items()}

    # twelve new buyers today and tomorrow: the fifths move towards the recent dates
    shop.buy([(f"n{i:02d}", noon(TODAY + i % 2) + i) for i in range(12)])
    shop.at(noon(TODAY + 1) + 60_000)
    result = shop.refresh()
    states = shop.states()
    stored = {c: s.segment for c, s in states.items()}
    assert set(stored) - set(before) == {f"n{i:02d}" for i in range(12)}
    want = {c for c, segment in fair_segments(states).items() if stored[c] != segment}
    assert want and len(want) < len(states)  # some change, some do not
    assert shop.due_now() == want and result["woken"] == len(want)

    assert shop.tick() == want  # re-scored at the watermark, a segment change each
    states = shop.states()
    assert {c: s.segment for c, s in states.items()} == fair_segments(states)

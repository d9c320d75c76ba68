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
from streams.state.claims import claim_whole
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


def claimed(shop: Shop, by: str) -> Shop:
    """By the bands: a fresh namespace, claimed as its first worker does (the index holds
    every day cell's members); by the walk: one whose index does not (never claimed)."""
    if by == "bands":
        assert all(claim_whole(shop.client, shop.settings.namespace).values())
    return shop


def found_by(by: str, monkeypatch) -> None:
    if by == "bands":
        monkeypatch.setattr(worker, "customer_pages", lambda *a: pytest.fail("a walk"))


@pytest.mark.parametrize("by", ["bands", "walk"])
def test_a_republish_wakes_exactly_the_customers_whose_segment_changes(
    settings, redis_client, monkeypatch, by
):
    shop = claimed(Shop(settings, redis_client), by)
    shop.buy([(f"c{d:02d}", noon(TODAY - d)) for d in range(0, 100, 2)])
    shop.at(noon(TODAY))
    shop.refresh()
    shop.tick()
    assert shop.due_now() == set()
    before = {c: s.segment for c, s in shop.states().items()}

    # twelve new buyers today and tomorrow: the fifths move towards the recent dates
    shop.buy([(f"n{i:02d}", noon(TODAY + i % 2) + i) for i in range(12)])
    shop.at(noon(TODAY + 1) + 60_000)
    found_by(by, monkeypatch)  # the first edges came from none: a walk
    result = shop.refresh()
    states = shop.states()
    stored = {c: s.segment for c, s in states.items()}
    assert set(stored) - set(before) == {f"n{i:02d}" for i in range(12)}
    want = {c for c, segment in fair_segments(states).items() if stored[c] != segment}
    assert want and len(want) < len(states)  # some change, some do not
    assert shop.due_now() == want and result["woken"] == len(want)
    assert result["woken_by"] == by

    assert shop.tick() == want  # re-scored at the watermark, a segment change each
    states = shop.states()
    assert {c: s.segment for c, s in states.items()} == fair_segments(states)


def bought(cid: str, ts_ms: int, amount: str, offset: int) -> Record:
    event = {"event_id": f"{cid}-{ts_ms}", "customer_id": cid, "type": "purchase",
             "order_id": f"{cid}-{ts_ms}", "amount": amount,
             "ts": datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat()}  # fmt: skip
    return Record(0, offset, cid.encode(), json.dumps(event).encode())


def repeat_segments(states: dict) -> dict[str, str]:
    """Each customer's segment under the fair split of the population (tests/reference.py)
    and the repeat-aware grid of docs/segments.md, written here."""
    ids = sorted(states)
    rows = [{"last_purchase_ms": states[c].last_purchase_ms, "purchases": states[c].purchases,
             "monetary": str(states[c].monetary)} for c in ids]  # fmt: skip
    grid = {5: ["Promising", "Potential Loyalists", "Potential Loyalists", "Champions",
                "Champions"],
            4: ["Promising", "Potential Loyalists", "Potential Loyalists", "Loyal", "Loyal"],
            3: ["About to Sleep", "About to Sleep", "Need Attention", "Loyal", "Loyal"],
            2: ["Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"],
            1: ["Lost", "Lost", "At Risk", "At Risk", "Can't Lose Them"]}  # fmt: skip
    out = {}
    for cid, (r, f, m) in zip(ids, reference_scores(rows), strict=True):
        fm = -(-(f + m) // 2)
        out[cid] = ONE_TIME.get(r, "One-time Lapsed") if states[cid].purchases == 1 else (
            grid[r][fm - 1])  # fmt: skip
    return out


@pytest.mark.parametrize("by", ["bands", "walk"])
def test_money_edges_that_move_wake_the_customers_they_move(
    settings, redis_client, monkeypatch, by
):
    """Repeat buyers (two orders each, so F stays) of many amounts; big spenders arrive and
    the monetary edges move up: exactly the customers whose segment changes are woken."""
    if settings.segment_map != "repeat-aware":
        pytest.skip("the oracle writes the repeat-aware grid")
    shop = claimed(Shop(settings, redis_client), by)
    records = []
    for i in range(60):
        day = TODAY - (i * 7) % 120
        for k in range(2):  # a second order the next day
            records.append(bought(f"c{i:02d}", noon(day + k) + i, f"{20 + (i * 37) % 400}.25",
                                  len(records)))  # fmt: skip
    shop.run(shop.processor.process(records))
    shop.at(noon(TODAY + 1))
    shop.refresh()
    shop.tick()
    assert {c: s.segment for c, s in shop.states().items()} == repeat_segments(shop.states())

    later = []
    for i in range(25):  # big spenders, some days back: the cut dates move little
        for k in range(2):
            later.append(bought(f"big{i:02d}", noon(TODAY - 60 + i + k) + 5, f"{900 + 10 * i}",
                                len(records) + len(later)))  # fmt: skip
    shop.run(shop.processor.process(later))
    before = read_rfm_edges(redis_client, shop.keys)
    found_by(by, monkeypatch)  # the first edges came from none: a walk
    result = shop.refresh()
    assert result["edges"]["monetary_edges"] != before["monetary_edges"]
    assert result["edges"]["frequency_edges"] == before["frequency_edges"]
    states = shop.states()
    want = {c for c, segment in repeat_segments(states).items() if states[c].segment != segment}
    assert want and len(want) < len(states)
    assert shop.due_now() == want and result["woken"] == len(want)
    assert result["woken_by"] == by
    if by == "bands":
        assert result["read"] < len(states)  # the bands' customers, not everyone
    assert shop.tick() == want
    states = shop.states()
    assert {c: s.segment for c, s in states.items()} == repeat_segments(states)

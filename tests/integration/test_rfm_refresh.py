"""The RFM-edge refresh against a real Redis (S10): recency edges in whole dates, so a
watermark moving within a day, with no purchase moving a cut date, publishes nothing (and
re-schedules nobody); a new date or a moved cut publishes once.

The population histograms (the facts' ``hist:`` fields, here all in one shard) and the
watermark are written directly (what the workers' writes keep there); no customer states
are needed for the edges.
"""

from __future__ import annotations

import pytest

from streams.processing import worker
from streams.state.keys import Keys
from streams.state.store import read_rfm_edges

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


def test_a_watermark_moving_within_a_day_publishes_nothing(settings, redis_client, shop,
                                                           monkeypatch):  # fmt: skip
    keys, refresh_at, version = shop
    walks = []
    monkeypatch.setattr(worker, "reschedule", lambda *args: walks.append(args))
    for minute in range(1, 60 * 24, 97):  # 15 refreshes over the date, no new purchase
        refresh_at(TODAY * DAY + minute * 60_000)
    assert version() == 1 and len(walks) == 1  # S9: a version (and a walk) per refresh
    edges = read_rfm_edges(redis_client, keys)
    # the cut dates of 50 dates split in fifths: 10 dates each, the newest 5 (TODAY - 18 on)
    assert edges["recency_edges"] == [18.0, 38.0, 58.0, 78.0]
    assert edges["recency_timezone"] == "UTC"

    refresh_at((TODAY + 1) * DAY + 5)  # a new date: every cut date one further back
    assert version() == 2 and read_rfm_edges(redis_client, keys)["recency_edges"] == [
        19.0, 39.0, 59.0, 79.0]  # fmt: skip
    refresh_at((TODAY + 1) * DAY + 3_600_000)
    assert version() == 2

    # a purchase today moves the last-purchase split: a new version within the date
    redis_client.hincrby(keys.facts(0), f"hist:lp:{TODAY + 1}", 3)
    refresh_at((TODAY + 1) * DAY + 7_200_000)
    assert version() == 3 and len(walks) == 3

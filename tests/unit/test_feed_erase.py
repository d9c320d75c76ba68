"""The API's live feed never serves an erased customer's events (issue #26, item 9):
when it loses Kafka it cannot see the tombstones sent meanwhile, so it stops serving what
it kept; the reconnect reads the feed's worth back, tombstones and all."""

from __future__ import annotations

import json
from types import SimpleNamespace

from streams.api.feed import OutputFeed
from streams.settings import Settings


class Consumer:
    """One poll with the given records, then Kafka is gone."""

    def __init__(self, feed: OutputFeed, records: list):
        self.feed, self.records, self.polls = feed, records, 0

    def poll(self, timeout_ms: int):
        self.polls += 1
        if self.polls == 1:
            return {"tp": self.records}
        raise ConnectionError("Kafka went away")

    def close(self):
        pass


def record(key: str, value: dict | None):
    return SimpleNamespace(
        key=key.encode(), value=None if value is None else json.dumps(value).encode()
    )


def test_a_feed_that_lost_kafka_serves_nothing_it_kept():
    feed = OutputFeed(Settings.from_env({"RTBA_HOME": "/tmp"}), size=10)
    event = {"customer_id": "erased-while-down", "kind": "rfm", "from": None, "to": "New"}
    calls = []

    def consumer():
        calls.append(1)
        if len(calls) == 1:
            return Consumer(feed, [record("erased-while-down", event)])
        feed._stop.set()  # the reconnect: Kafka still down, and the test ends
        raise ConnectionError("no broker")

    feed._consumer = consumer
    feed._run()
    assert len(calls) == 2 and not feed.connected
    assert feed.recent() == []  # it kept the event, but can no longer know it is erased
    assert feed.recent(customer="erased-while-down") == []

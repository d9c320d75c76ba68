"""The live feed: the namespace's latest segment changes and churn alerts, read from the
output topics (what downstream triggers read, so the dashboard shows what they saw).

A daemon thread runs a kafka-python consumer (no consumer group: every API process reads
every partition, starting ``size`` records back from the end) and keeps the last ``size``
events; each event gets a feed sequence number, sent as the server-sent event's ``id`` so
that a browser reconnecting with ``Last-Event-ID`` misses nothing still kept. Subscribers
are asyncio queues fed with ``call_soon_threadsafe``; a subscriber too slow to keep up
loses its oldest events, never the feed's.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from dataclasses import dataclass

from streams.read.outputs import decoded, event_kind, output_consumer
from streams.settings import Settings

log = logging.getLogger(__name__)

RETRY_S = 2.0  # while Kafka is down or the topics are not there yet
SUBSCRIBER_QUEUE = 1000


@dataclass(frozen=True)
class FeedItem:
    seq: int
    kind: str  # rfm, cluster, churn
    event: dict

    def to_json(self) -> dict:
        return {"seq": self.seq, "kind": self.kind, "event": self.event}


class OutputFeed:
    def __init__(self, settings: Settings, size: int | None = None):
        self.settings = settings
        self.size = size or settings.feed_size
        self._items: deque[FeedItem] = deque(maxlen=self.size)
        self._seq = 0
        self._lock = threading.Lock()
        self._subscribers: dict[asyncio.Queue, asyncio.AbstractEventLoop] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = False

    def start(self) -> OutputFeed:
        self._thread = threading.Thread(target=self._run, name="rtba-feed", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def recent(self, kinds: set[str] | None = None, customer: str | None = None,
               limit: int = 100, after: int = 0) -> list[FeedItem]:  # fmt: skip
        """The newest kept items first, filtered; ``after``: only those with a larger seq."""
        with self._lock:
            items = list(self._items)
        out = []
        for item in reversed(items):
            if item.seq <= after or len(out) >= limit:
                break
            if (kinds and item.kind not in kinds) or (
                customer is not None and item.event.get("customer_id") != customer
            ):
                continue
            out.append(item)
        return out

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(SUBSCRIBER_QUEUE)
        with self._lock:
            self._subscribers[queue] = asyncio.get_running_loop()
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        with self._lock:
            self._subscribers.pop(queue, None)

    def add(self, event: dict) -> FeedItem:
        """Keep one event and hand it to every subscriber (the consumer thread's call)."""
        with self._lock:
            self._seq += 1
            item = FeedItem(self._seq, event_kind(event), event)
            self._items.append(item)
            subscribers = list(self._subscribers.items())
        for queue, loop in subscribers:
            try:
                loop.call_soon_threadsafe(_offer, queue, item)
            except RuntimeError:  # that subscriber's loop is closed
                self.unsubscribe(queue)
        return item

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                consumer = self._consumer()
            except Exception as exc:  # Kafka down, topics not yet created: try again
                self.connected = False
                log.debug("feed: %s; retrying in %.0f s", exc, RETRY_S)
                self._stop.wait(RETRY_S)
                continue
            self.connected = True
            try:
                while not self._stop.is_set():
                    for records in consumer.poll(timeout_ms=500).values():
                        for record in records:
                            self._take(record.key, record.value)
            except Exception:
                log.warning("feed: lost Kafka; reconnecting", exc_info=True)
                self.lost()
            finally:
                consumer.close()

    def _consumer(self):
        consumer = output_consumer(self.settings, self.settings.output_topics, False, wait_s=1)
        # Start a feed's worth back from the end of each partition.
        for tp in consumer.assignment():
            end = consumer.position(tp)
            start = consumer.beginning_offsets([tp])[tp]
            consumer.seek(tp, max(start, end - self.size))
        return consumer

    def _take(self, key: bytes | None, value: bytes | None) -> None:
        if value is None and key is not None:  # a tombstone: the customer was erased
            self.forget(key.decode("utf-8", "replace"))
            return
        event = decoded(value)
        if event is not None:
            self.add(event)

    def lost(self) -> None:
        """Kafka is gone: a tombstone sent meanwhile would go unseen, so nothing kept is
        served any longer (an erased customer's events included). The reconnect reads the
        feed's worth back again, tombstones and all."""
        with self._lock:
            self.connected = False
            self._items.clear()

    def forget(self, customer_id: str) -> int:
        """Drop an erased customer's kept events; how many went."""
        with self._lock:
            kept = [item for item in self._items if item.event.get("customer_id") != customer_id]
            gone = len(self._items) - len(kept)
            self._items = deque(kept, maxlen=self.size)
        return gone


def _offer(queue: asyncio.Queue, item: FeedItem) -> None:
    if queue.full():
        queue.get_nowait()  # the slow subscriber loses its oldest
    queue.put_nowait(item)

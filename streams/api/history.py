"""The dashboard's history: every ``RTBA_DASHBOARD_SAMPLE_S`` one API process samples the
RFM segment and cluster sizes, the pipeline's counters and the consumer group's lag, and
pushes the sample onto a capped Redis list, so the plots survive an API restart and every
API process shows the same ones.

Which process samples is settled by a lease (SET NX PX for one interval): two APIs never
double the samples, and when one stops another takes over. A sample reads the population
facts (a few small hashes, streams.state.facts), not the customers: its cost does not grow
with the population (S10; it walked everyone before, 6.9 s at 100,000 customers). The
sampler still spends at most a fifth of its time sampling, a guard should Redis be slow.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time

from streams.read.reader import StateReader
from streams.state.store import read_stats

log = logging.getLogger(__name__)

DUTY = 0.2  # at most this share of the sampler's time goes to sampling


def sizes_sample(reader: StateReader, now_ms: int, lag: int | None) -> dict:
    """One dashboard sample: sizes from the population facts (each customer's segment and
    cluster at its last evaluation), the mean recency as of the watermark."""
    summary = reader.summary(reader.as_of())
    stats = read_stats(reader.client, reader.keys)
    return {
        "t": now_ms,
        "as_of": summary["as_of"],
        "customers": summary["customers"],
        "segments": {row["segment"]: row["customers"] for row in summary["rfm"]},
        "clusters": {str(row["id"]): row["customers"] for row in summary["clusters"]},
        "records": stats.get("records", 0),
        "applied": stats.get("applied", 0),
        "dlq": stats.get("dlq", 0),
        "lag": lag,
    }


class GroupLag:
    """Records of the events topic the workers' consumer group has not committed yet, summed
    over partitions (None while Kafka or the group cannot be asked)."""

    def __init__(self, settings):
        self.settings = settings
        self._admin = self._consumer = None

    def __call__(self) -> int | None:
        from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

        try:
            if self._admin is None:
                given = {
                    "bootstrap_servers": self.settings.kafka_bootstrap.split(","),
                    "request_timeout_ms": 3000,
                    **self.settings.kafka_options(),
                }
                self._admin = KafkaAdminClient(**given)
                self._consumer = KafkaConsumer(**given)
            topic = self.settings.events_topic
            parts = [TopicPartition(topic, p) for p in self._consumer.partitions_for_topic(topic)
                     or ()]  # fmt: skip
            if not parts:
                return None
            group = self.settings.app_id
            committed = self._admin.list_group_offsets({group: parts}).get(group, {})
            ends = self._consumer.end_offsets(parts)
            # a partition the group never committed: all of it is behind
            done = {tp: max(committed[tp].offset, 0) if tp in committed else 0 for tp in parts}
            return sum(ends[tp] - done[tp] for tp in parts)
        except Exception as exc:
            log.debug("lag: %s", exc)
            self.close()
            return None

    def close(self) -> None:
        for client in (self._admin, self._consumer):
            if client is not None:
                client.close()
        self._admin = self._consumer = None


class Sampler:
    def __init__(self, reader: StateReader, interval_s: float, keep: int, lag=None):
        self.reader = reader
        self.interval_s = interval_s
        self.keep = keep
        self.lag = lag if lag is not None else GroupLag(reader.settings)
        self.token = f"{os.getpid()}-{id(self)}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="rtba-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if hasattr(self.lag, "close"):
            self.lag.close()

    def pause_after(self, took_s: float) -> float:
        """Seconds from the end of a sample that took ``took_s`` to the next one.

        >>> s = Sampler(None, interval_s=10, keep=2, lag=lambda: None)
        >>> s.pause_after(1.0), s.pause_after(5.0)
        (9.0, 20.0)
        """
        return max(self.interval_s - took_s, took_s * (1 / DUTY - 1), 0.05)

    def take(self) -> dict | None:
        """Take this interval's sample unless another process holds the lease."""
        keys, client = self.reader.keys, self.reader.client
        lease_ms = max(int(self.interval_s * 1000) - 50, 1)
        if not client.set(keys.dashboard_lease, self.token, nx=True, px=lease_ms):
            return None
        began = time.monotonic()
        sample = sizes_sample(self.reader, int(time.time() * 1000), self.lag())
        with client.pipeline(transaction=False) as pipe:
            pipe.lpush(keys.dashboard_history, json.dumps(sample))
            pipe.ltrim(keys.dashboard_history, 0, self.keep - 1)
            # hold the lease through the pause, so no other process samples in it
            pause_ms = int(self.pause_after(time.monotonic() - began) * 1000) - 50
            pipe.set(keys.dashboard_lease, self.token, px=max(pause_ms, 1))
            pipe.execute()
        return sample

    def _run(self) -> None:
        while not self._stop.is_set():
            started, sampled = time.monotonic(), None
            try:
                sampled = self.take()
            except Exception as exc:  # Redis down: the next interval tries again
                log.warning("dashboard sample failed: %s", exc)
            took = time.monotonic() - started
            self._stop.wait(self.pause_after(took) if sampled else self.interval_s)


def read_history(reader: StateReader, limit: int) -> list[dict]:
    """The newest ``limit`` samples, oldest first."""
    raw = reader.client.lrange(reader.keys.dashboard_history, 0, limit - 1)
    return [json.loads(item) for item in reversed(raw)]

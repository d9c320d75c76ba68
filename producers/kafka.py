"""The one way producers write to Kafka: JSON values keyed by customer id."""

from __future__ import annotations

import json
from collections.abc import Iterable

from kafka import KafkaProducer
from kafka.serializer import Serializer


class KeySerializer(Serializer):
    def serialize(self, topic, headers, data):
        return data.encode() if isinstance(data, str) else data


class JsonSerializer(Serializer):
    """dicts as compact JSON; bytes and None (a tombstone) pass through untouched (for raw
    or hostile payloads)."""

    def serialize(self, topic, headers, data):
        if data is None or isinstance(data, bytes):
            return data
        return json.dumps(data, separators=(",", ":")).encode()


def make_producer(bootstrap: str, **security) -> KafkaProducer:
    """``security``: kafka-python's options (streams.settings.Settings.kafka_options)."""
    return KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        acks="all",
        linger_ms=5,
        key_serializer=KeySerializer(),
        value_serializer=JsonSerializer(),
        **security,
    )


def send_all(producer: KafkaProducer, topic: str, events: Iterable[dict]) -> int:
    """Send events (keyed by customer_id; watermarks unkeyed) and wait for every ack."""
    count = 0
    for event in events:
        producer.send(topic, key=event.get("customer_id"), value=event)
        count += 1
    producer.flush()
    return count


def watermark(ts_iso: str) -> dict:
    return {"type": "watermark", "ts": ts_iso}


def send_watermark(producer: KafkaProducer, topic: str, ts_iso: str) -> int:
    """Tell every partition that event time has reached ``ts_iso`` (after what was sent before).

    The workers' watermark is the least partition mark, so a heartbeat on one partition
    alone would not move it.
    """
    partitions = sorted(producer.partitions_for(topic))
    for partition in partitions:
        producer.send(topic, value=watermark(ts_iso), partition=partition)
    producer.flush()
    return len(partitions)

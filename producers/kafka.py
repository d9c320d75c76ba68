"""The one way producers write to Kafka: JSON values keyed by customer id."""

from __future__ import annotations

import json
from collections.abc import Iterable

from kafka import KafkaProducer


def make_producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        acks="all",
        linger_ms=5,
        retries=10,
        key_serializer=lambda k: k.encode() if isinstance(k, str) else k,
        value_serializer=lambda v: v if isinstance(v, bytes) else json.dumps(v).encode(),
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

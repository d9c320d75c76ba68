"""Reading the namespace's output topics (segment changes, churn alerts) from Kafka, for
`rtba tail` and the API's live feed: one consumer over every partition, and each event's
kind."""

from __future__ import annotations

import json
import time

from streams.errors import ConfigError
from streams.settings import Settings


def decoded(value: bytes | None) -> dict | None:
    """An output record's event; None for a tombstone (an erased customer's key with no
    value, streams.erasure) or a record that is not one of ours.

    >>> decoded(b'{"kind": "rfm"}'), decoded(None), decoded(b"[1]"), decoded(b"{")
    ({'kind': 'rfm'}, None, None, None)
    """
    if value is None:
        return None
    try:
        event = json.loads(value)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def event_kind(event: dict) -> str:
    """``churn`` for a churn alert, ``audience`` for an audience change, else the segment
    change's kind (``rfm``, ``cluster``).

    >>> event_kind({"churn_risk": 0.8}), event_kind({"kind": "cluster"})
    ('churn', 'cluster')
    >>> event_kind({"audience": "gift-browsers", "change": "enter"})
    'audience'
    """
    if "churn_risk" in event:
        return "churn"
    return "audience" if "audience" in event else event.get("kind", "?")


def output_consumer(chosen: Settings, topics: list[str], from_start: bool,
                    group: str | None = None, wait_s: float = 5.0):  # fmt: skip
    """A kafka-python consumer of every partition of ``topics``, at the end (or the start)
    of each; ConfigError when none of them exists after ``wait_s``."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=chosen.kafka_bootstrap.split(","),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **chosen.kafka_options(),
    )
    deadline = time.monotonic() + wait_s  # a topic created a moment ago may not be known yet
    while True:
        parts = [
            TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()
        ]
        if parts or time.monotonic() > deadline:
            break
        time.sleep(0.2)
        consumer.topics()  # asks the broker again
    if not parts:
        consumer.close()
        raise ConfigError(
            f"no topic {' or '.join(topics)} on {chosen.kafka_bootstrap}: is "
            f"RTBA_NAMESPACE={chosen.namespace} right? (`rtba stack up` creates them)"
        )
    consumer.assign(parts)
    if group is None:
        (consumer.seek_to_beginning if from_start else consumer.seek_to_end)(*parts)
    return consumer

"""``rtba erase`` and ``DELETE /customers/{id}``: a customer's every trace out of Redis,
then a tombstone (its key, a null value) on each output topic and on the features topic
(where it tells the cluster trainer to drop the customer from its sample), then an AOF
rewrite (rate-limited: streams.state.erase.rewrite_aof).

The tombstone goes to the partition the customer's events went to (kafka-python's and
aiokafka's default partitioners both hash the key with murmur2), so a compacted
downstream table drops the customer, and every rtba API process drops it from its live
feed. Redis first: a crash before the tombstones leaves nothing in rtba to find, and
erasing again sends them again (erasing an unknown id is harmless and says so).
"""

from __future__ import annotations

from streams.settings import Settings
from streams.state.erase import Eraser, rewrite_aof
from streams.state.facts import namespace_days
from streams.state.keys import Keys


def erase_customers(settings: Settings, client, customer_ids: list[str]) -> list[dict]:
    """Erase each customer and send its tombstones; one report per customer."""
    from kafka import KafkaProducer

    keys = Keys(settings.namespace)
    eraser = Eraser(client, keys, namespace_days(client, keys, settings.days()))
    reports = [erased.to_json() for erased in eraser.erase_all(customer_ids)]
    aof = rewrite_aof(client, keys)
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        acks="all",
        **settings.kafka_options(),
    )
    try:
        sent = [
            producer.send(topic, key=cid.encode(), value=None)
            for cid in customer_ids
            for topic in [*settings.output_topics, settings.features_topic]
        ]
        producer.flush()
        for future in sent:
            future.get(timeout=30)  # raises if the broker refused one
    finally:
        producer.close()
    for report in reports:
        report["tombstones"] = settings.output_topics
        report["features_tombstone"] = settings.features_topic
        report["aof_rewrite"] = aof
    return reports


def erased_before_refused(record, ref, erased) -> bool:
    """Whether a DLQ record belongs to a customer erased after the record was refused:
    `rtba dlq --redrive` skips it. The customer is the payload's ``customer_id`` (or, in
    a payload that is not JSON, the record's key), looked up as ``rtba erase`` looks it
    up (``ref``: NFC, pseudonym if the key is set); the DLQ record's Kafka timestamp (when
    the worker refused it) is compared with the erase time in ``erased``
    (streams.state.erase.ErasedIds). A record refused after the erase is a customer that
    came back: re-driven."""
    import json

    given: set[str] = set()
    try:
        payload = json.loads(record.value or b"")
        if isinstance(payload, dict) and isinstance(payload.get("customer_id"), str):
            given.add(payload["customer_id"])
    except ValueError:
        pass
    if record.key:
        given.add(record.key.decode("utf-8", "replace"))
    for cid in given:
        try:
            stored = ref(cid)
        except ValueError:  # an id ingestion refuses never had state
            continue
        at = erased.erased_at_ms(stored)
        if at is not None and record.timestamp < at:
            return True
    return False

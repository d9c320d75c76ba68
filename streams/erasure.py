"""``rtba erase`` and ``DELETE /customers/{id}``: a customer's every trace out of Redis,
then a tombstone (its key, a null value) on each output topic.

The tombstone goes to the partition the customer's events went to (kafka-python's and
aiokafka's default partitioners both hash the key with murmur2), so a compacted
downstream table drops the customer, and every rtba API process drops it from its live
feed. Redis first: a crash before the tombstones leaves nothing in rtba to find, and
erasing again sends them again (erasing an unknown id is harmless and says so).
"""

from __future__ import annotations

from streams.settings import Settings
from streams.state.erase import Eraser
from streams.state.keys import Keys


def erase_customers(settings: Settings, client, customer_ids: list[str]) -> list[dict]:
    """Erase each customer and send its tombstones; one report per customer."""
    from kafka import KafkaProducer

    eraser = Eraser(client, Keys(settings.namespace))
    reports = [eraser.erase(cid).to_json() for cid in customer_ids]
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        acks="all",
        **settings.kafka_options(),
    )
    try:
        sent = [
            producer.send(topic, key=cid.encode(), value=None)
            for cid in customer_ids
            for topic in settings.output_topics
        ]
        producer.flush()
        for future in sent:
            future.get(timeout=30)  # raises if the broker refused one
    finally:
        producer.close()
    for report in reports:
        report["tombstones"] = settings.output_topics
    return reports

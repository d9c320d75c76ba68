"""Creating rtba's topics (idempotent), with kafka-python's admin client."""

from __future__ import annotations

import time

from kafka import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError

from streams.settings import Settings


def admin_client(bootstrap: str, timeout_s: float = 30.0) -> KafkaAdminClient:
    """An admin client, waiting up to ``timeout_s`` for the broker to answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return KafkaAdminClient(
                bootstrap_servers=bootstrap.split(","),
                client_id="rtba-admin",
                request_timeout_ms=10_000,
            )
        except (KafkaError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create any of the namespace's topics that are missing; returns those created."""
    admin = admin_client(settings.kafka_bootstrap, timeout_s)
    try:
        existing = set(admin.list_topics())
        wanted = {name: settings.partitions for name in settings.all_topics}
        wanted[settings.features_topic] = 1
        missing = [name for name in wanted if name not in existing]
        if missing:
            spec = {
                name: {
                    "num_partitions": wanted[name],
                    "replication_factor": settings.replication_factor,
                }
                for name in missing
            }
            try:
                admin.create_topics(spec, wait_for_metadata=True)
            except TopicAlreadyExistsError:
                pass  # another worker or producer created it first
        return missing
    finally:
        admin.close()

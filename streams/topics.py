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


class TopicIds:
    """Reads a topic's Kafka topic id (a UUID that changes when the topic is deleted and
    re-created, unlike its name). Blocking: call it in a thread. One admin client, made on
    first use and again after a failure."""

    def __init__(self, bootstrap: str, topic: str):
        self.bootstrap = bootstrap
        self.topic = topic
        self._admin: KafkaAdminClient | None = None

    def __call__(self) -> str | None:
        """The id, or None when the broker cannot say (down, or the topic is absent)."""
        try:
            if self._admin is None:
                self._admin = admin_client(self.bootstrap, timeout_s=5.0)
            for topic in self._admin.describe_topics([self.topic]):
                if topic.get("name") == self.topic and not topic.get("error_code"):
                    return topic.get("topic_id")
            return None
        except (KafkaError, OSError):
            self.close()
            return None

    def close(self) -> None:
        if self._admin is not None:
            try:
                self._admin.close()
            except Exception:  # noqa: BLE001 - closing a broken client, nothing to do
                pass
            self._admin = None

"""rtba's topics, declared once in ``TOPICS``, and creating them (idempotent) with
kafka-python's admin client. Adding an output topic is one row: the workers declare it,
``ensure_topics``, ``rtba tail`` and ``rtba reset`` take it from here, and an output
event names it by its key (``SegmentChange.output``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kafka import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError

if TYPE_CHECKING:
    from streams.settings import Settings


@dataclass(frozen=True)
class Topic:
    suffix: str  # the name after "<namespace>."
    role: str  # "input", "dlq", "output" (what downstream triggers read) or "internal"
    partitions: int | None = None  # None: RTBA_PARTITIONS


TOPICS = {
    "events": Topic("events", "input"),
    "dlq": Topic("dlq", "dlq"),
    "segment_changes": Topic("segment-changes", "output"),
    "churn_risk": Topic("churn-risk", "output"),
    "audience_changes": Topic("audience-changes", "output"),
    # one partition: the cluster trainer's input, so exactly one worker learns
    "features": Topic("features", "internal", partitions=1),
}
OUTPUTS = [key for key, topic in TOPICS.items() if topic.role == "output"]


def admin_client(bootstrap: str, timeout_s: float = 30.0, **security) -> KafkaAdminClient:
    """An admin client, waiting up to ``timeout_s`` for the broker to answer; ``security``
    is kafka-python's (Settings.kafka_options)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return KafkaAdminClient(
                bootstrap_servers=bootstrap.split(","),
                client_id="rtba-admin",
                request_timeout_ms=10_000,
                **security,
            )
        except (KafkaError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create any of the namespace's topics that are missing; returns those created."""
    admin = admin_client(settings.kafka_bootstrap, timeout_s, **settings.kafka_options())
    try:
        existing = set(admin.list_topics())
        wanted = {settings.topic(key): topic.partitions or settings.partitions
                  for key, topic in TOPICS.items()}  # fmt: skip
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


def events_partitions(settings: Settings, timeout_s: float = 30.0) -> int | None:
    """How many partitions the events topic has (None: the broker does not say). A topic
    made under another RTBA_PARTITIONS keeps its own count, and the workers go by it
    (streams.state.due_index.shards_of)."""
    admin = admin_client(settings.kafka_bootstrap, timeout_s, **settings.kafka_options())
    try:
        for topic in admin.describe_topics([settings.events_topic]):
            if topic.get("name") == settings.events_topic and not topic.get("error_code"):
                return len(topic.get("partitions") or []) or None
        return None
    finally:
        admin.close()


class TopicIds:
    """Reads a topic's Kafka topic id (a UUID that changes when the topic is deleted and
    re-created, unlike its name). Blocking: call it in a thread. One admin client, made on
    first use and again after a failure."""

    def __init__(self, bootstrap: str, topic: str, security: dict | None = None):
        self.bootstrap = bootstrap
        self.topic = topic
        self.security = security or {}
        self._admin: KafkaAdminClient | None = None

    def __call__(self) -> str | None:
        """The id, or None when the broker cannot say (down, or the topic is absent)."""
        try:
            if self._admin is None:
                self._admin = admin_client(self.bootstrap, timeout_s=5.0, **self.security)
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

"""The Faust app: one agent that reads behavior.events in batches, applies them
to Redis and emits segment changes and DLQ records. Kept thin: the logic is in
streams.pipeline and online_models.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import faust

from streams.keys import Keys
from streams.pipeline import Record
from streams.schemas import Limits
from streams.settings import Settings
from streams.store import StateStore
from streams.worker import BatchProcessor


def dlq_headers(source_topic: str, record: Record, reason: str, detail: str) -> list:
    return [
        ("rtba.dlq.reason", reason.encode()),
        ("rtba.dlq.detail", detail.encode()),
        ("rtba.dlq.source", f"{source_topic}/{record.partition}/{record.offset}".encode()),
    ]


@dataclass(frozen=True)
class Pipeline:
    """The app and its topics and agent, so tests and the CLI reach them without globals."""

    app: faust.App
    events: faust.TopicT
    dlq: faust.TopicT
    segment_changes: faust.TopicT
    apply_events: faust.types.AgentT


def create_app(settings: Settings) -> Pipeline:
    datadir = (settings.home / "faust" / settings.namespace).resolve()
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{hp}" for hp in settings.kafka_bootstrap.split(",")],
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.partitions,
        datadir=str(datadir),
        web_enabled=False,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
    )
    events = app.topic(settings.events_topic, key_type=bytes, value_type=bytes)
    dlq = app.topic(settings.dlq_topic, key_type=bytes, value_type=bytes)
    segment_changes = app.topic(settings.segment_changes_topic, key_type=bytes, value_type=bytes)
    limits = Limits(
        max_event_bytes=settings.max_event_bytes,
        max_amount=settings.max_amount,
        max_future_ms=int(settings.max_future_s * 1000),
    )

    @app.agent(events)
    async def apply_events(stream):
        # One Redis client per agent, made at start-up; its scripts are registered once.
        processor = BatchProcessor(
            StateStore.from_url(settings.redis_url, Keys(settings.namespace)),
            settings.scorer(),
            limits,
        )
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_within_s):
            records = [
                Record(e.message.partition, e.message.offset, e.message.key, e.message.value)
                for e in batch
            ]
            outcome = await processor.process(records)
            sent = [
                await dlq.send(
                    key=record.key,
                    value=record.value,
                    headers=dlq_headers(events.get_topic_name(), record, why.reason, why.detail),
                )
                for record, why in outcome.rejected
            ]
            sent += [
                await segment_changes.send(
                    key=change.customer_id.encode(), value=json.dumps(change.to_json()).encode()
                )
                for change in outcome.changes
            ]
            # Wait for the broker's acks before take() acks (commits) the batch.
            await asyncio.gather(*sent)

    return Pipeline(app, events, dlq, segment_changes, apply_events)

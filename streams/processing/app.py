"""The Faust app: one agent that reads behavior.events in batches, applies them
to Redis and emits segment changes, churn alerts and DLQ records; a timer on every
worker re-scoring its own partitions' customers as event time passes, and leader-only
timers for the work that must happen once per cluster (sweeps, the outbox relay,
refitting the churn model and the RFM edges). Kept thin: the
logic is in streams.processing.pipeline, streams.processing.worker and online_models.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial

import faust
from faust.types import TP

from online_models.customer import MS_PER_DAY
from streams.privacy import Pseudonyms
from streams.processing.faults import Faults
from streams.processing.logs import PROGRESS_S, SLOW_S, Progress, SlowStep
from streams.processing.metrics import WorkerMetrics
from streams.processing.offload import JobProcess
from streams.processing.pipeline import BatchOutcome, Record
from streams.processing.schemas import Limits
from streams.processing.topics import OUTPUTS, TOPICS, TopicIds
from streams.processing.transport import TRANSPORT
from streams.processing.worker import (
    BatchProcessor,
    ClusterTrainer,
    OutboxRelay,
    RefitSkipped,
    Rescorer,
    TopicIncarnation,
    refit_churn,
    refresh_rfm_edges,
    retry_transient,
    rfm_edges_would_move,
    training_samples,
)
from streams.settings import Settings
from streams.state import due_index
from streams.state.keys import Keys
from streams.state.store import StateStore

log = logging.getLogger(__name__)

# Records of the features topic per train call: each carries up to a batch's samples.
TRAIN_RECORDS = 4


def dlq_headers(source_topic: str, record: Record, reason: str, detail: str) -> list:
    return [
        ("rtba.dlq.reason", reason.encode()),
        ("rtba.dlq.detail", detail.encode()),
        ("rtba.dlq.source", f"{source_topic}/{record.partition}/{record.offset}".encode()),
    ]


@dataclass(frozen=True)
class Pipeline:
    """The app and its topics, agent and timers, so tests and the CLI reach them without globals."""

    app: faust.App
    topics: dict[str, faust.TopicT]  # by streams.processing.topics.TOPICS key
    apply_events: faust.types.AgentT
    emit: object
    metrics: WorkerMetrics


def broker_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """Faust's form of the Kafka security settings (kafka-python's: Settings.kafka_options)."""
    context = settings.kafka_ssl_context()
    if settings.kafka_security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.secret("kafka_sasl_password"),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def faust_app(settings: Settings, app_id: str | None = None) -> faust.App:
    """The Faust app with rtba's settings and no agents (the benchmark's do-nothing agent
    runs on it too, so the two compare like for like)."""
    datadir = (settings.home / "faust" / settings.namespace).resolve()
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id or settings.app_id,
        broker=[f"{TRANSPORT}://{hp}" for hp in settings.kafka_bootstrap.split(",")],
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.partitions,
        datadir=str(datadir),
        web_enabled=False,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.session_timeout_s / 4,
        consumer_group_instance_id=settings.worker_id,
        broker_credentials=broker_credentials(settings),
    )
    app.rtba_fetch_wait_ms = settings.fetch_wait_ms  # read by streams.processing.transport
    return app


def create_app(settings: Settings) -> Pipeline:
    app = faust_app(settings)
    topics = {
        key: app.topic(
            settings.topic(key), key_type=bytes, value_type=bytes, partitions=topic.partitions
        )
        for key, topic in TOPICS.items()
    }
    events, dlq, features = topics["events"], topics["dlq"], topics["features"]
    limits = Limits(
        max_event_bytes=settings.max_event_bytes,
        max_amount=settings.max_amount,
        max_future_ms=int(settings.max_future_s * 1000),
    )
    faults = Faults.from_env()  # no-ops unless a fault-injection test set RTBA_FAULTS
    # One Redis client per worker process; its scripts are registered once, here.
    store = StateStore.from_url(
        settings.redis_url, Keys(settings.namespace), **settings.redis_options()
    )
    processor = BatchProcessor(
        store,
        settings.scorer(),
        limits,
        allowed_lateness_ms=int(settings.allowed_lateness_s * 1000),
        order_horizon_ms=round(settings.order_horizon_days * MS_PER_DAY),
        incarnation=TopicIncarnation(
            store,
            TopicIds(settings.kafka_bootstrap, settings.events_topic, settings.kafka_options()),
        ),
        faults=faults,
        pseudonyms=Pseudonyms(key) if (key := settings.secret("pseudonym_key")) else None,
        retention_ms=settings.retention_ms(),
        days=settings.days(),
    )

    def due_shards() -> list[int]:
        """The due-index shards of the events partitions this worker holds now (none while
        it rebalances: the next tick re-scores them)."""
        try:
            held = app.consumer.assignment()
        except Exception:  # no consumer yet, or rebalancing
            return []
        mine = [tp.partition for tp in held if tp.topic == settings.events_topic]
        return due_index.shards_of(mine, settings.partitions)  # the topic's (`rtba worker`)

    rescorer = Rescorer(processor, shards=due_shards)
    relay = OutboxRelay(store)

    outputs = {key: topics[key] for key in OUTPUTS}
    progress = Progress(log)
    metrics = WorkerMetrics()

    def behind(records: list[Record]) -> dict[int, int]:
        """Per partition of a batch: records left after it, by the consumer's last fetch."""
        last: dict[int, int] = {}
        for record in records:
            last[record.partition] = max(last.get(record.partition, -1), record.offset)
        lags = {}
        for partition, offset in last.items():
            try:
                highwater = app.consumer.highwater(TP(settings.events_topic, partition))
            except Exception:  # the consumer is rebalancing: the next batch tells
                continue
            if highwater is not None:
                lags[partition] = highwater - offset - 1
        return lags

    async def emit(outcome: BatchOutcome) -> None:
        """Send a batch's DLQ records, outbox entries and training samples; once the broker
        acknowledged them all, forget the outbox entries."""
        sent = [
            await dlq.send(
                key=record.key,
                value=record.value,
                headers=dlq_headers(events.get_topic_name(), record, why.reason, why.detail),
            )
            for record, why in outcome.rejected
        ]
        sent += [
            await outputs[entry.output].send(key=entry.customer_id.encode(), value=entry.payload)
            for entry in outcome.outbox
        ]
        # customers past their retention: a tombstone per output topic before the erase,
        # and on the features topic, where it takes them out of the cluster learner
        sent += [
            await output.send(key=cid.encode(), value=None)
            for cid in outcome.expired
            for output in [*outputs.values(), features]
        ]
        # A batch's training samples go as one record: a record per customer cost the
        # emit more than the outputs did (Faust's send path, per record; docs/performance.md).
        samples = [[cid, sample] for cid, sample in outcome.samples.items() if sample is not None]
        if samples:
            sent.append(await features.send(key=b"samples", value=json.dumps(samples).encode()))
        await asyncio.gather(*sent)
        metrics.sent(
            (why.reason for _, why in outcome.rejected),
            ((entry.output, entry.payload) for entry in outcome.outbox),
        )
        await retry_transient(lambda: store.outbox_done(outcome.outbox), "the outbox")

    @app.agent(events)
    async def apply_events(stream):
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_within_s):
            records = [
                Record(e.message.partition, e.message.offset, e.message.key, e.message.value)
                for e in batch
            ]
            with SlowStep(f"a batch of {len(records)} events", log, last="emitted") as step:
                outcome = await processor.process(records)
                step.mark("applied")
                if outcome.applied:  # the window between a write and its send
                    faults.crash("crash_before_send")
                await emit(outcome)
            progress.batch(len(records), len(outcome.rejected), len(outcome.outbox))
            metrics.batch_seconds.observe(step.took_s)
            metrics.read(outcome.types)
            metrics.lags(behind(records))
            metrics.models(processor.models.versions)

    @app.timer(PROGRESS_S)
    async def report_progress():
        progress.report()

    @app.on_partitions_assigned.connect
    async def on_partitions_assigned(app, assigned, **kwargs):
        mine = sorted(tp.partition for tp in assigned if tp.topic == settings.events_topic)
        progress.assigned(mine, settings.events_topic)
        metrics.held(mine)

    @app.agent(features)
    async def train_clusters(stream):
        # The features topic has one partition: exactly one worker runs this learner.
        trainer = await ClusterTrainer.resume(store, settings)
        # Each record holds one worker batch's samples (emit): a few records a train call.
        async for batch in stream.take_events(TRAIN_RECORDS, within=1.0):
            samples = [pair for e in batch for pair in training_samples(e.key, e.value)]
            with SlowStep(f"training on {len(samples)} samples", log) as step:
                await trainer.train(samples)
            metrics.refit_seconds.labels("clusters").observe(step.took_s)

    async def emit_or_log(
        outcomes: Callable[[], AsyncIterator[BatchOutcome]], what: str, slow_s: float = SLOW_S
    ):
        """A leader timer's work and its sends, each outcome sent as it comes. A timer that
        raises takes the whole worker down with it; a failed run loses nothing (the due
        index, the models and the outbox stay as they were), so log it and let the next
        run retry."""
        try:
            with SlowStep(f"a run of the {what}", log, slow_s):
                async for outcome in outcomes():
                    await emit(outcome)
        except Exception:
            log.exception("%s failed; the next run retries", what)

    @app.timer(settings.tick_s)
    async def rescore_due_customers():
        # On every worker, for its own partitions' due customers; the leader's also takes
        # the namespace's single passes (Rescorer.slices). A tick stretches (it leaves two
        # thirds of the loop to the agent): slow once it overruns.
        work = partial(rescorer.slices, app.is_leader())
        await emit_or_log(work, "re-scoring tick", settings.tick_s)

    async def relay_leftovers():
        yield await relay.leftovers()

    @app.timer(settings.outbox_relay_s, on_leader=True)
    async def relay_outbox_leftovers():
        await emit_or_log(relay_leftovers, "outbox relay")

    jobs = JobProcess()

    async def in_background(job, what: str, metric: str) -> None:
        """Run a blocking leader job (population scan, optimiser) off the event loop."""
        started = time.perf_counter()
        try:
            result = await jobs.run(partial(job, settings))
        except RefitSkipped as exc:
            log.warning("%s did not run: %s", what, exc)
            return
        except Exception:
            log.exception("%s failed; the next run retries", what)
            return
        metrics.refit_seconds.labels(metric).observe(time.perf_counter() - started)
        if result:
            log.info("%s: %s", what, result)

    @app.timer(settings.churn_refit_s, on_leader=True)
    async def refit_churn_model():
        await in_background(refit_churn, "churn refit", "churn")

    if settings.rfm_adaptive:

        @app.timer(settings.rfm_refresh_s, on_leader=True)
        async def refresh_rfm_scores():
            # Edges that do not move cost a read of the facts here, not a spawned child
            # (~1 s of CPU before it does anything): most refreshes find nothing moved.
            try:
                moved = await asyncio.to_thread(rfm_edges_would_move, settings)
            except Exception:
                log.exception("RFM edge refresh failed; the next run retries")
                return
            if moved:
                await in_background(refresh_rfm_edges, "RFM edge refresh", "rfm")

    return Pipeline(app, topics, apply_events, emit, metrics)

"""What a worker does, as objects the Faust app drives: the batch step (decode,
load, fold, save), the time-driven re-scoring tick, and the churn refit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

import redis.exceptions

from online_models import churn_risk
from online_models.rfm import RFMScorer
from streams.keys import Keys
from streams.pipeline import (
    BatchOutcome,
    Models,
    Record,
    decode_batch,
    fold_batch,
    lookups,
    next_due_ms,
    rescore_due,
)
from streams.schemas import Limits
from streams.settings import Settings
from streams.store import StateStore, all_customer_ids, connect, publish_churn_model, read_marks
from streams.store import read_states as read_states_sync

log = logging.getLogger(__name__)

TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


async def retry_transient(step, what: str):
    """Run ``step()`` until it gets through Redis outages.

    The Faust take() buffer acks its events even when the agent raises, so
    giving up here would lose them: a transient failure is retried until Redis
    is back.
    """
    delay = 0.1
    while True:
        try:
            return await step()
        except TRANSIENT as exc:
            log.warning("Redis unavailable during %s (%s); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class ModelCache:
    """The churn model the worker scores with, reloaded when its stored version changes."""

    def __init__(self, store: StateStore, rfm: RFMScorer):
        self.store = store
        self.models = Models(rfm)
        self.version = 0

    async def refresh(self, stored_version: int) -> Models:
        if stored_version != self.version:
            churn = await self.store.churn_model()
            self.models = Models(self.models.rfm, churn)
            self.version = churn.version if churn else 0
            log.info("churn model version %s loaded", self.version)
        return self.models


class BatchProcessor:
    def __init__(
        self,
        store: StateStore,
        scorer: RFMScorer,
        limits: Limits,
        allowed_lateness_ms: int = 0,
        clock: Callable[[], float] = time.time,
        max_conflict_retries: int = 20,
    ):
        self.store = store
        self.allowed_lateness_ms = allowed_lateness_ms
        self.limits = limits
        self.clock = clock
        self.max_conflict_retries = max_conflict_retries
        self.models = ModelCache(store, scorer)

    async def process(self, records: Sequence[Record]) -> BatchOutcome:
        return await retry_transient(lambda: self._process_once(records), "a batch")

    async def _process_once(self, records: Sequence[Record]) -> BatchOutcome:
        valid, rejected = decode_batch(records, int(self.clock() * 1000), self.limits)
        total = BatchOutcome(rejected=rejected)
        pending = valid
        counters = {"records": len(records), "dlq": len(rejected)}
        for _, rejection in rejected:
            counters[f"dlq:{rejection.reason}"] = counters.get(f"dlq:{rejection.reason}", 0) + 1
        lost: dict[str, list[int]] = {}  # counts already written for customers whose write lost
        for _ in range(self.max_conflict_retries):
            states, model_version = await self.store.load(lookups(pending))
            models = await self.models.refresh(model_version)
            out = fold_batch(pending, states, models)
            for name, i in (("applied", 0), ("duplicates", 1), ("redelivered", 2)):
                counters[name] = counters.get(name, 0) + sum(c[i] for c in out.counts.values())
                counters[name] -= sum(c[i] for c in lost.values())
            result = await self.store.save(
                out.states,
                out.due,
                counters,
                out.partition_marks(self.allowed_lateness_ms),
                max(out.max_event_ts.values(), default=None),
            )
            conflicts = _merge(total, out, set(result.conflicts))
            if not conflicts:
                return total
            # Another writer got there first: re-read and re-fold just those customers,
            # and take back what this attempt counted for them.
            log.info("write conflict on %d customers; re-folding", len(conflicts))
            pending = [(r, e) for r, e in pending if getattr(e, "customer_id", None) in conflicts]
            lost = {cid: out.counts.get(cid, [0, 0, 0]) for cid in conflicts}
            counters = {}
        raise RuntimeError(f"gave up after {self.max_conflict_retries} write conflicts")


def _merge(total: BatchOutcome, out: BatchOutcome, conflicts: set[str]) -> set[str]:
    """Add a fold's results to ``total``, except those of customers whose write lost."""
    for cid, (applied, duplicates, redelivered) in out.counts.items():
        if cid not in conflicts:
            total.applied += applied
            total.duplicates += duplicates
            total.redelivered += redelivered
    total.changes += [c for c in out.changes if c.customer_id not in conflicts]
    total.alerts += [a for a in out.alerts if a.customer_id not in conflicts]
    total.states.update({c: s for c, s in out.states.items() if c not in conflicts})
    return conflicts


class Rescorer:
    """The leader's tick: re-score exactly the customers due by the watermark."""

    def __init__(self, processor: BatchProcessor, limit: int = 1000):
        self.processor = processor
        self.store = processor.store
        self.limit = limit

    async def tick(self) -> BatchOutcome:
        return await retry_transient(self._tick_once, "a re-scoring tick")

    async def _tick_once(self) -> BatchOutcome:
        total = BatchOutcome()
        watermark = (await self.store.marks()).watermark()
        if watermark is None:
            return total
        due = await self.store.due_customers(watermark, self.limit)
        if not due:
            return total
        states, model_version = await self.store.load({cid: (set(), set()) for cid in due})
        models = await self.processor.models.refresh(model_version)
        # A due customer without state (erased, say) is simply dropped from the index.
        out = rescore_due([s for s in states.values() if s.version > 0], watermark, models)
        for cid in due:
            out.due.setdefault(cid, None)
        result = await self.store.save(out.states, out.due, {"rescored": len(out.states)}, {}, None)
        # A lost write means the owner just wrote the customer: its due time is current again.
        _merge(total, out, set(result.conflicts))
        return total


def reschedule(client, keys: Keys, states, models: Models) -> int:
    """Re-compute every customer's next due time under a new model.

    ``ZADD LT`` only ever moves a due time earlier: this runs beside the workers, and
    an early wake-up costs one idle re-score, whereas a late one would miss an alert.
    """
    due = {s.customer_id: t for s in states if (t := next_due_ms(s, models)) is not None}
    items = list(due.items())
    for start in range(0, len(items), 1000):
        client.zadd(keys.due, dict(items[start : start + 1000]), lt=True)
    return len(due)


def refit_churn(
    settings: Settings, as_of_ms: int | None = None, model_name: str | None = None
) -> dict | None:
    """Fit the churn model on the whole population (as of the watermark unless given) and
    publish it as the next version; None when there is no event time or too few customers.

    Blocking (reads every customer, runs the optimiser): call it in a thread.
    """
    client = connect(settings.redis_url)
    keys = Keys(settings.namespace)
    if as_of_ms is None:
        as_of_ms = read_marks(client, keys).watermark()
    if as_of_ms is None:
        return None
    states = read_states_sync(client, keys, all_customer_ids(client, keys))
    try:
        scorer = churn_risk.fit(
            states, as_of_ms, model_name or settings.churn_model, settings.churn_threshold,
            settings.churn_rearm_below,
        )  # fmt: skip
    except ValueError as exc:
        log.info("churn refit skipped: %s", exc)
        return None
    version = publish_churn_model(client, keys, scorer, {"as_of_ms": as_of_ms})
    scorer.version = version
    reschedule(client, keys, states, Models(settings.scorer(), scorer))
    spend = scorer.spend.to_dict() if scorer.spend else None
    return {
        **scorer.model.to_dict(),
        "gamma_gamma": spend,
        "version": version,
        "as_of_ms": as_of_ms,
    }

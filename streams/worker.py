"""A worker's batch step, as an object the Faust agent drives: decode, load,
fold, save (retrying write conflicts and transient Redis failures).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

import redis.exceptions

from online_models.rfm import RFMScorer
from streams.pipeline import BatchOutcome, Record, decode_batch, fold_batch, lookups
from streams.schemas import Limits
from streams.store import StateStore

log = logging.getLogger(__name__)

TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class BatchProcessor:
    def __init__(
        self,
        store: StateStore,
        scorer: RFMScorer,
        limits: Limits,
        clock: Callable[[], float] = time.time,
        max_conflict_retries: int = 20,
    ):
        self.store = store
        self.scorer = scorer
        self.limits = limits
        self.clock = clock
        self.max_conflict_retries = max_conflict_retries

    async def process(self, records: Sequence[Record]) -> BatchOutcome:
        """Apply a batch; waits out Redis outages rather than dropping the batch.

        The Faust take() buffer acks its events even when the agent raises, so
        giving up here would lose them: a transient failure is retried until
        Redis is back.
        """
        delay = 0.1
        while True:
            try:
                return await self._process_once(records)
            except TRANSIENT as exc:
                log.warning("Redis unavailable (%s); retrying batch in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _process_once(self, records: Sequence[Record]) -> BatchOutcome:
        valid, rejected = decode_batch(records, int(self.clock() * 1000), self.limits)
        total = BatchOutcome(rejected=rejected)
        pending = valid
        counters = {"records": len(records), "dlq": len(rejected)}
        for _, rejection in rejected:
            counters[f"dlq:{rejection.reason}"] = counters.get(f"dlq:{rejection.reason}", 0) + 1
        for _ in range(self.max_conflict_retries):
            states = await self.store.load(lookups(pending))
            out = fold_batch(pending, states, self.scorer)
            counters.update(
                applied=out.applied, duplicates=out.duplicates, redelivered=out.redelivered
            )
            result = await self.store.save(
                out.states, counters, out.max_event_ts, out.explicit_watermark
            )
            conflicts = set(result.conflicts)
            total.applied += out.applied
            total.duplicates += out.duplicates
            total.redelivered += out.redelivered
            total.changes += [c for c in out.changes if c.customer_id not in conflicts]
            total.states.update({c: s for c, s in out.states.items() if c not in conflicts})
            if not conflicts:
                return total
            # Another writer got there first: re-read and re-fold just those customers.
            log.info("write conflict on %d customers; re-folding", len(conflicts))
            pending = [(r, e) for r, e in pending if getattr(e, "customer_id", None) in conflicts]
            counters = {}
        raise RuntimeError(f"gave up after {self.max_conflict_retries} write conflicts")

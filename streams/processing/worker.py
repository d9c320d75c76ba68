"""What a worker does, as objects the Faust app drives: the batch step (decode,
load, fold, save), the time-driven re-scoring tick, and the churn refit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from functools import partial

import redis.exceptions
from threadpoolctl import threadpool_limits

from online_models import churn_risk
from online_models.clusters import ClusterSnapshot, StableClusterer
from online_models.customer import MS_PER_DAY
from online_models.days import UTC_DAYS, Days
from online_models.features import FEATURES
from online_models.quantiles import adaptive_edges, recency_cut_dates
from online_models.rfm import RFMScorer
from streams.audiences.evaluate import churn_thresholds
from streams.processing.faults import Faults
from streams.processing.outbox import STALE_MS, entries_for
from streams.processing.pipeline import (
    ORDER_HORIZON_MS,
    BatchOutcome,
    Models,
    Record,
    decode_batch,
    fold_batch,
    lookups,
    next_due_ms,
    reassign_clusters,
    reevaluate_audiences,
    rescore_due,
    segment_at,
)
from streams.processing.schemas import Limits, Rejection
from streams.settings import Settings
from streams.state import due_cells, edge_bands, sweep
from streams.state.claims import is_whole
from streams.state.facts import namespace_days, read_cells, read_fact, read_shards
from streams.state.keys import Keys
from streams.state.sample import sample_customer_ids
from streams.state.store import (
    StateStore,
    connect,
    customer_pages,
    decode_states,
    publish_churn_model,
    publish_rfm_edges,
    read_audiences,
    read_churn_model,
    read_cluster_snapshot,
    read_histograms,
    read_marks,
    read_rfm_edges,
    record_refit_failure,
    write_due,
)
from streams.state.store import read_states as read_states_sync

log = logging.getLogger(__name__)

TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


async def retry_transient(step, what: str):
    """Run ``step()`` until it gets through Redis outages.

    The Faust take() buffer acks its events even when the agent raises, so giving up
    here would lose them: a transient failure is retried, with backoff, until Redis is
    back. An outage logs one line when it starts and one when it ends, not one per retry.
    """
    delay, began, retries = 0.1, None, 0
    while True:
        try:
            result = await step()
        except TRANSIENT as exc:
            if began is None:
                began = time.monotonic()
                log.warning("Redis unavailable during %s (%s); retrying until it is back",
                            what, exc)  # fmt: skip
            else:
                log.debug("Redis still unavailable during %s (%s)", what, exc)
            retries += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        if began is not None:
            log.warning("Redis is back: %s went through after %.1fs (%d retries)",
                        what, time.monotonic() - began, retries)  # fmt: skip
        return result


class ModelCache:
    """The models a worker evaluates with, reloaded when a stored version changes: the
    churn model, the adaptive RFM edges (the configured edges until there are some), the
    cluster snapshot and the audience definitions."""

    def __init__(self, store: StateStore, static_rfm: RFMScorer, retention_ms: int | None = None):
        self.store = store
        self.static_rfm = static_rfm
        self.retention_ms = retention_ms
        self.models = Models(static_rfm, retention_ms=retention_ms)
        self.versions = (0, 0, 0, 0)

    async def refresh(self, stored: tuple[int, int, int, int]) -> Models:
        if stored == self.versions:
            return self.models
        churn, rfm, clusters = self.models.churn, self.models.rfm, self.models.clusters
        audiences = self.models.audiences
        if stored[0] != self.versions[0]:
            churn = await self.store.churn_model()
        if stored[1] != self.versions[1]:
            edges, _ = await self.store.rfm_edges()
            rfm = self.static_rfm.with_edges(edges)  # the configured segment map
        if stored[2] != self.versions[2]:
            clusters = await self.store.cluster_snapshot()
        if stored[3] != self.versions[3]:
            audiences = await self.store.audiences()
        self.models = Models(rfm, churn, clusters, self.retention_ms, audiences, stored[3])
        self.versions = stored
        log.info("models loaded: churn v%s, rfm edges v%s, clusters v%s, audiences v%s",
                 *stored)  # fmt: skip
        return self.models


class TopicIncarnation:
    """Which incarnation of the events topic records come from. A topic deleted and
    re-created (or a broker whose data was wiped while Redis kept its state) restarts its
    offsets at 0; without this every new record would look already applied, and be
    skipped. The epoch, stored in Redis, rises when the topic's Kafka id changes."""

    def __init__(self, store: StateStore, topic_id: Callable[[], str | None],
                 recheck_s: float = 5.0, clock: Callable[[], float] = time.monotonic):  # fmt: skip
        self.store = store
        self.topic_id = topic_id
        self.recheck_s = recheck_s
        self.clock = clock
        self.epoch: int | None = None
        self.checked_at = float("-inf")

    def fresh(self, within_s: float) -> bool:
        return self.clock() - self.checked_at < within_s

    async def current(self, force: bool = False) -> int:
        if self.epoch is not None and not force and self.fresh(self.recheck_s):
            return self.epoch
        topic_id = await asyncio.to_thread(self.topic_id)
        epoch, changed = await self.store.topic_epoch(topic_id)
        if changed:
            log.warning(
                "the events topic was re-created (new topic id %s): its offsets restarted, "
                "so its records are applied as new (topic epoch %d)", topic_id, epoch,
            )  # fmt: skip
        if topic_id is not None:
            self.checked_at = self.clock()
        self.epoch = epoch
        return epoch


class BatchProcessor:
    def __init__(
        self,
        store: StateStore,
        scorer: RFMScorer,
        limits: Limits,
        allowed_lateness_ms: int = 0,
        order_horizon_ms: int = ORDER_HORIZON_MS,
        clock: Callable[[], float] = time.time,
        max_conflict_retries: int = 20,
        incarnation: TopicIncarnation | None = None,
        faults: Faults | None = None,
        pseudonyms: Callable[[str], str] | None = None,
        retention_ms: int | None = None,
        days: Days = UTC_DAYS,
    ):
        self.store = store
        self.days = days  # RTBA_TIMEZONE's calendar: purchase days, the horizon's midnight
        self.pseudonyms = pseudonyms
        self.incarnation = incarnation
        self.faults = faults or Faults()
        self.allowed_lateness_ms = allowed_lateness_ms
        self.order_horizon_ms = order_horizon_ms
        self.limits = limits
        self.clock = clock
        self.max_conflict_retries = max_conflict_retries
        self.models = ModelCache(store, scorer, retention_ms)

    async def process(self, records: Sequence[Record]) -> BatchOutcome:
        """Never raises: Faust would restart the agent and the batch would be lost. A batch
        that fails for a reason that is not a Redis outage (a bug) is logged and retried, so
        the partition waits, visibly, instead of dropping records."""
        delay = 1.0
        while True:
            try:
                return await retry_transient(lambda: self._process_once(records), "a batch")
            except Exception:
                log.exception("batch of %d records failed; retrying in %.0fs", len(records), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)

    async def _process_once(self, records: Sequence[Record]) -> BatchOutcome:
        epoch = 0 if self.incarnation is None else await self.incarnation.current()
        if epoch:  # records arrive as epoch 0
            records = [dataclasses.replace(r, epoch=epoch) for r in records]
        valid, rejected = decode_batch(
            records, int(self.clock() * 1000), self.limits, self.pseudonyms
        )
        total = BatchOutcome(rejected=rejected, types=dict(Counter(e.type for _, e in valid)))
        pending = valid
        counters = {"records": len(records), **dlq_counters(why for _, why in rejected)}
        # what the last attempt wrote for customers whose write then lost: taken back next time
        lost: dict[str, list[int]] = {}
        lost_refunds: dict[str, dict[str, int]] = {}
        for _ in range(self.max_conflict_retries):
            states, model_versions = await self.store.load(lookups(pending))
            models = await self.models.refresh(model_versions)
            try:
                out = fold_batch(pending, states, models, horizon_ms=self.order_horizon_ms,
                                 days=self.days)  # fmt: skip
            except Exception:
                # A record the decoder let through still breaks the fold: fold again from
                # fresh states, setting aside each record that raises (to the DLQ).
                log.exception("a record of this batch cannot be folded; isolating it")
                states, _ = await self.store.load(lookups(pending))
                out = fold_batch(
                    pending, states, models, isolate=True, horizon_ms=self.order_horizon_ms,
                    days=self.days,
                )  # fmt: skip
            if out.redelivered and await self._topic_was_recreated(epoch):
                return await self._process_once(records)  # again, in the new epoch
            for name, i in (("applied", 0), ("duplicates", 1), ("redelivered", 2)):
                counters[name] = counters.get(name, 0) + sum(c[i] for c in out.counts.values())
                counters[name] -= sum(c[i] for c in lost.values())
            for name, n in _sum_deltas(out.refund_counts.values(), lost_refunds.values()).items():
                counters[name] = counters.get(name, 0) + n
            out.outbox = self.outbox_entries(out)
            result = await self.store.save(
                out.states,
                out.due,
                counters,
                out.partition_marks(self.allowed_lateness_ms),
                max(out.max_event_ts.values(), default=None),
                out.fact_deltas,  # in each customer's write: a lost write moves no fact
                out.outbox,
                memberships=out.memberships,
            )
            self.faults.drop("drop_after_write")
            conflicts = _merge(total, out, set(result.conflicts))
            await self._count_set_aside(out, conflicts)
            if not conflicts:
                return total
            # Another writer got there first: re-read and re-fold just those customers,
            # and take back what this attempt counted for them.
            log.info("write conflict on %d customers; re-folding", len(conflicts))
            pending = [(r, e) for r, e in pending if getattr(e, "customer_id", None) in conflicts]
            lost = {cid: out.counts.get(cid, [0, 0, 0]) for cid in conflicts}
            lost_refunds = {cid: out.refund_counts.get(cid, {}) for cid in conflicts}
            counters = {}
        raise RuntimeError(f"gave up after {self.max_conflict_retries} write conflicts")

    async def _topic_was_recreated(self, epoch: int) -> bool:
        """Records that look applied already: a redelivery, or a re-created topic whose
        offsets restarted. Asked of the broker at most once a second."""
        if self.incarnation is None or self.incarnation.fresh(1.0):
            return False
        return await self.incarnation.current(force=True) != epoch

    def outbox_entries(self, out: BatchOutcome) -> list:
        """The fold's output events as outbox entries, written with the states."""
        versions = {cid: state.version for cid, state in out.states.items()}
        return entries_for(out.outputs, versions, int(self.clock() * 1000))

    async def _count_set_aside(self, out: BatchOutcome, conflicts: set[str]) -> None:
        """Count the records the fold set aside, by reason (those of customers re-folded
        are counted when their fold is kept)."""
        kept = [why for cid, _, why in out.set_aside if cid not in conflicts]
        if kept:
            await self.store.count(dlq_counters(kept))


def dlq_counters(rejections: Iterable[Rejection]) -> dict[str, int]:
    """The ``dlq`` total and a ``dlq:<reason>`` count per reason, for ``{ns}:stats``.

    >>> dlq_counters([Rejection("empty", ""), Rejection("empty", ""), Rejection("oversize", "")])
    {'dlq': 3, 'dlq:empty': 2, 'dlq:oversize': 1}
    """
    by_reason = Counter(why.reason for why in rejections)
    return {"dlq": by_reason.total(), **{f"dlq:{r}": n for r, n in by_reason.items()}}


def _sum_deltas(added, taken_back) -> dict:
    total: dict[str, int] = {}
    for deltas, sign in ((added, 1), (taken_back, -1)):
        for delta in deltas:
            for key, n in delta.items():
                total[key] = total.get(key, 0) + sign * n
    return {k: n for k, n in total.items() if n}


def _merge(total: BatchOutcome, out: BatchOutcome, conflicts: set[str]) -> set[str]:
    """Add a fold's results to ``total``, except those of customers whose write lost."""
    total.counts.update({c: n for c, n in out.counts.items() if c not in conflicts})
    total.changes += [c for c in out.changes if c.customer_id not in conflicts]
    total.alerts += [a for a in out.alerts if a.customer_id not in conflicts]
    total.audience_changes += [c for c in out.audience_changes if c.customer_id not in conflicts]
    total.states.update({c: s for c, s in out.states.items() if c not in conflicts})
    total.samples.update({c: x for c, x in out.samples.items() if c not in conflicts})
    total.outbox += [e for e in out.outbox if e.customer_id not in conflicts]
    total.rejected += [(r, why) for cid, r, why in out.set_aside if cid not in conflicts]
    total.expired.update(out.expired)
    return conflicts


class Rescorer:
    """The leader's tick: re-score exactly the customers due by the watermark, then move
    the sweep that assigns customers to a new cluster snapshot.

    Up to ``limit`` due customers and ``sweep_limit`` swept ones a tick, in slices of
    ``slice_size``: the tick
    shares the worker's event loop with the agent serving events, and evaluating 1,000
    customers in one go held it for over a second when event time leapt (docs/
    performance.md). Between slices, batches of events go through; a shorter slice is a
    shorter wait for the events that arrive during it (f's p99, sets of 3 runs: 378 ms
    with 100 a slice; 257 and 507 with 50. h at 1M: no slice of 50 held the loop 4 ms).
    """

    def __init__(self, processor: BatchProcessor, limit: int = 1000, slice_size: int = 50,
                 share: float = 0.33, sweep_limit: int = 200,
                 pause: Callable[[float], Awaitable] = asyncio.sleep,
                 shards: Callable[[], Sequence[int] | None] = lambda: None):  # fmt: skip
        self.processor = processor
        self.store = processor.store
        self.limit = limit
        # The sweep only brings silent customers to a newer snapshot (anyone with an event
        # gets it at once), and a learning trainer publishes one every few seconds: at
        # 1,000 a tick the sweep alone kept a third of the loop busy under live traffic
        # (F, docs/performance.md). 200 a second is a pass over 1M customers in ~80 min.
        self.sweep_limit = sweep_limit
        self.slice_size = slice_size
        # The most of the event loop a tick takes while it has work: a due customer can
        # wait a second, a new event's alert should not. f's p99, 3 runs each: 257-612 ms
        # at a half, 252-374 at a third (docs/performance.md).
        self.share = share
        self.pause = pause
        # The due-index shards this worker re-scores (streams.state.due_index.shards_of:
        # those of its events partitions); None: every shard.
        self.shards = shards
        self._due: list[str] | None = None  # the tick's due customers not yet re-scored

    async def tick(self, leader: bool = True) -> BatchOutcome:
        """One tick's work as one outcome (tests, the benchmark)."""
        total = BatchOutcome()
        async for out in self.slices(leader):
            _merge(total, out, set())
        return total

    async def slices(self, leader: bool = True) -> AsyncIterator[BatchOutcome]:
        """The tick, one written slice at a time, for the caller to send before the next:
        a whole tick's outputs sent at its end queued the agent's sends behind ~1,800
        records (f: a 4-event batch's emit took 127 ms). A transient Redis error retries
        the slice it hit. Every worker re-scores its own shards' due customers, so the
        tick grows with workers; the ``leader`` also wakes due cells and runs the sweeps,
        which are one pass each for the whole namespace."""
        marks = await retry_transient(self.store.marks, "a re-scoring tick")
        watermark = marks.watermark()
        self._due = None  # read at the tick's first slice of due customers
        steps = [(partial(self._rescore_due, watermark), self.limit)]
        if leader:
            steps = [(partial(self._wake_cells, watermark), self.limit), *steps,
                     (self._sweep_clusters, self.sweep_limit),
                     (self._backfill_audiences, self.sweep_limit)]  # fmt: skip
        for step, limit in steps:
            done = 0
            while done < limit:
                started = time.perf_counter()
                wanted = min(self.slice_size, limit - done)
                out, got = await retry_transient(partial(self._slice, step, wanted),
                                                 "a re-scoring tick")  # fmt: skip
                yield out  # the caller sends it: part of the slice's time
                if out.expired:  # their tombstones are sent: now the erase
                    await retry_transient(partial(self.store.erase, out.expired,
                                                  self.processor.days),
                                          "a retention erase")  # fmt: skip
                done += got
                if got < wanted:  # nobody else is due, or the pass reached its end
                    break
                took = time.perf_counter() - started
                await self.pause(took * (1 - self.share) / self.share)  # the agent's turn

    @staticmethod
    async def _slice(step, count: int) -> tuple[BatchOutcome, int]:
        out = BatchOutcome()
        return out, await step(out, count)

    async def _sweep_clusters(self, total: BatchOutcome, count: int) -> int:
        """Bounded work per tick: a customer who stays silent still gets the new snapshot's
        cluster, and nobody is relabelled in one storm. Returns how many were read, or 0
        once the pass is over."""
        _, versions = await self.store.load({})
        snapshot = (await self.processor.models.refresh(versions)).clusters
        if snapshot is None:
            return 0
        position = await self.store.sweep_position()
        swept = position.get("swept", 0)
        if swept >= snapshot.version:
            return 0
        # A pass is under way while "sweeping" is above "swept". A newer snapshot does not
        # restart it: the rest of the pass assigns with the newer one, and a next pass
        # brings it to the customers already passed. (Restarting re-read the same first
        # chunk at every snapshot and never reached the others while training went on.)
        if position.get("sweeping", 0) <= swept:
            position = {"sweeping": snapshot.version, "cursor": 0, "after": -1, "swept": swept}
        cursor, ids = await self.store.scan_customers(_cursor(position), count)
        if ids:
            raw, versions = await self.store.load_raw(ids)
            models = await self.processor.models.refresh(versions)
            # Decoding and the distance computation off the loop: events go on meanwhile.
            out = await asyncio.to_thread(_off_loop, reassign_clusters, ids, raw, models,
                                          self.processor.days)  # fmt: skip
            # A lost write: the owner just evaluated that customer with the same snapshot.
            await self._write(total, out, {"reassigned": len(out.states)})
        position["cursor"], position["after"] = cursor
        if cursor == sweep.START:  # everybody now has the pass's first snapshot or a newer one
            position["swept"] = position["sweeping"]
        await self.store.set_sweep_position(position)
        return 0 if cursor == sweep.START else len(ids)

    async def _backfill_audiences(self, total: BatchOutcome, count: int) -> int:
        """Evaluate every customer under newly applied audience definitions, a bounded
        slice a tick (like the cluster sweep), keeping ``done`` of ``total`` for
        `rtba audience list`. Returns how many were read, or 0 once the pass is over."""
        _, versions = await self.store.load({})
        models = await self.processor.models.refresh(versions)
        key = self.store.keys.audience_sweep
        position = await self.store.sweep_position(key)
        swept = position.get("swept", 0)
        if models.audiences is None or swept >= models.audiences_version:
            return 0
        # A newer version during a pass restarts it: unlike clusters, definitions are
        # applied by hand, seldom, and the customers passed were evaluated under old ones.
        if position.get("sweeping", 0) != models.audiences_version:
            position = {"sweeping": models.audiences_version, "cursor": 0, "after": -1,
                        "swept": swept, "done": 0,
                        "total": await self.store.customer_count()}  # fmt: skip
        cursor, ids = await self.store.scan_customers(_cursor(position), count)
        if ids:
            raw, versions = await self.store.load_raw(ids)
            models = await self.processor.models.refresh(versions)
            if models.audiences_version == position["sweeping"]:
                out = await asyncio.to_thread(_off_loop, reevaluate_audiences, ids, raw,
                                              models, self.processor.days)  # fmt: skip
                await self._write(total, out, {"audience_backfilled": len(out.states)})
        position["cursor"], position["after"] = cursor
        position["done"] += len(ids)
        if cursor == sweep.START:
            position["swept"], position["total"] = position["sweeping"], position["done"]
        await self.store.set_sweep_position(position, key)
        return 0 if cursor == sweep.START else len(ids)

    async def _wake_cells(self, watermark: int | None, total: BatchOutcome, count: int) -> int:
        """Up to ``count`` due-cells entries that fell due by the watermark: their members
        marked due now, for _rescore_due (streams.state.due_cells). Returns the entries."""
        if watermark is None:
            return 0
        entries, woken = await self.store.wake_due_cells(watermark, count)
        if woken:
            await self.store.count({"woken_by_cell": woken})
        return entries

    async def _rescore_due(self, watermark: int | None, total: BatchOutcome, count: int) -> int:
        """Up to ``count`` customers due by the watermark; returns how many were due."""
        if watermark is None:
            return 0
        if self._due is None:
            # The tick's due customers, read once: the summaries of 64 shards read at
            # every slice of 50 cost 2.6 ms of CPU a slice (0.3 ms with one summary).
            self._due = await self.store.due_customers(watermark, self.limit, self.shards())
        due, self._due = self._due[:count], self._due[count:]
        if not due:
            return 0
        states, model_versions = await self.store.load(dict.fromkeys(due, False))
        models = await self.processor.models.refresh(model_versions)
        # Each customer leaves with a due time past the watermark (or none), so the next
        # slice reads the next ones.
        out = rescore_due([s for s in states.values() if s.version > 0], watermark, models,
                          self.processor.days)  # fmt: skip
        # A due customer without state (erased, say) is simply dropped from the index.
        gone = [cid for cid in due if states[cid].version == 0]
        # A lost write means the owner just wrote the customer: its due time is current again.
        await self._write(total, out, {"rescored": len(out.states)}, gone)
        return len(due)

    async def _write(self, total: BatchOutcome, out: BatchOutcome, counters: dict,
                     forget: list[str] = ()) -> None:  # fmt: skip
        """Save a tick's states with their due times and outbox entries; keep what won."""
        out.outbox = self.processor.outbox_entries(out)
        result = await self.store.save(out.states, out.due, counters, {}, None, out.fact_deltas,
                                       outbox=out.outbox, forget=forget,
                                       memberships=out.memberships)  # fmt: skip
        self.processor.faults.drop("drop_after_tick_write")
        _merge(total, out, set(result.conflicts))


def _cursor(position: dict[str, int]) -> sweep.Cursor:
    """A sweep's stored cursor: (bucket, order key after which it goes on); a position
    stored before S10 has no ``after``, its bucket still to be read from the start."""
    return position.get("cursor", 0), position.get("after", -1)


def _off_loop(step, ids: list[str], raw: list, models: Models, days: Days) -> BatchOutcome:
    """``step`` (reassign_clusters, reevaluate_audiences) over the stored customers among
    ``ids``: decoding and evaluating a slice, in a thread (asyncio.to_thread)."""
    states = decode_states(dict.fromkeys(ids, False), raw)
    return step([s for s in states.values() if s.version > 0], models, days)


class OutboxRelay:
    """The leader's relay of outbox entries no live writer is about to send: its worker
    crashed between the Redis write and the Kafka send, or lost Redis after writing."""

    def __init__(self, store: StateStore, clock: Callable[[], float] = time.time,
                 limit: int = 1000):  # fmt: skip
        self.store = store
        self.clock = clock
        self.limit = limit

    async def leftovers(self) -> BatchOutcome:
        """Entries older than STALE_MS, for the caller to send and then forget."""
        return await retry_transient(self._leftovers_once, "the outbox relay")

    async def _leftovers_once(self) -> BatchOutcome:
        total = BatchOutcome()
        stale_before = int(self.clock() * 1000) - STALE_MS
        settled = {}
        for cid, pending in (await self.store.pending_outbox(self.limit)).items():
            if pending.settled:
                settled[cid] = pending.score
            total.outbox += [e for e in pending.entries if e.written_ms < stale_before]
        await self.store.unindex(settled)
        # Their writer may have died before updating the audience indexes (StateStore.save)
        await self.store.sync_memberships(audiences_named(total.outbox))
        return total


def audiences_named(entries) -> dict[str, set[str]]:
    """Per customer, the audiences its audience-change entries name."""
    out: dict[str, set[str]] = {}
    for entry in entries:
        if entry.output == "audience_changes":
            out.setdefault(entry.customer_id, set()).add(json.loads(entry.payload)["audience"])
    return out


def reschedule(client, keys: Keys, states, models: Models, old=None) -> int:
    """Re-compute every customer's next due time under a new churn model (``old``: the one
    it replaced, None if none).

    ``ZADD LT`` only ever moves a due time earlier: this runs beside the workers, and
    an early wake-up costs one idle re-score, whereas a late one would miss an alert. A
    customer whose crossing under the new model is already behind its own clock, and
    was not under ``old``, is due at once: next_due_ms gives only later times, and it
    would otherwise wait for its next one.
    """
    levels = churn_thresholds(models.audiences, models.churn) or [models.churn.threshold]
    due = {}
    for s in states:
        t = next_due_ms(s, models)
        if _newly_crossed(s, models.churn, old, levels):
            t = s.clock_ms
        if t is not None:
            due[s.customer_id] = t
    write_due(client, keys, due, mode="lt")
    return len(due)


def _newly_crossed(state, new, old, levels: list[float]) -> bool:
    clock = state.clock_ms
    if clock is None:
        return False
    for level in levels:
        now = new.risk_crossing_ms(state, level)
        if now is not None and now <= clock:
            before = None if old is None else old.risk_crossing_ms(state, level)
            if before is None or before > clock:
                return True
    return False


def current_models(client, keys: Keys, settings: Settings, churn=None) -> Models:
    """The models in force, read synchronously (CLI, refits)."""
    from streams.state.claims import segment_map_in_force

    edges = read_rfm_edges(client, keys)
    # segments as the workers name them, whatever this reader's RTBA_SEGMENT_MAP says
    in_force = settings.model_copy(update={"segment_map": segment_map_in_force(settings, client)})
    rfm = in_force.scorer().with_edges(edges)
    churn = churn if churn is not None else read_churn_model(client, keys)
    audiences, version = read_audiences(client, keys)
    return Models(rfm, churn, read_cluster_snapshot(client, keys), settings.retention_ms(),
                  audiences, version)  # fmt: skip


class ClusterTrainer:
    """The one learner: River clustering over the features workers send, snapshotting every
    ``every`` samples. Its state rides along with each snapshot in Redis as data (JSON,
    ``StableClusterer.to_dict``; never a pickle: whoever can write Redis must not run code
    here), so a restarted or moved trainer resumes with the same ids. A tombstone on the
    features topic (an erase) takes the customer out of the sample, and the learner is
    stored again at once without it."""

    def __init__(
        self,
        store: StateStore,
        learner: StableClusterer,
        every: int,
        warmup: int = 0,
        min_interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self.learner = learner
        self.every = every
        self.warmup = warmup  # no snapshot before this many samples: early centroids wander
        # At full speed `every` samples come several times a second; a fit each time
        # would take a core for nothing a marketer could see.
        self.min_interval_s = min_interval_s
        self.clock = clock
        self.since_snapshot = 0
        self.last_snapshot_at: float | None = None
        self.forgotten = 0  # erased customers taken out since the learner was last stored
        self.holding = False  # a snapshot is due but waits for the sweep's pass (train)

    @classmethod
    async def resume(cls, store: StateStore, settings: Settings) -> ClusterTrainer:
        saved, snapshot = await retry_transient(store.cluster_learner,
                                                "loading the cluster learner")  # fmt: skip
        learner = stored_learner(saved, snapshot, settings.clusters)
        return cls(store, learner, settings.cluster_snapshot_every, settings.cluster_warmup,
                   settings.cluster_snapshot_min_s)  # fmt: skip

    def learn(self, samples: list[tuple[str, dict | None]],
              hold: bool = False) -> ClusterSnapshot | None:  # fmt: skip
        """Blocking (numpy, scikit-learn): call it in a thread. ``samples`` are
        (customer id, {"features": ..., "last_event_ms": ...}) as the workers send them,
        or (customer id, None) for an erased customer's tombstone. ``hold``: learn them but
        take no snapshot (the sweep is still passing over the last one: ``train``)."""
        for customer_id, sample in samples:
            if sample is None:
                self.forgotten += self.learner.forget(customer_id)
                continue
            self.learner.learn_one(sample["features"], customer_id, sample["last_event_ms"])
            self.since_snapshot += 1
        if hold or self.since_snapshot < self.every or self.learner.seen < self.warmup:
            return None
        now = self.clock()
        if self.last_snapshot_at is not None and now - self.last_snapshot_at < self.min_interval_s:
            return None
        self.since_snapshot, self.last_snapshot_at = 0, now
        # One core for the fit: with OpenMP on every core it starved the event loop, and
        # events waited behind it (produce -> change p99 1.5 s at half load, S5).
        with threadpool_limits(limits=1):
            return self.learner.snapshot()

    async def train(self, samples: list[tuple[str, dict]]) -> ClusterSnapshot | None:
        """Learn ``samples``; publish a snapshot when one is due and the leader's sweep has
        brought everybody to the last one. Pacing: a learning trainer fits every few
        seconds, a pass takes ~80 min at 1M customers (200 a tick), and a pass that never
        ends leaves silent customers on ever older snapshots. So while a pass is under way
        the trainer goes on learning and holds its next fit; the first call after the pass
        fits the newest sample (versions stay consecutive: no snapshot, and none of its
        appeared/died events, is dropped). docs/clustering.md."""
        hold = False
        if self.since_snapshot + len(samples) >= self.every:  # a snapshot may be due
            hold = await retry_transient(self.store.cluster_sweep_behind, "reading the sweep")
            if hold and not self.holding:
                log.info("next cluster snapshot held until the sweep has passed everybody")
            self.holding = hold
        snapshot = await asyncio.to_thread(self.learn, samples, hold)
        if snapshot is not None or self.forgotten:
            # an erased customer leaves the stored sample now, not at the next snapshot
            blob = json.dumps(self.learner.to_dict()).encode()
            await retry_transient(
                lambda: self.store.publish_clusters(snapshot, blob), "publishing clusters"
            )
            self.forgotten = 0
        if snapshot is not None:
            for event in snapshot.events:
                log.info("cluster %s %s (snapshot v%s)", event["cluster"], event["event"],
                         snapshot.version)  # fmt: skip
        return snapshot


def training_samples(key: bytes | None, value: bytes | None) -> list[tuple[str, dict | None]]:
    """The (customer id, sample) pairs of one features-topic record: a worker batch's
    samples, or, for a tombstone (the customer's id as key, no value: an erase), the one
    pair (id, None)."""
    if value is None:
        return [] if key is None else [(key.decode("utf-8", "replace"), None)]
    return [(cid, sample) for cid, sample in json.loads(value)]


def stored_learner(saved: bytes | None, snapshot: bytes | None,
                   n_clusters: int) -> StableClusterer:  # fmt: skip
    """The learner stored in Redis, read as data only; a new one when there is none, or
    when what is there is not a learner of today's format and features (an older rtba's
    pickle is refused unread). A new learner goes on after the stored snapshot: versions
    after its version, ids after every id it names."""
    if saved is None:
        return StableClusterer(n_clusters)
    try:
        learner = StableClusterer.from_dict(json.loads(saved))
    except Exception:  # not JSON (a pickle, say), or JSON of another shape: never run
        log.warning("the stored cluster learner is not one this rtba reads (an older "
                    "rtba's pickle?): refused unread; training a new one")  # fmt: skip
    else:
        if learner.sample.features == FEATURES:
            return learner
        log.warning("the stored cluster learner was trained on another feature set "
                    "(an older rtba); starting a new one on today's features, with new "
                    "cluster ids")  # fmt: skip
    learner = StableClusterer(n_clusters)
    learner.continue_from(*continue_point(snapshot))
    return learner


def continue_point(snapshot: bytes | None) -> tuple[int, int]:
    """(version, next fresh id) after a stored snapshot's JSON: its version, and one past
    every cluster id it names (the live ones and those its events say appeared or died)."""
    try:
        data = json.loads(snapshot) if snapshot else {}
        ids = [int(i) for i in data.get("ids", [])]
        ids += [int(e["cluster"]) for e in data.get("events", [])]
        return int(data.get("version", 0)), max(ids, default=-1) + 1
    except (ValueError, TypeError, KeyError, AttributeError):
        return 0, 0


def refresh_rfm_edges(settings: Settings) -> dict | None:
    """Re-derive the RFM edges from the population histograms (the ``hist:`` fields of
    the population facts) as of the watermark; when they moved, publish them as the next
    version and wake (due now) exactly the customers whose segment they change.

    The recency edges are absolute cut dates of the shop's calendar (RFMScorer's
    ``recency_cut_dates``): R is the fair split's tie rule (dated before the cut or not)
    and time alone moves no cut date, so a new date with no purchase publishes nothing
    (docs/segments.md, "Cut dates"). Edges stored in an older shape (elapsed days, or the
    S10 distances from the watermark's date) are read as they were until this refresh
    re-derives the cut dates: the shape differs, so it publishes them once.

    The customers woken are found from the indexes when the namespace's index holds
    every day cell's members and only cut dates and monetary edges moved
    (streams.state.edge_bands: their cost follows the customers in the moved bands);
    otherwise by a walk of everyone, a page at a time. Blocking: call it in a thread.
    """
    client = connect(settings.redis_url, **settings.redis_options())
    keys = Keys(settings.namespace)
    derived = _derived_edges(client, keys, settings)
    if derived is None:
        return None
    edges, as_of_ms, hists = derived
    old = read_rfm_edges(client, keys)
    version = publish_rfm_edges(
        client,
        keys,
        edges,
        {
            "as_of_ms": as_of_ms,
            "customers": hists["lp"].count,
            "fitted_at_ms": int(time.time() * 1000),
        },
    )
    models = current_models(client, keys, settings)
    days = namespace_days(client, keys, settings.days())
    moved = edge_bands.bands(old, edges, days.name)
    if moved is not None and is_whole(client, settings.namespace, "cell_members"):
        ids = edge_bands.members(client, keys, moved)
        how = {"woken_by": "bands", "read": len(ids)}
        woken = wake_changed(client, keys, read_states_sync(client, keys, ids), models, as_of_ms)
    else:
        # a page of states at a time: memory follows the page and the customers woken
        everyone = (
            s for ids in customer_pages(client, keys) for s in read_states_sync(client, keys, ids)
        )
        how = {"woken_by": "walk"}
        woken = wake_changed(client, keys, everyone, models, as_of_ms)
    log.info("RFM edges v%d published: %d customers change segment, due now (found by %s)",
             version, woken, how["woken_by"])  # fmt: skip
    return {"version": version, "edges": edges, "customers": hists["lp"].count, "woken": woken,
            **how}  # fmt: skip


def rfm_edges_would_move(settings: Settings) -> bool:
    """Whether a refresh now would publish: the edges the population's histograms give
    differ from those in force. Cheap (the facts and the model in force; no walk): the
    leader asks it in a thread before spawning the refresh's process, whose start alone
    costs ~1 s of CPU (benchmarks.population), so a refresh whose edges do not move costs
    only this read."""
    client = connect(settings.redis_url, **settings.redis_options())
    try:
        return _derived_edges(client, Keys(settings.namespace), settings) is not None
    finally:
        client.close()


def _derived_edges(client, keys: Keys, settings: Settings) -> tuple[dict, int, dict] | None:
    """(the edges the histograms give as of the watermark, the watermark, the histograms),
    or None when there are none yet or they are the edges in force."""
    as_of_ms = read_marks(client, keys).watermark()
    if as_of_ms is None:
        return None
    hists = read_histograms(client, keys)
    fair = adaptive_edges(hists["lp"], hists["f"], hists["m"], as_of_ms / MS_PER_DAY,
                          days=settings.days())  # fmt: skip
    if fair is None:
        return None
    edges = {
        "recency_cut_dates": list(recency_cut_dates(hists["lp"])),
        "recency_timezone": settings.timezone,
        "frequency_edges": list(fair["frequency_edges"]),
        "monetary_edges": list(fair["monetary_edges"]),
    }
    if edges == read_rfm_edges(client, keys):
        return None
    return edges, as_of_ms, hists


def wake_changed(client, keys: Keys, states, models: Models, watermark_ms: int) -> int:
    """Mark due at ``watermark_ms`` (``ZADD LT``: never later than they are) exactly the
    customers whose stored segment differs from the one ``models`` give them at their own
    clock; the leader's tick re-scores them (rescore_due) and emits the changes. Nobody
    else is touched: under cut dates no due time depends on the edges."""
    due = {s.customer_id: watermark_ms for s in states if changes_segment(s, models)}
    write_due(client, keys, due, mode="lt")
    return len(due)


def changes_segment(state, models: Models) -> bool:
    """Whether ``models`` give the customer another segment than its stored one, at its
    own clock (a customer with no event yet has nothing to change)."""
    clock = state.clock_ms
    return clock is not None and segment_at(state, clock, models) != state.segment


class RefitSkipped(Exception):
    """A churn refit that cannot run (``kind`` "skipped") or whose fit is not put in force
    (``kind`` "rejected"); the message says why, for the log and the CLI."""

    def __init__(self, reason: str, kind: str = "skipped"):
        super().__init__(reason)
        self.kind = kind


def _spend_in_force(client, keys: Keys):
    """(the Gamma-Gamma model in force, its version) when it is one whose mean spend
    exists and whose fit converged; else (None, None). A spend fit that fails keeps it:
    spend per order is its own model, as good as it was before the new fit."""
    in_force = read_churn_model(client, keys)
    spend = in_force.spend if in_force is not None else None
    if spend is None or not (spend.converged and spend.mean_defined()):
        return None, None
    return spend, in_force.version


def _sample(client, keys: Keys, size: int, cells_suffice) -> tuple[bool, list]:
    """(whether the population is smaller than the sample, the sample's states). None read
    when ``cells_suffice`` (day and whole spend cells kept) and the facts count at least
    ``size`` customers: the fit then reads no state."""
    if cells_suffice and read_fact(client, keys, "customers") >= size:
        return False, []
    ids = sample_customer_ids(client, keys, size)
    return len(ids) < size, read_states_sync(client, keys, ids)


def refit_churn(
    settings: Settings, as_of_ms: int | None = None, model_name: str | None = None
) -> dict:
    """Fit the churn model on everyone, from the day cells the writers keep
    (streams.state.facts; churn_risk.fit_on_cells: exact to the day, its cost bounded by
    the number of cells; a population the sample holds whole: its exact rows), and
    Gamma-Gamma on the spend cells when they are whole (streams.state.claims), else on
    the customer sample (``RTBA_CHURN_FIT_SAMPLE``: the first due-index buckets,
    streams.state.sample), as of the watermark unless given; publish them as the next
    version, unless their parameters are those in force (churn_risk.same_fit): then
    nothing is published and nobody re-scheduled. On whole cells of a population larger
    than the sample no state is read. Without any day cell (a namespace kept before S10
    and not yet `rtba verify --repair`ed) the churn model is fitted on the sample too.
    Raises RefitSkipped, with the true reason (also kept in Redis for `rtba segments`),
    when it cannot.

    Blocking (reads the cells and the sample, runs the optimiser): call it in a thread.
    """
    client = connect(settings.redis_url, **settings.redis_options())
    keys = Keys(settings.namespace)
    try:
        if as_of_ms is None:
            as_of_ms = read_marks(client, keys).watermark()
        if as_of_ms is None:
            raise RefitSkipped("no event time yet (no event or watermark has been applied)")
        cells = read_cells(client, keys)
        day_cells, spend_cells = churn_risk.split_cells(cells)
        # whole: claimed so, and no cell below 0 (a hand edit, or a rollback's writes)
        spend_whole = is_whole(client, settings.namespace, "spend_cells") and all(
            n >= 0 for n in spend_cells.values()
        )
        whole, states = _sample(client, keys, settings.churn_fit_sample,
                                spend_whole and bool(day_cells))  # fmt: skip
        name = model_name or settings.churn_model
        # A population the sample covers whole is fitted on its exact rows (times to the
        # millisecond, as before S10); the cells, exact only to the day, are for the
        # populations the sample cannot hold.
        fitted_on = "everyone" if whole else "day cells" if day_cells else "sample"
        spend_on = fitted_on
        if fitted_on == "day cells":
            spend_on = "spend cells" if spend_whole else "sample"
        try:
            if fitted_on == "day cells":
                scorer = churn_risk.fit_on_cells(
                    cells, as_of_ms, None if spend_whole else states, name,
                    settings.churn_threshold, settings.churn_rearm_below,
                    namespace_days(client, keys, settings.days()),
                )  # fmt: skip
            else:
                scorer = churn_risk.fit(states, as_of_ms, name, settings.churn_threshold,
                                        settings.churn_rearm_below)  # fmt: skip
        except ValueError as exc:
            raise RefitSkipped(str(exc)) from None
        health = churn_risk.fit_health(scorer)
        if health.churn_error is not None:  # the model in force stays
            raise RefitSkipped(health.churn_error, "rejected")
    except RefitSkipped as exc:
        record_refit_failure(client, keys, exc.args[0], int(time.time() * 1000), exc.kind)
        raise
    spend_error = health.spend_error
    if spend_error is not None:  # never a wrong CLV: the spend model in force, or none
        scorer.spend, kept = _spend_in_force(client, keys)
        if kept is not None:
            spend_error = spend_error.replace("CLV null", f"the spend model of v{kept} stays")
    in_force = read_churn_model(client, keys)
    if in_force is not None and churn_risk.same_fit(scorer, in_force):
        # Every due time stands: publishing would only make the re-schedule walk everyone.
        client.hdel(keys.churn_model, "last_error")
        return _refit_result(scorer, spend_error, in_force.version, as_of_ms, published=False,
                             fitted_on=(fitted_on, spend_on),
                             cells=(len(day_cells), len(spend_cells)))  # fmt: skip
    meta = {"as_of_ms": as_of_ms, "fitted_at_ms": int(time.time() * 1000),
            "spend_error": spend_error}  # fmt: skip
    version = publish_churn_model(client, keys, scorer, meta)
    scorer.version = version
    result = _refit_result(scorer, spend_error, version, as_of_ms, published=True,
                           fitted_on=(fitted_on, spend_on),
                           cells=(len(day_cells), len(spend_cells)))  # fmt: skip
    models = current_models(client, keys, settings, churn=scorer)
    return {**result, **wake_for_model(client, keys, settings, in_force, models, as_of_ms)}


def wake_for_model(client, keys: Keys, settings: Settings, old, models: Models,
                   as_of_ms: int) -> dict:  # fmt: skip
    """After a churn model (``models.churn``) replaced ``old``: make sure nobody is woken
    later than its crossing under the new one. By day cell when the index holds every
    cell's members and no audience condition on CLV is in force (streams.state.due_cells:
    its cost follows the cells, and the customers of those that fall due when they do);
    otherwise by a walk of everyone, a page at a time (reschedule). Returns how, for the
    refit's result: ``rescheduled_by`` and ``cell_entries`` or ``rescheduled``."""
    new_levels = churn_thresholds(models.audiences, models.churn)
    if new_levels is not None and is_whole(client, settings.namespace, "cell_members"):
        old_levels = [] if old is None else churn_thresholds(models.audiences, old)
        # The cells as they are now, after the publish: a customer that moved cell since
        # the fit read them is in its new one.
        shard_cells = read_shards(client, keys, cells=True)
        days = namespace_days(client, keys, settings.days())
        wake = due_cells.plan(shard_cells, old, models.churn, (old_levels, new_levels),
                              as_of_ms, days)  # fmt: skip
        return {"rescheduled_by": "cells", "cell_entries": due_cells.schedule(client, keys, wake)}
    woken = 0
    for ids in customer_pages(client, keys):  # bounded memory: a page of states at a time
        woken += reschedule(client, keys, read_states_sync(client, keys, ids), models, old)
    return {"rescheduled_by": "walk", "rescheduled": woken}


def _refit_result(scorer, spend_error: str | None, version: int, as_of_ms: int,
                  published: bool, fitted_on: tuple[str, str],
                  cells: tuple[int, int]) -> dict:  # fmt: skip
    """What a refit reports (the log, `rtba churn fit`): ``fitted_on`` (the churn model's
    rows, then Gamma-Gamma's): "everyone" (the sample holds the whole population: its
    exact rows), "day cells" (and how many) or "sample" (no cell kept yet); Gamma-Gamma's
    "spend cells" (whole: streams.state.claims) or else "sample"."""
    spend = scorer.spend.to_dict() if scorer.spend else None
    return {
        **scorer.model.to_dict(),
        "gamma_gamma": spend,
        "spend_error": spend_error,
        "version": version,
        "as_of_ms": as_of_ms,
        "published": published,
        "fitted_on": fitted_on[0],
        "spend_fitted_on": fitted_on[1],
        "cells": cells[0],
        "spend_cells": cells[1],
    }

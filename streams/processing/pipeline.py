"""The per-batch logic of a worker as plain functions: decode, fold, evaluate
segments and churn risk, and say when each customer is next due. No Kafka, no
Redis: the agent and the timer feed states in and write what comes out, so all
of this is testable without a broker.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from online_models.churn_risk import ChurnScorer
from online_models.clusters import ClusterSnapshot
from online_models.customer import MS_PER_DAY, CustomerState, RefusedEvent
from online_models.days import UTC_DAYS, Days
from online_models.features import as_rows, behaviour_features
from online_models.rfm import RFMScorer
from streams.audiences import evaluate as audience
from streams.audiences.definitions import AudienceSet
from streams.processing.schemas import (
    Click,
    Event,
    Limits,
    Purchase,
    Refund,
    Rejection,
    Watermark,
    decode,
    iso,
)
from streams.state import facts

# How long a customer's orders are kept for de-duplication and refunds after its latest
# event (docs/decisions.md, "The order horizon"); Settings.order_horizon_days sets it.
ORDER_HORIZON_MS = 730 * MS_PER_DAY

EPOCH_SHIFT = 48  # offsets below 2**48 (Kafka's are int64, but 2.8e14 is decades at 1M/s)


@dataclass(frozen=True)
class Record:
    """One Kafka record as the pipeline sees it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    # Which incarnation of the events topic (0 first; +1 each time it is re-created):
    # offsets restart at 0 in a new one, so positions compare epoch first.
    epoch: int = 0

    @property
    def position(self) -> int:
        """The offset, ordered across topic incarnations (what a state's applied mark holds)."""
        return (self.epoch << EPOCH_SHIFT) | self.offset


def _event_id(*parts) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Cause:
    """What made an evaluation happen: a Kafka record, or event time passing."""

    reason: str  # the event type, or "time"
    key: str  # "p<partition>o<offset>" or "t<at_ms>": makes output ids deterministic

    @classmethod
    def record(cls, record: Record, reason: str) -> Cause:
        where = f"p{record.partition}o{record.offset}"
        return cls(reason, where if record.epoch == 0 else f"e{record.epoch}{where}")

    @classmethod
    def time(cls, at_ms: int) -> Cause:
        return cls("time", f"t{at_ms}")


@dataclass(frozen=True)
class SegmentChange:
    customer_id: str
    kind: str
    from_segment: str | None
    to_segment: str | None
    at_ms: int
    cause: Cause
    features: dict
    seq: int = 0  # the customer's change sequence (CustomerState.next_change_seq)

    output: ClassVar[str] = "segment_changes"  # the output topic (Settings.<output>_topic)

    @property
    def event_id(self) -> str:
        return _event_id(self.customer_id, self.kind, self.cause.key)

    def to_json(self) -> dict:
        return {
            "event_id": self.event_id,
            "customer_id": self.customer_id,
            "kind": self.kind,
            "from": self.from_segment,
            "to": self.to_segment,
            "at": iso(self.at_ms),
            "reason": self.cause.reason,
            "features": self.features,
            "seq": self.seq,
        }


@dataclass(frozen=True)
class ChurnAlert:
    customer_id: str
    at_ms: int
    score: dict
    model: str
    threshold: float
    recency_days: float
    seq: int = 0  # the customer's change sequence, shared with its segment changes

    output: ClassVar[str] = "churn_risk"

    @property
    def event_id(self) -> str:
        # One alert per upward crossing: the crossing time identifies it.
        return _event_id(self.customer_id, "churn", self.at_ms)

    def to_json(self) -> dict:
        return {
            "event_id": self.event_id,
            "customer_id": self.customer_id,
            "churn_risk": self.score["churn_risk"],
            "p_alive": self.score["p_alive"],
            "model": self.model,
            "threshold": self.threshold,
            "at": iso(self.at_ms),
            "recency_days": self.recency_days,
            "expected_next_purchase": iso(self.score["expected_next_purchase_ms"]),
            "expected_purchases_30d": self.score["expected_purchases_30d"],
            "seq": self.seq,
        }


@dataclass(frozen=True)
class AudienceChange:
    customer_id: str
    audience: str
    change: str  # "enter" | "exit"
    at_ms: int
    cause: Cause
    definitions: int  # the version of the audience definitions that decided it
    seq: int = 0

    output: ClassVar[str] = "audience_changes"

    @property
    def event_id(self) -> str:
        return _event_id(self.customer_id, "audience", self.audience, self.change, self.cause.key)

    def to_json(self) -> dict:
        return {
            "event_id": self.event_id,
            "customer_id": self.customer_id,
            "audience": self.audience,
            "change": self.change,
            "at": iso(self.at_ms),
            "reason": self.cause.reason,
            "definitions": self.definitions,
            "seq": self.seq,
        }


@dataclass
class BatchOutcome:
    states: dict[str, CustomerState] = field(default_factory=dict)  # changed customers only
    changes: list[SegmentChange] = field(default_factory=list)
    alerts: list[ChurnAlert] = field(default_factory=list)
    audience_changes: list[AudienceChange] = field(default_factory=list)
    due: dict[str, int | None] = field(default_factory=dict)  # next due time per changed customer
    rejected: list[tuple[Record, Rejection]] = field(default_factory=list)
    # records whose fold raised (isolating fold only), with their customer: to the DLQ
    set_aside: list[tuple[str, Record, Rejection]] = field(default_factory=list)
    # per customer: [applied, duplicates, redelivered], so a lost write can be taken back
    counts: dict[str, list[int]] = field(default_factory=dict)
    # per changed customer: its behaviour features, for the cluster trainer
    samples: dict[str, dict[str, float]] = field(default_factory=dict)
    # per written customer: its change to the population facts (streams.state.facts), its
    # contribution as written minus as read; applied with its write, only if that wins
    fact_deltas: dict[str, dict[str, int]] = field(default_factory=dict)
    # per customer: refunds that came before their order (``refund_waiting``), were
    # credited when it came (``refund_matched_late``), or were dropped at the order horizon,
    # their order never placed under this customer id (``refund_unmatched``): counters in
    # {ns}:stats, so a refund keyed to the wrong customer shows (docs/decisions.md, S9)
    refund_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    max_event_ts: dict[int, int] = field(default_factory=dict)  # per source partition
    explicit_watermark: dict[int, int] = field(default_factory=dict)  # per source partition
    # the worker's: the changes and alerts as outbox entries (streams.processing.outbox), to relay
    outbox: list = field(default_factory=list)
    types: dict[str, int] = field(default_factory=dict)  # the batch's valid events, by type
    # customers past their retention (tick only), with the state version read: each gets
    # its tombstones sent, then is erased unless written since (StateStore.erase)
    expired: dict[str, int] = field(default_factory=dict)

    @property
    def outputs(self) -> list:
        """Segment changes, churn alerts and audience changes, each customer's in sequence
        order."""
        return sorted([*self.changes, *self.alerts, *self.audience_changes],
                      key=lambda item: item.seq)  # fmt: skip

    @property
    def memberships(self) -> dict[str, dict[str, int | None]]:
        """Per customer whose audiences changed: audience id -> when it entered, or None
        (not a member), as its state now says (what the audience indexes must show)."""
        out: dict[str, dict[str, int | None]] = {}
        for change in self.audience_changes:
            state = self.states.get(change.customer_id)
            if state is not None:
                out.setdefault(change.customer_id, {})[change.audience] = state.audiences.get(
                    change.audience
                )
        return out

    @property
    def applied(self) -> int:
        return sum(c[0] for c in self.counts.values())

    @property
    def duplicates(self) -> int:
        return sum(c[1] for c in self.counts.values())

    @property
    def redelivered(self) -> int:
        return sum(c[2] for c in self.counts.values())

    def partition_marks(self, allowed_lateness_ms: int) -> dict[int, int]:
        """Each source partition's event-time mark: max(max event ts - allowed lateness,
        producer watermark). The shared watermark is the least of them (see store.Marks)."""
        marks = {p: ts - allowed_lateness_ms for p, ts in self.max_event_ts.items()}
        for p, ts in self.explicit_watermark.items():
            marks[p] = max(marks.get(p, ts), ts)
        return marks


@dataclass(frozen=True)
class Models:
    """What a customer is evaluated with: the RFM scorer and, once there are some, the
    churn model and the cluster snapshot."""

    rfm: RFMScorer
    churn: ChurnScorer | None = None
    clusters: ClusterSnapshot | None = None
    # RTBA_RETENTION_DAYS: a customer this long without an event is erased (None: kept)
    retention_ms: int | None = None
    # the audience definitions in force (`rtba audience apply`) and their version
    audiences: AudienceSet | None = None
    audiences_version: int = 0


def decode_batch(
    records: Iterable[Record],
    now_ms: int,
    limits: Limits,
    pseudonyms: Callable[[str], str] | None = None,
) -> tuple[list[tuple[Record, Event]], list[tuple[Record, Rejection]]]:
    """The batch's events and rejections; with ``pseudonyms`` (streams.privacy), each
    event's ids already replaced by theirs."""
    valid, rejected = [], []
    for record in records:
        result = decode(record.value, now_ms, limits)
        if isinstance(result, Rejection):
            rejected.append((record, result))
        else:
            valid.append((record, pseudonymised(result, pseudonyms) if pseudonyms else result))
    return valid, rejected


def pseudonymised(event: Event, pseudonyms: Callable[[str], str]) -> Event:
    """``event`` with the ids rtba keeps replaced by their pseudonyms: the customer's, and
    the event and order ids kept for de-duplication (often built from the customer's)."""
    if isinstance(event, Watermark):
        return event
    ids = {"customer_id": pseudonyms(event.customer_id), "event_id": pseudonyms(event.event_id)}
    if isinstance(event, Purchase | Refund):
        ids["order_id"] = pseudonyms(event.order_id)
    return event.model_copy(update=ids)


def lookups(valid: Iterable[tuple[Record, Event]]) -> dict[str, bool]:
    """Per customer of the batch, whether the store must load its orders (a purchase or
    refund in the batch: purchase figures derive from them)."""
    needed: dict[str, bool] = {}
    for _, event in valid:
        if isinstance(event, Watermark):
            continue
        with_orders = isinstance(event, Purchase | Refund)
        needed[event.customer_id] = needed.get(event.customer_id, False) or with_orders
    return needed


def rfm_features(state: CustomerState, now_ms: int, scorer: RFMScorer) -> dict | None:
    recency = state.recency_days(now_ms)
    if recency is None:
        return None
    r, f, m = scorer.at(now_ms).score(recency, state.purchases, state.monetary)
    return {
        "recency_days": recency,
        "frequency": state.purchases,
        "monetary": float(state.monetary),
        "r": r,
        "f": f,
        "m": m,
    }


def assign_cluster(
    state: CustomerState, now_ms: int, models: Models, cause: Cause, out: BatchOutcome
) -> None:
    """Nearest cluster of the snapshot in force; a change is a kind "cluster" segment change.
    Ids are stable across snapshots, so a new snapshot relabels nobody by itself."""
    if models.clusters is None or not models.clusters.ids:
        return
    features = behaviour_features(state, now_ms)
    if features is None:
        return
    _set_cluster(state, models.clusters.assign(features), now_ms, cause, features, out)


def _set_cluster(state: CustomerState, cluster_id: int, now_ms: int, cause: Cause,
                 features: dict, out: BatchOutcome) -> None:  # fmt: skip
    if cluster_id != state.cluster_id:
        out.changes.append(SegmentChange(
            state.customer_id, "cluster",
            None if state.cluster_id is None else str(state.cluster_id), str(cluster_id),
            now_ms, cause, features, state.next_change_seq(),
        ))  # fmt: skip
        state.cluster_id = cluster_id


def evaluate(
    state: CustomerState, now_ms: int, models: Models, cause: Cause, out: BatchOutcome
) -> None:
    """Re-evaluate a customer's segment, cluster, churn risk and audiences as of
    ``now_ms``; record what changed."""
    assign_cluster(state, now_ms, models, cause, out)
    _evaluate_scores(state, now_ms, models, cause, out)
    evaluate_audiences(state, now_ms, models, cause, out)


def evaluate_audiences(
    state: CustomerState, now_ms: int, models: Models, cause: Cause, out: BatchOutcome
) -> None:
    """Bring the customer's audience memberships up to date (after its segment, cluster
    and churn risk: conditions read them)."""
    audiences = models.audiences
    if audiences is None:
        return
    audience.prune(state, audiences, now_ms)
    profile = audience.Profile(state, now_ms, models.rfm, models.churn)
    for audience_id, change in audience.changes(state, audience.members(audiences, profile),
                                                now_ms):  # fmt: skip
        out.audience_changes.append(AudienceChange(
            state.customer_id, audience_id, change, now_ms, cause, models.audiences_version,
            state.next_change_seq(),
        ))  # fmt: skip


def segment_at(state: CustomerState, now_ms: int, models: Models) -> str | None:
    """The RFM segment ``models`` give the customer at ``now_ms`` (None: no purchase)."""
    features = rfm_features(state, now_ms, models.rfm)
    if features is None:
        return None
    return models.rfm.at(now_ms).segment(features["recency_days"], state.purchases,
                                         state.monetary)  # fmt: skip


def _evaluate_scores(
    state: CustomerState, now_ms: int, models: Models, cause: Cause, out: BatchOutcome
) -> None:
    features = rfm_features(state, now_ms, models.rfm)
    if features is None:
        if state.segment is not None:  # every order refunded: no longer in any RFM segment
            out.changes.append(SegmentChange(
                state.customer_id, "rfm", state.segment, None, now_ms, cause, {},
                state.next_change_seq(),
            ))  # fmt: skip
            state.segment = None
        return
    segment = models.rfm.at(now_ms).segment(features["recency_days"], state.purchases,
                                            state.monetary)  # fmt: skip
    if segment != state.segment:
        out.changes.append(SegmentChange(
            state.customer_id, "rfm", state.segment, segment, now_ms, cause, features,
            state.next_change_seq(),
        ))  # fmt: skip
        state.segment = segment
    churn = models.churn
    if churn is None:
        return
    # Only P(alive) here: the full score (three expectations) is for an alert that fires.
    risk = churn.risk(state, now_ms)
    # At the crossing instant float rounding can leave risk a hair under the threshold; the
    # crossing time itself is the authority, or the alert would slip to the next due time.
    crossing = churn.risk_crossing_ms(state) if state.churn_armed else None
    reached = risk >= churn.threshold or (crossing is not None and now_ms >= crossing)
    if state.churn_armed and reached:
        out.alerts.append(ChurnAlert(
            state.customer_id, now_ms, churn.score(state, now_ms), churn.model.name,
            churn.threshold, features["recency_days"], state.next_change_seq(),
        ))  # fmt: skip
        state.churn_armed = False
    elif not state.churn_armed and risk < churn.rearm_below:
        state.churn_armed = True


def next_due_ms(state: CustomerState, models: Models) -> int | None:
    """The next event time at which this customer's evaluation can change with no new event:
    the next recency-score edge, the churn-risk crossing while an alert is armed, the end
    of its retention, or a time an audience condition turns (a window expiring, say)."""
    clock = state.clock_ms
    if clock is None:
        return None
    candidates = []
    if (retained := retention_end_ms(state, models)) is not None:
        candidates.append(retained)
    if models.audiences is not None:
        turns = audience.next_change_ms(models.audiences, state, clock, models.rfm, models.churn)
        if turns is not None:
            candidates.append(turns)
    if state.last_purchase_ms is None:
        return min(candidates) if candidates else None
    candidates += models.rfm.recency_crossings_ms(state.last_purchase_ms)  # R falls at each
    if models.churn is not None and state.churn_armed:
        crossing = models.churn.risk_crossing_ms(state)
        if crossing is not None:
            candidates.append(crossing)
    later = [t for t in candidates if t > clock]
    return min(later) if later else None


def retention_end_ms(state: CustomerState, models: Models) -> int | None:
    """When a customer silent since its last event is due for erasure (None: never)."""
    if models.retention_ms is None or state.last_event_ms is None:
        return None
    return state.last_event_ms + models.retention_ms


def _set_fact_delta(out: BatchOutcome, state: CustomerState, before: dict | None,
                    days: Days) -> None:  # fmt: skip
    """The customer's change to the population facts, from its contribution as read
    (``before``, taken before anything changed it) to its state as it will be written
    (day cell included)."""
    written = facts.written_contribution(state, days)
    out.fact_deltas[state.customer_id] = facts.delta(before, written)


def _apply(state: CustomerState, event: Event, horizon_ms: int,
           audiences: AudienceSet | None = None, days: Days = UTC_DAYS,
           refunds: dict[str, int] | None = None) -> bool:  # fmt: skip
    if isinstance(event, Purchase | Refund):
        refunds = {} if refunds is None else refunds
        held = state.orders.get(event.order_id)
        applied = _apply_order_event(state, event, days)
        if applied and held is not None and not held.placed and isinstance(event, Purchase):
            _add(refunds, "refund_matched_late", len(held.refund_ids))
        if applied and isinstance(event, Refund) and not state.orders[event.order_id].placed:
            _add(refunds, "refund_waiting", 1)
        _add(refunds, "refund_unmatched", state.seal(horizon_ms, days))
        if applied and audiences is not None and isinstance(event, Purchase):
            audience.log_purchase(state, audiences, event.ts, event.category_quantities())
        return applied
    assert isinstance(event, Click)
    applied = state.apply_click(event.ts, event.action, event.category)
    if applied and audiences is not None:
        audience.log_click(state, audiences, event.ts, event.action, event.category)
    return applied


def _add(counts: dict[str, int], name: str, n: int) -> None:
    if n:
        counts[name] = counts.get(name, 0) + n


def _apply_order_event(state: CustomerState, event: Purchase | Refund, days: Days) -> bool:
    if isinstance(event, Purchase):
        return state.apply_purchase(
            event.ts,
            event.amount,
            event.order_id,
            event.category_quantities(),
            discounted=bool(event.discount),
            items=sum(item.quantity for item in event.items),
            days=days,
        )
    return state.apply_refund(event.ts, event.amount, event.order_id, event.event_id, days)


def fold_batch(
    valid: Iterable[tuple[Record, Event]],
    states: Mapping[str, CustomerState],
    models: Models,
    isolate: bool = False,
    horizon_ms: int = ORDER_HORIZON_MS,
    days: Days = UTC_DAYS,
) -> BatchOutcome:
    """Apply decoded events, in record order, to the loaded customer states.

    After each applied event the customer is evaluated as of its own clock (its
    latest event or time-driven evaluation), never the worker's watermark, so the
    output depends on each customer's events alone, however records are batched.
    Records already reflected in a state (same partition, offset not above the
    last applied one) are skipped, so redelivery after a crash changes nothing.

    With ``isolate``, a record whose fold raises is set aside (``set_aside``, reason
    ``unprocessable``) and its customer's state restored, so the rest of the batch
    applies: the worker folds a batch that way only after a plain fold raised. A purchase
    placed before its customer's sealed day (``horizon_ms``) is set aside as
    ``beyond_horizon``: it cannot be told from a repeat of a forgotten order. Purchase
    days and the horizon's midnight are ``days``' calendar days (RTBA_TIMEZONE).
    """
    out = BatchOutcome()
    states = dict(states)
    before: dict[str, dict | None] = {}
    for record, event in valid:
        p = record.partition
        out.max_event_ts[p] = max(out.max_event_ts.get(p, event.ts), event.ts)
        if isinstance(event, Watermark):
            out.explicit_watermark[p] = max(out.explicit_watermark.get(p, event.ts), event.ts)
            continue
        if not isolate:
            _fold_one(record, event, states[event.customer_id], models, out, before, horizon_ms,
                      days)  # fmt: skip
            continue
        cid = event.customer_id
        saved = copy.deepcopy(states[cid])
        marks = (len(out.changes), len(out.alerts), list(out.counts.get(cid, [0, 0, 0])),
                 dict(out.refund_counts.get(cid, {})))  # fmt: skip
        try:
            _fold_one(record, event, states[cid], models, out, before, horizon_ms, days)
        except Exception as exc:  # noqa: BLE001 - one record never loses the others
            states[cid] = saved
            if cid in out.states:
                out.states[cid] = saved
            del out.changes[marks[0] :], out.alerts[marks[1] :]
            out.counts[cid] = marks[2]
            out.refund_counts[cid] = marks[3]
            why = Rejection("unprocessable", f"{type(exc).__name__}: {exc}"[:300])
            out.set_aside.append((cid, record, why))
    for cid, state in out.states.items():
        out.due[cid] = next_due_ms(state, models)
        if out.counts[cid][0]:  # only applied events are new evidence for the trainer
            out.samples[cid] = {"features": behaviour_features(state, state.clock_ms),
                                "last_event_ms": state.last_event_ms}  # fmt: skip
        _set_fact_delta(out, state, before[cid], days)
    return out


def _fold_one(
    record: Record,
    event: Event,
    state: CustomerState,
    models: Models,
    out: BatchOutcome,
    before: dict[str, dict | None],
    horizon_ms: int,
    days: Days = UTC_DAYS,
) -> None:
    counts = out.counts.setdefault(event.customer_id, [0, 0, 0])
    if event.customer_id not in before:  # its contribution as read, before the first event
        before[event.customer_id] = facts.stored_contribution(state, days)
    if state.already_applied(record.partition, record.position):
        counts[2] += 1
        return
    state.mark_applied(record.partition, record.position)
    out.states[event.customer_id] = state
    try:
        applied = _apply(state, event, horizon_ms, models.audiences, days,
                         out.refund_counts.setdefault(event.customer_id, {}))  # fmt: skip
    except RefusedEvent as e:  # beyond the horizon, one order or refund too many
        out.set_aside.append((event.customer_id, record, Rejection(e.reason, str(e))))
        return
    if not applied:
        counts[1] += 1
        return
    counts[0] += 1
    evaluate(state, state.clock_ms, models, Cause.record(record, event.type), out)


def reassign_clusters(states: Iterable[CustomerState], models: Models,
                      days: Days = UTC_DAYS) -> BatchOutcome:  # fmt: skip
    """Assign customers to the clusters of a new snapshot (the leader's sweep), all of a
    slice in one distance computation. Only the customers whose id actually changes are
    written and announced (with their change to the facts, ``days`` their calendar)."""
    out = BatchOutcome()
    snapshot = models.clusters
    if snapshot is None or not snapshot.ids:
        return out
    cause = Cause("snapshot", f"s{snapshot.version}")
    known = [(s, f) for s in states if (f := behaviour_features(s, s.clock_ms)) is not None]
    if not known:
        return out
    nearest = snapshot.assign_many(as_rows([features for _, features in known]))
    for (state, features), cluster_id in zip(known, nearest.tolist(), strict=True):
        before, read = state.cluster_id, facts.stored_contribution(state, days)
        _set_cluster(state, cluster_id, state.clock_ms, cause, features, out)
        if state.cluster_id != before:
            evaluate_audiences(state, state.clock_ms, models, cause, out)
            out.states[state.customer_id] = state
            _set_fact_delta(out, state, read, days)
    return out


def reevaluate_audiences(states: Iterable[CustomerState], models: Models,
                         days: Days = UTC_DAYS) -> BatchOutcome:  # fmt: skip
    """The backfill of new audience definitions: each customer evaluated as of its own
    clock. Every customer read gets its due time again (the new definitions may wake it
    at other times); only those whose memberships or logs changed are written (with
    their change to the facts, ``days`` their calendar)."""
    out = BatchOutcome()
    cause = Cause("definitions", f"a{models.audiences_version}")
    for state in states:
        before = (dict(state.audiences), {k: list(v) for k, v in state.recent.items()})
        read = facts.stored_contribution(state, days)
        evaluate_audiences(state, state.clock_ms, models, cause, out)
        if (state.audiences, state.recent) != before:
            out.states[state.customer_id] = state
            _set_fact_delta(out, state, read, days)
        out.due[state.customer_id] = next_due_ms(state, models)
    return out


def rescore_due(states: Iterable[CustomerState], watermark_ms: int, models: Models,
                days: Days = UTC_DAYS) -> BatchOutcome:  # fmt: skip
    """Walk each customer through every due time up to the watermark, in order, so a
    silent customer passes through each intermediate segment at its exact time (each
    written with its change to the facts, ``days`` its calendar)."""
    out = BatchOutcome()
    for state in states:
        end = retention_end_ms(state, models)
        if end is not None and end <= watermark_ms:  # retention is over: no more scoring
            out.expired[state.customer_id] = state.version
            continue
        read = facts.stored_contribution(state, days)
        due = next_due_ms(state, models)
        walked = due is not None and due <= watermark_ms
        while due is not None and due <= watermark_ms:
            state.evaluated_ms = due
            evaluate(state, due, models, Cause.time(due), out)
            due = next_due_ms(state, models)
        if not walked and state.clock_ms is not None:
            # Woken with nothing due by its own times: new RFM edges change its segment
            # (refresh_rfm_edges marks it due now), or an early wake-up (ZADD LT). Evaluate
            # it once at the watermark (never before its own clock) with the models in force.
            at = max(watermark_ms, state.clock_ms)
            state.evaluated_ms = at
            evaluate(state, at, models, Cause.time(at), out)
            due = next_due_ms(state, models)
        out.states[state.customer_id] = state
        _set_fact_delta(out, state, read, days)
        out.due[state.customer_id] = due
    return out

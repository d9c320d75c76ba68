"""The per-batch logic of a worker as plain functions: decode, fold, detect
segment changes. No Kafka, no Redis: the agent feeds records in and writes what
comes out, so all of this is testable without a broker.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from online_models.customer import CustomerState, utc_day
from online_models.rfm import RFMScorer
from streams.schemas import (
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


@dataclass(frozen=True)
class Record:
    """One Kafka record as the pipeline sees it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class SegmentChange:
    customer_id: str
    kind: str
    from_segment: str | None
    to_segment: str | None
    at_ms: int
    reason: str
    features: dict
    partition: int
    offset: int

    @property
    def event_id(self) -> str:
        # Derived from the record that caused it: re-processing it gives the same id.
        seed = f"{self.customer_id}|{self.kind}|{self.partition}|{self.offset}"
        return hashlib.sha256(seed.encode()).hexdigest()[:32]

    def to_json(self) -> dict:
        return {
            "event_id": self.event_id,
            "customer_id": self.customer_id,
            "kind": self.kind,
            "from": self.from_segment,
            "to": self.to_segment,
            "at": iso(self.at_ms),
            "reason": self.reason,
            "features": self.features,
        }


@dataclass
class BatchOutcome:
    states: dict[str, CustomerState] = field(default_factory=dict)  # changed customers only
    changes: list[SegmentChange] = field(default_factory=list)
    rejected: list[tuple[Record, Rejection]] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0
    redelivered: int = 0
    max_event_ts: int | None = None
    explicit_watermark: int | None = None


def decode_batch(
    records: Iterable[Record], now_ms: int, limits: Limits
) -> tuple[list[tuple[Record, Event]], list[tuple[Record, Rejection]]]:
    valid, rejected = [], []
    for record in records:
        result = decode(record.value, now_ms, limits)
        if isinstance(result, Rejection):
            rejected.append((record, result))
        else:
            valid.append((record, result))
    return valid, rejected


def lookups(valid: Iterable[tuple[Record, Event]]) -> dict[str, tuple[set[str], set[int]]]:
    """Per customer, the de-duplication keys and purchase days the store must load."""
    needed: dict[str, tuple[set[str], set[int]]] = {}
    for _, event in valid:
        if isinstance(event, Watermark):
            continue
        keys, days = needed.setdefault(event.customer_id, (set(), set()))
        if isinstance(event, Purchase):
            keys.add(f"o:{event.order_id}")
            days.add(utc_day(event.ts))
        elif isinstance(event, Refund):
            keys.add(f"r:{event.event_id}")
    return needed


def rfm_features(state: CustomerState, now_ms: int, scorer: RFMScorer) -> dict | None:
    recency = state.recency_days(now_ms)
    if recency is None:
        return None
    r, f, m = scorer.score(recency, state.purchases, state.monetary)
    return {
        "recency_days": recency,
        "frequency": state.purchases,
        "monetary": float(state.monetary),
        "r": r,
        "f": f,
        "m": m,
    }


def segment_now(state: CustomerState, scorer: RFMScorer) -> tuple[str | None, dict | None]:
    """The customer's RFM segment as of their own latest event time.

    Using the customer's own clock (not the worker's watermark) makes the
    segment sequence a function of the customer's events alone, so a replay
    gives the same changes however the records are batched or partitioned.
    """
    if state.last_event_ms is None:
        return None, None
    features = rfm_features(state, state.last_event_ms, scorer)
    if features is None:
        return None, None
    return scorer.segment(features["recency_days"], state.purchases, state.monetary), features


def _apply(state: CustomerState, event: Event) -> bool:
    if isinstance(event, Purchase):
        return state.apply_purchase(
            event.ts, event.amount, event.order_id, event.category_quantities()
        )
    if isinstance(event, Refund):
        return state.apply_refund(event.ts, event.amount, event.event_id)
    assert isinstance(event, Click)
    return state.apply_click(event.ts, event.action, event.category)


def fold_batch(
    valid: Iterable[tuple[Record, Event]],
    states: Mapping[str, CustomerState],
    scorer: RFMScorer,
) -> BatchOutcome:
    """Apply decoded events, in record order, to the loaded customer states.

    Records already reflected in a state (same partition, offset not above the
    last applied one) are skipped, so redelivery after a crash changes nothing.
    """
    out = BatchOutcome()
    for record, event in valid:
        out.max_event_ts = max(out.max_event_ts or event.ts, event.ts)
        if isinstance(event, Watermark):
            out.explicit_watermark = max(out.explicit_watermark or event.ts, event.ts)
            continue
        state = states[event.customer_id]
        if state.already_applied(record.partition, record.offset):
            out.redelivered += 1
            continue
        state.mark_applied(record.partition, record.offset)
        out.states[event.customer_id] = state
        if not _apply(state, event):
            out.duplicates += 1
            continue
        out.applied += 1
        segment, features = segment_now(state, scorer)
        if segment != state.segment:
            out.changes.append(
                SegmentChange(
                    customer_id=event.customer_id,
                    kind="rfm",
                    from_segment=state.segment,
                    to_segment=segment,
                    at_ms=state.last_event_ms,
                    reason=event.type,
                    features=features or {},
                    partition=record.partition,
                    offset=record.offset,
                )
            )
            state.segment = segment
    return out

"""The outbox: every output event is written to Redis in the same script call as the state
change that caused it, and only then relayed to Kafka.

A worker that crashes between its Redis write and its Kafka send would otherwise lose
those events for good: on redelivery the records are already applied, so nothing is
emitted again. With the outbox, the entry waits in the customer's own outbox hash (same
hash tag, same Cluster slot as the state) until the broker acknowledged it; the leader
relays whatever is older than ``STALE_MS`` (a crashed writer's leftovers). A re-send
carries the same bytes, hence the same ``event_id``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

STALE_MS = 5_000  # an entry this old has no live writer about to relay it


@dataclass(frozen=True)
class Entry:
    """One output event waiting in a customer's outbox."""

    customer_id: str
    event_id: str
    output: str  # which output topic: "segment_changes" | "churn_risk"
    payload: bytes  # the event, JSON
    written_ms: int  # wall clock of the write (for staleness, not for the event)
    version: int  # the customer-state version whose write added it
    seq: int  # the event's change sequence: the order to relay a customer's entries in

    def encode(self) -> str:
        head = f"{self.output}|{self.written_ms}|{self.version}|{self.seq}"
        return f"{head}|{self.payload.decode()}"

    @classmethod
    def decode(cls, customer_id: str, event_id: str, raw: str) -> Entry:
        output, written, version, seq, payload = raw.split("|", 4)
        return cls(customer_id, event_id, output, payload.encode(), int(written), int(version),
                   int(seq))  # fmt: skip


def entries_for(items: Iterable, versions: dict[str, int], written_ms: int) -> list[Entry]:
    """The outbox entries of a fold's segment changes and alerts, in order; ``versions``
    is each customer's version as read (its write, if it wins, makes version + 1)."""
    return [
        Entry(
            item.customer_id,
            item.event_id,
            item.output,
            json.dumps(item.to_json()).encode(),
            written_ms,
            versions[item.customer_id] + 1,
            item.seq,
        )
        for item in items
    ]


def by_customer(entries: Iterable[Entry]) -> dict[str, list[Entry]]:
    out: dict[str, list[Entry]] = {}
    for entry in entries:
        out.setdefault(entry.customer_id, []).append(entry)
    return out

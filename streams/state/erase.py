"""Erasing customers from Redis: every key and index entry that names one, and its place
in the population histograms (the caller sends the tombstones: streams.erasure).

What names a customer in Redis (streams/state/keys.py): its state string and its outbox
hash (one slot, deleted by one script call), its member in a due-index bucket, in the
outbox index and in the audience indexes it belongs to (and, should a first erase have
died half-way, those of every defined audience). The histograms count customers per
bucket without naming them; the customer's count is taken back out, from the state the
script deleted, so the adaptive RFM edges stop counting it. Nothing else holds an id:
counters, models, the dashboard's samples and the sweeps' cursors are about the
population.

Crash safety: the state goes first, in one atomic step. Should the process die before
the rest, running the erase again finishes it (the index entries go; a histogram count
would stay one too high until the next refresh, since the state it came from is gone).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from streams.audiences.definitions import AudienceSet
from streams.processing.pipeline import histogram_point
from streams.state import due_index, state_codec
from streams.state.keys import Keys
from streams.state.store import lua


@dataclass(frozen=True)
class Erased:
    customer_id: str
    had_state: bool
    unsent_events: int  # output events still in its outbox, now never sent

    def to_json(self) -> dict:
        return {"customer_id": self.customer_id, "had_state": self.had_state,
                "unsent_events": self.unsent_events}  # fmt: skip


def followups(keys: Keys, customer_id: str, stored: bytes | None):
    """What is left once erase_customer.lua deleted a customer's state: the histogram
    counts to take back (histogram key, bucket), the due_set.lua calls that take it out
    of the due index, and the audience indexes it is a member of (the outbox index entry
    is a ZREM of ``keys.outbox_index``)."""
    state = state_codec.decode(customer_id, stored) if stored else None
    point = histogram_point(state) if state else None
    counts = [(keys.histogram(name), bucket) for name, bucket in (point or {}).items()]
    audiences = [keys.audience_members(aid) for aid in (state.audiences if state else ())]
    return counts, due_index.set_calls(keys, {}, [customer_id]), audiences


class Eraser:
    """``rtba erase`` and the API's: one synchronous client's scripts, registered once."""

    def __init__(self, client: redis.Redis, keys: Keys):
        self.client, self.keys = client, keys
        self._erase = client.register_script(lua("erase_customer"))
        self._due_set = client.register_script(lua("due_set"))

    def erase(self, customer_id: str) -> Erased:
        keys = self.keys
        stored, unsent = self._erase(keys=[keys.customer(customer_id), keys.outbox(customer_id)])
        counts, due_calls, audiences = followups(keys, customer_id, stored)
        # A first erase that died after the state went left no record of the audiences:
        # every defined one is asked too.
        defined = self.client.hget(keys.audiences, "json")
        if defined:
            ids = AudienceSet.model_validate_json(defined).ids
            audiences = sorted(set(audiences) | {keys.audience_members(a) for a in ids})
        for name, bucket in counts:
            self.client.hincrby(name, bucket, -1)
        for name in audiences:
            self.client.zrem(name, customer_id)
        for names, args in due_calls:
            self._due_set(keys=names, args=args)
        self.client.zrem(keys.outbox_index, customer_id)
        return Erased(customer_id, bool(stored), int(unsent))

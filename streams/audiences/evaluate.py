"""Audience membership as plain functions of a customer's state and event time: which
audiences hold, when the answer next changes with no new event, and the per-customer
event logs the windowed counts read.

Windows are in event time: an event at ``ts`` counts toward a window of D days at every
time ``t`` with ``t - D < ts <= t``, so it stops counting at exactly ``ts + D``, and
that instant is one of the customer's due times (pipeline.next_due_ms): the leader's
tick re-evaluates the customer then, and it leaves on time with no new event.

The logs (``CustomerState.recent``) keep, per ``<event>:<category>`` that some count
reads, the newest events' times within the longest window over it, at most as many as
the largest ``at_least`` over it: "at least N in the last D days" only ever needs the
N newest, so the counts are exact and a customer's log stays bounded. Only the events
some definition counts are logged: a count added later counts from then on (the
backfill evaluates everything else exactly; docs/audiences.md).
"""

from __future__ import annotations

import math
from bisect import insort
from collections.abc import Iterable

from online_models.churn_risk import ChurnScorer
from online_models.customer import MS_PER_DAY, CustomerState
from online_models.rfm import RFMScorer
from streams.audiences.definitions import (
    AudienceSet,
    FieldCondition,
)

_SEARCH_MS = 200 * 365 * MS_PER_DAY  # how far ahead a CLV crossing is looked for


class Profile:
    """The values conditions compare, for one customer as of ``now_ms`` (computed once
    each, when first asked for)."""

    def __init__(self, state: CustomerState, now_ms: int, rfm: RFMScorer,
                 churn: ChurnScorer | None):  # fmt: skip
        self.state, self.now_ms, self.rfm, self.churn = state, now_ms, rfm, churn
        self._values: dict[str, object] = {}

    def value(self, name: str):
        if name not in self._values:
            self._values[name] = self._compute(name)
        return self._values[name]

    def count(self, key: str, window_ms: int) -> int:
        """Events in the customer's ``key`` log within the window ending now."""
        return count_in_window(self.state.recent.get(key, ()), self.now_ms, window_ms)

    def _compute(self, name: str):
        s, now = self.state, self.now_ms
        if name == "segment":
            return s.segment
        if name == "cluster":
            return s.cluster_id
        if name == "frequency":
            return s.purchases
        if name == "monetary":
            return s.monetary if s.last_purchase_ms is not None else None
        if name == "days_since_last_event":
            return None if s.last_event_ms is None else max(0, now - s.last_event_ms) / MS_PER_DAY
        if name == "recency_days":
            return s.recency_days(now)
        if name in ("r", "f", "m"):
            recency = s.recency_days(now)
            if recency is None:
                return None
            r, f, m = self.rfm.at(now).score(recency, s.purchases, s.monetary)
            return {"r": r, "f": f, "m": m}[name]
        if self.churn is None or s.first_purchase_ms is None:
            return None
        if name == "churn_risk":
            return self.churn.risk(s, now)
        if name == "p_alive":
            return 1.0 - self.churn.risk(s, now)
        if name == "clv":
            return self.churn.score(s, now)["predicted_clv_365d"]
        raise KeyError(name)


def count_in_window(times: Iterable[int], now_ms: int, window_ms: int) -> int:
    """How many of ``times`` fall in (now - window, now].

    >>> count_in_window([10, 20, 30], now_ms=30, window_ms=10)
    1
    """
    return sum(1 for t in times if now_ms - window_ms < t <= now_ms)


def members(audiences: AudienceSet, profile: Profile) -> list[str]:
    """The ids of the audiences the profile is in, in definition order."""
    return [audience_id for audience_id, holds_for in audiences.predicates if holds_for(profile)]


def changes(state: CustomerState, current: list[str], now_ms: int) -> list[tuple[str, str]]:
    """Bring ``state.audiences`` to ``current``: the (audience id, "exit" | "enter")
    pairs, exits first (an audience no longer defined is left too)."""
    inside = set(current)
    left = sorted(aid for aid in state.audiences if aid not in inside)
    came = [aid for aid in current if aid not in state.audiences]
    for aid in left:
        del state.audiences[aid]
    for aid in came:
        state.audiences[aid] = now_ms
    return [(aid, "exit") for aid in left] + [(aid, "enter") for aid in came]


# -- the logs ------------------------------------------------------------------


def log_click(state: CustomerState, audiences: AudienceSet, ts_ms: int, action: str,
              category: str | None) -> None:  # fmt: skip
    categories = ("*",) if not category else ("*", category)
    # a set: a click counts once in each log, whatever its action and category are called
    _log(state, audiences, ts_ms, {f"{e}:{c}" for e in ("click", action) for c in categories})


def log_purchase(state: CustomerState, audiences: AudienceSet, ts_ms: int,
                 categories: Iterable[str]) -> None:  # fmt: skip
    """One purchase counts once per category it holds, and once in ``purchase:*``."""
    _log(state, audiences, ts_ms, {"purchase:*", *(f"purchase:{c}" for c in categories)})


def _log(state: CustomerState, audiences: AudienceSet, ts_ms: int, keys: set[str]) -> None:
    for key in keys:
        if key in audiences.logs:
            insort(state.recent.setdefault(key, []), ts_ms)


def prune(state: CustomerState, audiences: AudienceSet, now_ms: int) -> None:
    """Drop what no count can read again: events out of every window over their log, all
    but the newest ``at_least`` of the rest, and logs no definition reads."""
    for key in list(state.recent):
        if key not in audiences.logs:
            del state.recent[key]
            continue
        window, keep = audiences.logs[key]
        kept = [t for t in state.recent[key] if t > now_ms - window][-keep:]
        if kept:
            state.recent[key] = kept
        else:
            del state.recent[key]


# -- when the answer can next change -------------------------------------------


def next_change_ms(audiences: AudienceSet, state: CustomerState, after_ms: int,
                   rfm: RFMScorer, churn: ChurnScorer | None) -> int | None:  # fmt: skip
    """The first event time after ``after_ms`` at which a condition of the set can turn
    with no new event (None: none can). Segment, cluster and score conditions turn only
    at the RFM recency edges, which pipeline.next_due_ms adds itself. A time that turns
    out to change nothing costs one idle evaluation."""
    candidates = []
    for key, times in state.recent.items():
        for leaf in audiences.counts.get(key, ()):
            candidates += [t + leaf.window_ms for t in times]
    for leaf in audiences.fields:
        candidates += _field_edges(leaf, state, after_ms, rfm, churn)
    later = [t for t in candidates if t > after_ms]
    return min(later) if later else None


def _field_edges(leaf: FieldCondition, state: CustomerState, after_ms: int, rfm: RFMScorer,
                 churn: ChurnScorer | None) -> list[int]:  # fmt: skip
    if leaf.op == "in_":
        return []
    base = {"recency_days": state.last_purchase_ms,
            "days_since_last_event": state.last_event_ms}.get(leaf.field)  # fmt: skip
    if base is not None:  # the value grows by one a day: it reaches the target then
        at = base + leaf.value * MS_PER_DAY
        return [math.floor(at), math.floor(at) + 1] if math.isfinite(at) else []
    if churn is None or state.first_purchase_ms is None:
        return []
    if leaf.field in ("churn_risk", "p_alive"):  # risk only rises with silence
        threshold = leaf.value if leaf.field == "churn_risk" else 1.0 - leaf.value
        crossing = churn.risk_crossing_ms(state, threshold)
        return [] if crossing is None else [crossing - 1, crossing, crossing + 1]
    if leaf.field == "clv":
        return _clv_edges(leaf, state, after_ms, rfm, churn)
    return []


def churn_thresholds(audiences: AudienceSet | None, churn: ChurnScorer) -> list[float] | None:
    """Every churn-risk level whose crossing time a model decides (the alert's, and each
    ``churn_risk`` or ``p_alive`` condition's), or None when a ``clv`` condition turns at a
    time no day cell bounds (it depends on the spend too): a new model then re-schedules
    customer by customer (streams.state.due_cells)."""
    levels = {churn.threshold}
    for leaf in audiences.fields if audiences is not None else ():
        if leaf.op == "in_":
            continue
        if leaf.field == "clv":
            return None
        if leaf.field in ("churn_risk", "p_alive"):
            levels.add(leaf.value if leaf.field == "churn_risk" else 1.0 - leaf.value)
    return sorted(levels)


def _clv_edges(leaf: FieldCondition, state: CustomerState, after_ms: int, rfm: RFMScorer,
               churn: ChurnScorer) -> list[int]:  # fmt: skip
    """Predicted CLV only falls with silence, so the leaf turns at most once: found by
    bisection to the millisecond (~45 CLV evaluations; only for CLV conditions)."""

    holds_for = leaf.predicate()

    def truth(t: int) -> bool:
        return holds_for(Profile(state, t, rfm, churn))

    lo, hi = after_ms, after_ms + _SEARCH_MS
    start = truth(lo)
    if truth(hi) == start:
        return []
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if truth(mid) == start else (lo, mid)
    return [hi]

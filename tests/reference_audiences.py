"""An independent batch evaluation of audience definitions over an event list: for each
customer, membership as a function of event time, and the instants it changes.

It shares no code with rtba: it reads the definition file as plain JSON, counts window
events by scanning the customer's whole history (no logs, no pruning), and takes the RFM
segment from tests.reference and, given a churn model's parameters, the churn risk from
the published MBG/NBD formula (Batislam et al. 2007). The rules it follows are
docs/audiences.md's: an event at
``ts`` counts toward a D-day window for ``t - D < ts <= t``; a value a customer does not
have makes a comparison false; a customer is evaluated after each of its applied events
and at every instant with no event at which a condition can turn, up to ``until_ms``.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from tests.reference import DAY, RECENCY_EDGES, _one, applied_events, epoch_ms, reference_segment

WEEK = 7 * DAY


def churn_risk(state: dict, now_ms: int, params: dict) -> float:
    """MBG/NBD: 1 - P(alive | x, t_x, T), in weeks; x counts purchase days after the
    first, t_x = 0 for a single purchase day, T never below t_x."""
    first, last = state["first_purchase_ms"], state["last_purchase_ms"]
    x = state["purchase_days"] - 1
    t_x = (last - first) / WEEK if x else 0.0
    big_t = max((now_ms - first) / WEEK, t_x)
    r, alpha, a, b = (params[k] for k in ("r", "alpha", "a", "b"))
    odds = a / (b + x) * ((alpha + big_t) / (alpha + t_x)) ** (r + x)
    return 1 - 1 / (1 + odds)


class _Customer:
    """One customer as of a moment: the events applied so far, and the time."""

    def __init__(self, events: list[dict], now_ms: int, churn: dict | None = None):
        self.events, self.now, self.churn = events, now_ms, churn
        self.state = _one(events)

    def value(self, field: str):
        s, now = self.state, self.now
        last_purchase = s["last_purchase_ms"]
        if field == "days_since_last_event":
            return (now - s["last_event_ms"]) / DAY
        if field == "frequency":
            return s["purchases"]
        if last_purchase is None:
            return None  # the others need a purchase
        if field == "segment":
            return reference_segment((now - last_purchase) / DAY, s["purchases"], s["monetary"])
        if field == "monetary":
            return s["monetary"]
        if field == "recency_days":
            return (now - last_purchase) / DAY
        if field == "churn_risk" and self.churn is not None:
            return churn_risk(s, now, self.churn)
        return None  # p_alive, CLV, cluster: not in the reference

    def count(self, event: str, category: str | None, days: float) -> int:
        lo = self.now - round(days * DAY)
        n = 0
        for e in self.events:
            ts = epoch_ms(e["ts"])
            if not lo < ts <= self.now:
                continue
            if event == "purchase" and e["type"] == "purchase":
                cats = {i.get("category") for i in e.get("items", [])}
                n += category is None or category in cats
            elif e["type"] == "click" and event in ("click", e["action"]):
                n += category is None or e.get("category") == category
        return n


def holds(cond: dict, c: _Customer) -> bool:
    if "all" in cond:
        return all(holds(x, c) for x in cond["all"])
    if "any" in cond:
        return any(holds(x, c) for x in cond["any"])
    if "not" in cond:
        return not holds(cond["not"], c)
    if "count" in cond:
        return c.count(cond["count"], cond.get("category"), cond["within_days"]) >= cond["at_least"]
    value = c.value(cond["field"])
    if value is None:
        return False
    if "in" in cond:
        return value in cond["in"]
    ((op, target),) = [(k, v) for k, v in cond.items() if k != "field"]
    if isinstance(value, Decimal):
        target = Decimal(str(target))
    return {"gte": value >= target, "gt": value > target, "lte": value <= target,
            "lt": value < target, "eq": value == target}[op]  # fmt: skip


def _first_risky_ms(state: dict, params: dict, threshold: float, after: int,
                    before: int) -> int | None:  # fmt: skip
    """The first ms in (after, before) at which churn risk reaches ``threshold`` (bisection:
    it only rises with silence)."""
    if state["last_purchase_ms"] is None or churn_risk(state, after, params) >= threshold:
        return None
    if churn_risk(state, before - 1, params) < threshold:
        return None
    lo, hi = after, before - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if churn_risk(state, mid, params) >= threshold else (mid, hi)
    return hi


def _quiet_turns(definitions: dict, events: list[dict], after: int, before: int,
                 churn: dict | None) -> list[int]:  # fmt: skip
    """Every instant in (after, before) at which a condition could turn with no event."""
    state = _one(events)
    times = set()
    for audience in definitions["audiences"]:
        for leaf in _leaves(audience["when"]):
            if "count" in leaf:
                window = round(leaf["within_days"] * DAY)
                times |= {epoch_ms(e["ts"]) + window for e in events}
            elif leaf["field"] == "days_since_last_event":
                times.add(state["last_event_ms"] + round(leaf[_op(leaf)] * DAY))
            elif leaf["field"] == "recency_days" and state["last_purchase_ms"] is not None:
                times.add(state["last_purchase_ms"] + round(leaf[_op(leaf)] * DAY))
            elif leaf["field"] == "churn_risk" and churn is not None:
                at = _first_risky_ms(state, churn, leaf[_op(leaf)], after, before)
                times |= {at} if at is not None else set()
    if state["last_purchase_ms"] is not None:  # the segment drops a step past each edge
        times |= {state["last_purchase_ms"] + edge * DAY + 1 for edge in RECENCY_EDGES}
    return sorted(t for t in times if after < t < before)


def _op(leaf: dict) -> str:
    return next(k for k in leaf if k != "field")


def _leaves(cond: dict) -> list[dict]:
    for key in ("all", "any"):
        if key in cond:
            return [leaf for c in cond[key] for leaf in _leaves(c)]
    if "not" in cond:
        return _leaves(cond["not"])
    return [cond]


def _transitions(definitions: dict, inside: set[str], seen: list[dict], now: int,
                 churn: dict | None) -> list:  # fmt: skip
    """The changes that bring ``inside`` to the memberships of ``seen`` as of ``now``."""
    c = _Customer(seen, now, churn)
    now_in = {a["id"] for a in definitions["audiences"] if holds(a["when"], c)}
    out = [(aid, "exit", now) for aid in sorted(inside - now_in)]
    out += [(a["id"], "enter", now) for a in definitions["audiences"]
            if a["id"] in now_in and a["id"] not in inside]  # fmt: skip
    inside.clear()
    inside.update(now_in)
    return out


def expected_audience_changes(definitions: dict, events: list[dict], until_ms: int,
                              churn: dict | None = None) -> dict[str, list[tuple]]:  # fmt: skip
    """Per customer, its (audience id, "enter" | "exit", at ms) in order: after each applied
    event (as of the latest event time so far), and at each quiet instant up to
    ``until_ms`` before its next event. ``churn``: the MBG/NBD parameters in force."""
    out: dict[str, list[tuple]] = defaultdict(list)
    for cid, evs in applied_events(events).items():
        inside: set[str] = set()
        clock = None
        for i, event in enumerate(evs):
            ts = epoch_ms(event["ts"])
            if clock is not None and ts > clock:
                for t in _quiet_turns(definitions, evs[:i], clock, ts, churn):
                    out[cid] += _transitions(definitions, inside, evs[:i], t, churn)
            clock = ts if clock is None else max(clock, ts)
            out[cid] += _transitions(definitions, inside, evs[: i + 1], clock, churn)
        for t in _quiet_turns(definitions, evs, clock, until_ms + 1, churn):
            out[cid] += _transitions(definitions, inside, evs, t, churn)
    return {cid: seq for cid, seq in out.items() if seq}


def members_at_end(changes: dict[str, list[tuple]]) -> dict[str, set[str]]:
    """Audience id -> its members after the last change."""
    out: dict[str, set[str]] = defaultdict(set)
    for cid, seq in changes.items():
        inside: set[str] = set()
        for aid, change, _ in seq:
            (inside.add if change == "enter" else inside.discard)(aid)
        for aid in inside:
            out[aid].add(cid)
    return dict(out)

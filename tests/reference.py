"""An independent batch computation of what the stream must produce: a plain
group-by over the whole event list. It shares no code with rtba: its own
timestamp parser, its own refund rule and its own segment table, written from
docs/segments.md and docs/decisions.md ("Orders and refunds").
"""

from __future__ import annotations

import calendar
import os
import re
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

DAY = 86_400_000


def local_date(ms: int, tz: str = "UTC") -> int:
    """The shop's calendar date of an epoch-ms time (RTBA_TIMEZONE), as a proleptic
    ordinal: whatever the offset that day, the wall-clock date is what counts."""
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(tz)).date().toordinal()


_ISO = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,6}))?)?)?"
    r"(Z|[+-]\d\d:\d\d)?$"
)


def epoch_ms(ts) -> int:
    """Epoch ms from epoch-ms numbers or the ISO-8601 forms the tests send."""
    if isinstance(ts, int | float):
        return int(ts)
    m = _ISO.match(ts.strip())
    if m is None:
        raise ValueError(f"reference parser cannot read {ts!r}")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    seconds = calendar.timegm((int(year), int(month), int(day), int(hour or 0),
                               int(minute or 0), int(second or 0)))  # fmt: skip
    ms = seconds * 1000 + (int((frac or "0").ljust(6, "0")) // 1000)
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        ms -= sign * (int(zone[1:3]) * 60 + int(zone[4:6])) * 60_000
    return ms


# docs/segments.md, "The classic map": rows R = 5 .. 1, columns FM = 1 .. 5
SEGMENT_TABLE = """
R5: New | Potential Loyalists | Potential Loyalists | Champions | Champions
R4: Promising | Potential Loyalists | Potential Loyalists | Loyal | Loyal
R3: About to Sleep | About to Sleep | Need Attention | Loyal | Loyal
R2: Hibernating | Hibernating | At Risk | At Risk | Can't Lose Them
R1: Lost | Lost | At Risk | At Risk | Can't Lose Them
"""


def _grid(table: str) -> dict[int, list[str]]:
    """R -> the names of FM = 1 .. 5, read off a table as the docs write it."""
    return {
        int(line[1]): [cell.strip() for cell in line[3:].split("|")]
        for line in table.strip().splitlines()
    }


_GRID = _grid(SEGMENT_TABLE)
# docs/segments.md, "Scores": the configured edges
RECENCY_EDGES, FREQUENCY_EDGES, MONETARY_EDGES = (30, 90, 180, 365), (2, 3, 5, 8), (
    100, 300, 750, 2000)  # fmt: skip


# docs/segments.md, "The repeat-aware map" (the default): a one-time buyer (one order) by
# R alone; two orders or more on this grid
ONE_TIME_TABLE = {5: "New", 4: "One-time Recent", 3: "One-time Lapsed",
                  2: "One-time Lapsed", 1: "One-time Lapsed"}  # fmt: skip
# the classic grid but for R5/FM1: nobody with a second order is New, they are Promising
REPEAT_TABLE = SEGMENT_TABLE.replace("R5: New |", "R5: Promising |")
_REPEAT_GRID = _grid(REPEAT_TABLE)


def reference_segment(recency_days: float, orders: int, monetary: Decimal,
                      segment_map: str | None = None) -> str:  # fmt: skip
    """The segment under ``segment_map``, by default the one the tests' rtba processes get
    (RTBA_SEGMENT_MAP passes through to them, so the integration tests run under either)."""
    segment_map = segment_map or os.environ.get("RTBA_SEGMENT_MAP", "repeat-aware")
    r = 5 - sum(recency_days > e for e in RECENCY_EDGES)  # on an edge: the better score
    f = 1 + sum(orders >= e for e in FREQUENCY_EDGES)
    m = 1 + sum(monetary >= e for e in MONETARY_EDGES)
    fm = -(-(f + m) // 2)  # half up
    if segment_map == "classic":
        return _GRID[r][fm - 1]
    return ONE_TIME_TABLE[r] if orders == 1 else _REPEAT_GRID[r][fm - 1]


def applied_events(events: list[dict]) -> dict[str, list[dict]]:
    """Per customer, the events that count, in production order: a repeated order id, or
    a refund id repeated for the same order (refund ids are de-duplicated per order,
    docs/decisions.md S9), is dropped (first occurrence wins); watermarks are not
    customer events."""
    out: dict[str, list[dict]] = defaultdict(list)
    seen: set[tuple] = set()
    for e in events:
        if e.get("type") == "watermark":
            continue
        key = None
        if e["type"] == "purchase":
            key = (e["customer_id"], "order", e["order_id"])
        elif e["type"] == "refund":
            key = (e["customer_id"], "refund", e["order_id"], e["event_id"])
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        out[e["customer_id"]].append(e)
    return out


def batch_state(events: list[dict], tz: str = "UTC") -> dict[str, dict]:
    """Per customer, every state field, from valid events in production order; purchase
    days are calendar dates in ``tz``."""
    return {cid: _one(evs, tz) for cid, evs in applied_events(events).items()}


def _one(evs: list[dict], tz: str = "UTC") -> dict:
    orders = {e["order_id"]: e for e in evs if e["type"] == "purchase"}
    asked: dict[str, Decimal] = defaultdict(Decimal)
    for e in evs:
        if e["type"] == "refund":
            asked[e["order_id"]] += Decimal(str(e["amount"]))
    rows = []  # (ts, amount, credited refund, counts as a purchase, items)
    for oid, e in orders.items():
        amount = Decimal(str(e["amount"]))
        credited = min(asked.get(oid, Decimal(0)), amount)
        counts = amount == 0 or credited < amount
        items = sum(item.get("quantity", 1) for item in e.get("items", []))
        rows.append((epoch_ms(e["ts"]), amount, credited, counts, items))
    buys = [r for r in rows if r[3]]
    days = sorted({local_date(r[0], tz) for r in buys})
    monetary = sum((r[1] - r[2] for r in rows), Decimal(0))
    first_day_net = sum((r[1] - r[2] for r in buys if local_date(r[0], tz) == days[0]),
                        Decimal(0)) \
        if days else Decimal(0)  # fmt: skip
    click_counts: dict[str, int] = defaultdict(int)
    categories: dict[str, int] = defaultdict(int)
    for e in evs:
        if e["type"] == "click":
            click_counts[e["action"]] += 1
            if e.get("category"):
                categories[e["category"]] += 1
    for e in orders.values():
        for item in e.get("items", []):
            if item.get("category"):
                categories[item["category"]] += item.get("quantity", 1)
    return {
        "first_purchase_ms": min((r[0] for r in buys), default=None),
        "last_purchase_ms": max((r[0] for r in buys), default=None),
        "purchases": len(buys),
        "purchase_days": len(days),
        "monetary": monetary,
        "repeat_value": monetary - first_day_net,
        "items": sum(r[4] for r in buys),
        "last_event_ms": max(epoch_ms(e["ts"]) for e in evs),
        "clicks": dict(click_counts),
        "categories": dict(categories),
    }


def expected_segment_changes(events: list[dict]) -> dict[str, list[tuple]]:
    """Per customer, the (from, to) segment sequence: after each applied event, the segment
    of the batch state of the events so far, as of their latest time."""
    out: dict[str, list[tuple]] = defaultdict(list)
    for cid, evs in applied_events(events).items():
        current = None
        for i in range(1, len(evs) + 1):
            state = _one(evs[:i])
            if state["last_purchase_ms"] is None:  # no purchase (left): no segment
                if current is not None:
                    out[cid].append((current, None))
                    current = None
                continue
            recency = max(0, state["last_event_ms"] - state["last_purchase_ms"]) / DAY
            segment = reference_segment(recency, state["purchases"], state["monetary"])
            if segment != current:
                out[cid].append((current, segment))
                current = segment
    return dict(out)


# docs/segments.md, "A fair split": adaptive R, F and M scores


def fair_scores(values: list) -> dict:
    """Score (1-5) of each distinct value: ties never split, no score empty from five
    distinct values, the least sum of squared score sizes, then the lowest edges (the top
    edge first); fewer than five values: 1 .. k-1 and the top value 5; one value: 1."""
    counts: dict = defaultdict(int)
    for v in values:
        counts[v] += 1
    distinct = sorted(counts)
    k = len(distinct)
    if k < 5:
        return {v: (i + 1 if i < k - 1 else (5 if k > 1 else 1)) for i, v in enumerate(distinct)}
    sizes = [counts[v] for v in distinct]
    prefix = [0]
    for n in sizes:
        prefix.append(prefix[-1] + n)
    # split[(s, j)]: (cost, starts of groups s .. 2, latest first) of the first j values in
    # s groups; comparing the tuples is the rule: cost, then the top edge lowest, ...
    split = {(1, j): (prefix[j] ** 2, ()) for j in range(1, k + 1)}
    for s in range(2, 6):
        for j in range(s, k + 1):
            split[(s, j)] = min(
                (split[(s - 1, i)][0] + (prefix[j] - prefix[i]) ** 2, (i, *split[(s - 1, i)][1]))
                for i in range(s - 1, j)
            )
    starts = sorted(split[(5, k)][1])
    return {v: 1 + sum(i >= start for start in starts) for i, v in enumerate(distinct)}


def money_bucket(monetary: Decimal) -> int | None:
    """docs/segments.md: bucket b holds (10^((b-1)/115), 10^(b/115)]; 0 and below: one."""
    if monetary <= 0:
        return None
    from decimal import ROUND_CEILING, localcontext

    with localcontext() as ctx:
        ctx.prec = 50
        return int((monetary.log10() * 115).to_integral_value(ROUND_CEILING))


def reference_scores(customers: list[dict]) -> list[tuple[int, int, int]]:
    """(R, F, M) of each buyer ({last_purchase_ms, purchases, monetary}) under the adaptive
    edges of its population: R by UTC last-purchase day (recent scores 5), F by orders, M
    by money bucket (no bucket: below every other, so first)."""
    days = [c["last_purchase_ms"] // DAY for c in customers]
    buckets = [money_bucket(Decimal(c["monetary"])) for c in customers]
    lowest = min((b for b in buckets if b is not None), default=0) - 1
    buckets = [lowest if b is None else b for b in buckets]
    r, f, m = fair_scores(days), fair_scores([c["purchases"] for c in customers]), fair_scores(
        buckets)  # fmt: skip
    if len(r) == 1:  # one last-purchase day: nobody is less recent, R = 5
        r = {day: 5 for day in r}
    return [
        (r[d], f[c["purchases"]], m[b]) for d, c, b in zip(days, customers, buckets, strict=True)
    ]

"""An independent batch computation of what the stream must produce: plain
group-by over the whole event list, written without online_models' fold."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from streams.schemas import to_epoch_ms

DAY = 86_400_000


def batch_state(events: list[dict]) -> dict[str, dict]:
    """Per customer, every state field, from valid events in production order."""
    by_customer: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        if e.get("type") != "watermark":
            by_customer[e["customer_id"]].append(e)
    return {cid: _one(evs) for cid, evs in by_customer.items()}


def _one(evs: list[dict]) -> dict:
    purchases, seen_orders = [], set()
    for e in evs:
        if e["type"] == "purchase" and e["order_id"] not in seen_orders:
            seen_orders.add(e["order_id"])
            purchases.append(e)
    refunds = {e["event_id"]: e for e in evs if e["type"] == "refund"}.values()
    clicks = [e for e in evs if e["type"] == "click"]
    kept = purchases + list(refunds) + clicks
    times = [to_epoch_ms(e["ts"]) for e in purchases]
    days = sorted({t // DAY for t in times})
    gross = sum((Decimal(str(e["amount"])) for e in purchases), Decimal(0))
    first_day_amount = sum(
        (Decimal(str(e["amount"])) for e in purchases if to_epoch_ms(e["ts"]) // DAY == days[0]),
        Decimal(0),
    ) if days else Decimal(0)  # fmt: skip
    click_counts: dict[str, int] = defaultdict(int)
    categories: dict[str, int] = defaultdict(int)
    for e in clicks:
        click_counts[e["action"]] += 1
        if e.get("category"):
            categories[e["category"]] += 1
    for e in purchases:
        for item in e.get("items", []):
            if item.get("category"):
                categories[item["category"]] += item.get("quantity", 1)
    return {
        "first_purchase_ms": min(times) if times else None,
        "last_purchase_ms": max(times) if times else None,
        "purchases": len(purchases),
        "purchase_days": len(days),
        "monetary": gross - sum((Decimal(str(e["amount"])) for e in refunds), Decimal(0)),
        "repeat_value": gross - first_day_amount,
        "last_event_ms": max(to_epoch_ms(e["ts"]) for e in kept) if kept else None,
        "clicks": dict(click_counts),
        "categories": dict(categories),
    }


def expected_segment_changes(events: list[dict], scorer) -> dict[str, list[tuple]]:
    """Per customer, the (from, to) segment sequence: after each applied event,
    the segment of the batch state of the events so far, as of their latest time."""
    out: dict[str, list[tuple]] = defaultdict(list)
    history: dict[str, list[dict]] = defaultdict(list)
    current: dict[str, str | None] = defaultdict(lambda: None)
    orders: dict[str, set] = defaultdict(set)
    refunds: dict[str, set] = defaultdict(set)
    for e in events:
        if e.get("type") == "watermark":
            continue
        cid = e["customer_id"]
        if e["type"] == "purchase":
            if e["order_id"] in orders[cid]:
                continue
            orders[cid].add(e["order_id"])
        if e["type"] == "refund":
            if e["event_id"] in refunds[cid]:
                continue
            refunds[cid].add(e["event_id"])
        history[cid].append(e)
        state = _one(history[cid])
        if state["last_purchase_ms"] is None:
            continue
        recency = max(0, state["last_event_ms"] - state["last_purchase_ms"]) / DAY
        segment = scorer.segment(recency, state["purchases"], state["monetary"])
        if segment != current[cid]:
            out[cid].append((current[cid], segment))
            current[cid] = segment
    return dict(out)

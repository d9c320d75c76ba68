"""The order horizon: a long-lived customer keeps a bounded set of orders, and its figures
stay those of every order it ever placed (checked against tests/reference.py, which keeps
them all) as long as refunds come within the horizon of their order; what cannot be
de-duplicated any more goes to the DLQ instead of being counted twice."""

import json
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from online_models.customer import CustomerState
from online_models.days import UTC_DAYS, days_in
from online_models.rfm import RFMScorer
from streams.processing.pipeline import Models, Record, decode_batch, fold_batch, lookups
from streams.processing.schemas import Limits
from streams.state import state_codec
from tests import reference

NOW = 1_800_000_000_000
DAY = 86_400_000
START = NOW - 900 * DAY
HORIZON_DAYS = 30
FIGURES = ("purchases", "purchase_days", "first_purchase_ms", "last_purchase_ms", "items",
           "monetary", "repeat_value")  # fmt: skip


def stored_again(state: CustomerState, with_orders: bool) -> CustomerState:
    """The state as a later batch loads it: through the stored value, its orders parsed
    only if the batch has a purchase or refund of the customer (as the store does)."""
    raw = f"{state.version + 1}|".encode() + state_codec.encode(state)
    return state_codec.decode(state.customer_id, raw, with_orders)


def fold_in_batches(events: list[dict], batch: int, days=UTC_DAYS, unmatched=None,
                    refunds=None) -> tuple[dict, list]:  # fmt: skip
    """Fold events a batch at a time, each batch from the stored form of the last (refunds
    dropped unmatched added up per customer in ``unmatched``; every refund counter, added
    up over customers, in ``refunds``)."""
    states: dict[str, CustomerState] = {}
    set_aside = []
    records = [Record(0, i, b"k", json.dumps(e).encode()) for i, e in enumerate(events)]
    for at in range(0, len(records), batch):
        valid, rejected = decode_batch(records[at : at + batch], NOW, Limits())
        assert not rejected
        loaded = {c: stored_again(states[c], orders) if c in states else CustomerState(c)
                  for c, orders in lookups(valid).items()}  # fmt: skip
        out = fold_batch(valid, loaded, Models(RFMScorer()), horizon_ms=HORIZON_DAYS * DAY,
                         days=days)  # fmt: skip
        states.update(out.states)
        for cid, counts in out.refund_counts.items():
            if unmatched is not None and counts.get("refund_unmatched"):
                unmatched[cid] = unmatched.get(cid, 0) + counts["refund_unmatched"]
            for name, n in counts.items():
                if refunds is not None:
                    refunds[name] = refunds.get(name, 0) + n
        set_aside += [(r.offset, why.reason) for _, r, why in out.set_aside]
    return states, set_aside


def figures(state: CustomerState) -> dict:
    return {name: getattr(state, name) for name in FIGURES}


def reference_figures(events: list[dict], cid: str, tz: str = "UTC") -> dict:
    ref = reference.batch_state(events, tz)[cid]
    return {name: ref[name] for name in FIGURES}


# One step of a customer's life: days since the step before, then what happens.
steps = st.lists(
    st.tuples(
        st.integers(0, 12),
        st.sampled_from(["buy", "buy", "buy", "free", "refund", "refund-all", "early-refund",
                         "repeat", "click"]),
        st.integers(1, 300),
    ),
    min_size=1, max_size=120,
)  # fmt: skip


def life(plan) -> list[dict]:
    """Events in time order; refunds and repeats only of orders placed within the last
    HORIZON_DAYS - 2 days, so the horizon never has to refuse or drop one."""
    events, placed, t = [], [], START
    for n, (gap_days, what, cents) in enumerate(plan):
        # hours apart: two orders on one day as well as days apart, across midnights
        t += gap_days * DAY + (cents % 9) * 3_600_000 + n
        recent = [(oid, ts, amount) for oid, ts, amount in placed
                  if t - ts < (HORIZON_DAYS - 2) * DAY]  # fmt: skip
        refundable = [order for order in recent if order[2] > 0]
        base = {"event_id": f"e{n}", "customer_id": "c", "ts": t}
        if what in ("buy", "free"):
            amount = "0" if what == "free" else f"{cents}.{n % 100:02d}"
            events.append({**base, "type": "purchase", "order_id": f"o{n}", "amount": amount,
                           "items": [{"sku": "s", "quantity": 1 + n % 3}]})  # fmt: skip
            placed.append((f"o{n}", t, Decimal(amount)))
        elif what in ("refund", "refund-all") and refundable:
            oid, _, amount = refundable[cents % len(refundable)]
            part = amount if what == "refund-all" else Decimal(cents) / 7
            events.append({**base, "type": "refund", "order_id": oid,
                           "amount": str(round(part, 2))})  # fmt: skip
        elif what == "early-refund":  # the order comes a day later
            events.append({**base, "type": "refund", "order_id": f"o{n}", "amount": "1.00"})
            events.append({**base, "event_id": f"e{n}b", "type": "purchase",
                           "order_id": f"o{n}", "amount": f"{cents}", "ts": t + DAY})  # fmt: skip
            placed.append((f"o{n}", t + DAY, Decimal(cents)))
            t += DAY
        elif what == "repeat" and recent:
            oid, ts, _ = recent[cents % len(recent)]
            events.append({**base, "type": "purchase", "order_id": oid, "amount": "999",
                           "ts": ts})  # fmt: skip
        else:
            events.append({**base, "type": "click", "action": "view"})
    return events


@settings(max_examples=150, deadline=None)
@given(steps, st.sampled_from([1, 7, 500]))
def test_a_long_life_keeps_every_figure_and_a_bounded_order_book(plan, batch):
    events = life(plan)
    states, set_aside = fold_in_batches(events, batch)
    state = states["c"]
    assert set_aside == []
    assert figures(state) == reference_figures(events, "c")
    # what is kept: orders placed (or refunds asked) within the horizon and a day of the
    # latest purchase or refund (clicks do not load the orders, so they seal nothing)
    last = max((e["ts"] for e in events if e["type"] != "click"), default=0)
    oldest = last - (HORIZON_DAYS + 1) * DAY
    assert all((o.ts_ms if o.placed else o.refund_ms) >= oldest for o in state.orders.values())


@settings(max_examples=60, deadline=None)
@given(steps, st.sampled_from(["America/New_York", "America/Santiago", "Australia/Lord_Howe"]))
def test_in_the_shops_time_zone_the_horizon_seals_at_its_midnight(plan, zone):
    """RTBA_TIMEZONE: the same life, purchase days being the zone's dates (the reference
    computes them with zoneinfo itself), orders sealed at its local midnights."""
    events = life(plan)
    states, set_aside = fold_in_batches(events, 7, days_in(zone))
    state = states["c"]
    assert set_aside == []
    assert figures(state) == reference_figures(events, "c", zone)
    if state.sealed_before_ms is not None:  # the first instant of a local date
        tz = ZoneInfo(zone)
        before, at = (
            datetime.fromtimestamp(t / 1000, tz)
            for t in (state.sealed_before_ms - 1, state.sealed_before_ms)
        )
        assert before.date() < at.date()


def purchase(n, ts, order=None, amount="50"):
    return {"event_id": f"e{n}", "customer_id": "c", "type": "purchase",
            "order_id": order or f"o{n}", "amount": amount, "ts": ts}  # fmt: skip


def test_a_repeat_of_a_sealed_order_goes_to_the_dlq_not_into_the_figures():
    events = [purchase(0, START), purchase(1, START + 90 * DAY),
              purchase(2, START, order="o0")]  # fmt: skip
    for batch in (1, 3):
        states, set_aside = fold_in_batches(events, batch)
        assert set_aside == [(2, "beyond_horizon")]
        assert states["c"].purchases == 2 and states["c"].monetary == Decimal(100)
        assert sorted(states["c"].orders) == ["o1"]


def test_a_refund_of_a_sealed_order_is_not_applied_and_does_not_wait_forever():
    events = [purchase(0, START), purchase(1, START + 90 * DAY),
              {"event_id": "r", "customer_id": "c", "type": "refund", "order_id": "o0",
               "amount": "50", "ts": START + 91 * DAY},
              purchase(3, START + 200 * DAY)]  # fmt: skip
    unmatched = {}
    states, set_aside = fold_in_batches(events, 1, unmatched=unmatched)
    state = states["c"]
    assert set_aside == []
    assert (state.purchases, state.monetary) == (3, Decimal(150))  # the refund came too late
    assert sorted(state.orders) == ["o3"]  # the waiting refund expired with o1
    assert unmatched == {"c": 1}  # and is counted as refund_unmatched


def test_a_refund_under_another_customer_id_is_counted_when_it_expires():
    """The order is bob's, the refund names alice: it waits on alice's side, and is counted
    (refund_unmatched) when alice's horizon passes it, not silently dropped."""
    events = [purchase(0, START) | {"customer_id": "bob"},
              {"event_id": "r", "customer_id": "alice", "type": "refund", "order_id": "o0",
               "amount": "20", "ts": START + DAY},
              purchase(2, START + 10 * DAY) | {"customer_id": "alice"},  # within: r waits on
              {"event_id": "r2", "customer_id": "alice", "type": "refund", "order_id": "o9",
               "amount": "5", "ts": START + 40 * DAY},  # another stray one, kept for now
              purchase(3, START + 45 * DAY) | {"customer_id": "alice"}]  # fmt: skip
    for batch in (1, 5):
        unmatched, refunds = {}, {}
        states, set_aside = fold_in_batches(events, batch, unmatched=unmatched, refunds=refunds)
        assert set_aside == [] and unmatched == {"alice": 1}
        # both strays showed when they came (waiting); none found its order
        assert refunds == {"refund_waiting": 2, "refund_unmatched": 1}
        assert states["bob"].monetary == Decimal(50)  # never applied to bob's order
        assert sorted(states["alice"].orders) == ["o3", "o9"]  # o2 sealed, r2 waits on


def test_a_further_refund_of_an_order_holding_the_most_goes_to_the_dlq():
    from online_models.customer import MAX_REFUNDS_PER_ORDER

    refunds = [
        {
            "event_id": f"r{i}",
            "customer_id": "c",
            "type": "refund",
            "order_id": "o0",
            "amount": "0.01",
            "ts": START + i,
        }
        for i in range(MAX_REFUNDS_PER_ORDER + 3)
    ]
    events = [purchase(0, START, amount="100"), *refunds, refunds[5]]  # fmt: skip
    states, set_aside = fold_in_batches(events, 40)
    cap = MAX_REFUNDS_PER_ORDER
    assert set_aside == [(cap + 1, "too_many_refunds"), (cap + 2, "too_many_refunds"),
                         (cap + 3, "too_many_refunds")]  # fmt: skip
    assert states["c"].monetary == 100 - Decimal("0.01") * cap  # the repeat: a duplicate
    stored = state_codec.encode(states["c"])
    assert len(stored) < 3_000  # ~1.6 KB at the cap; 4,000 refunds made 816 KiB


def test_a_customer_holds_at_most_so_many_orders_and_categories_whatever_is_sent(monkeypatch):
    from online_models import customer
    from online_models.customer import MAX_CATEGORIES

    MAX_OPEN_ORDERS = 30  # the real cap is met the same way, only slower to reach
    monkeypatch.setattr(customer, "MAX_OPEN_ORDERS", MAX_OPEN_ORDERS)
    state = CustomerState("c")
    for n in range(MAX_OPEN_ORDERS):
        state.apply_purchase(START + n, Decimal(1), f"o{n}")
    events = [
        purchase(MAX_OPEN_ORDERS, START + DAY),  # one order too many: to the DLQ
        purchase(0, START + DAY, order="o0"),  # a repeat of a kept one: a duplicate, as ever
        {"event_id": "many", "customer_id": "c", "type": "purchase", "order_id": "o1",
         "amount": "1", "ts": START},  # a repeat too
        {"event_id": "r1", "customer_id": "c", "type": "refund", "order_id": "o5",
         "amount": "0.25", "ts": START + DAY},  # a refund of a kept order still counts
        {"event_id": "r2", "customer_id": "c", "type": "refund", "order_id": "unseen",
         "amount": "1", "ts": START + DAY},  # waiting for its order: one more, refused
    ]  # fmt: skip
    records = [Record(0, i, b"c", json.dumps(e).encode()) for i, e in enumerate(events)]
    valid, _ = decode_batch(records, START + 2 * DAY, Limits())
    out = fold_batch(valid, {"c": state}, Models(RFMScorer()))
    assert [(r.offset, why.reason) for _, r, why in out.set_aside] == [
        (0, "too_many_orders"), (4, "too_many_orders")]  # fmt: skip
    assert state.purchases == MAX_OPEN_ORDERS
    assert state.monetary == MAX_OPEN_ORDERS - Decimal("0.25")
    wide = CustomerState("w")
    wide.apply_purchase(START, Decimal(1), "ow", {f"cat{i}": 1 for i in range(5000)})
    wide.apply_click(START, "view", "gifts")
    assert len(wide.categories) == MAX_CATEGORIES and wide.categories["gifts"] == 1


def test_a_refund_before_its_order_waits_then_is_matched_and_counted_both_times():
    """Counted when it comes (refund_waiting) and when its order credits it
    (refund_matched_late), whatever the batching: a stray refund is visible at once, as
    waiting minus matched minus unmatched."""
    events = [{"event_id": "r1", "customer_id": "c", "type": "refund", "order_id": "o1",
               "amount": "5", "ts": START},
              {"event_id": "r2", "customer_id": "c", "type": "refund", "order_id": "o1",
               "amount": "5", "ts": START + 1},
              {"event_id": "r2", "customer_id": "c", "type": "refund", "order_id": "o1",
               "amount": "5", "ts": START + 2},  # the same refund again: counted once
              purchase(1, START + DAY),
              purchase(1, START + DAY),  # the order again: no second match
              {"event_id": "r3", "customer_id": "c", "type": "refund", "order_id": "o1",
               "amount": "5", "ts": START + 2 * DAY}]  # after its order: no wait  # fmt: skip
    for batch in (1, 2, 6):
        refunds = {}
        states, set_aside = fold_in_batches(events, batch, refunds=refunds)
        assert set_aside == []
        assert refunds == {"refund_waiting": 2, "refund_matched_late": 2}
        assert states["c"].monetary == Decimal(35)  # 50 - 3 x 5

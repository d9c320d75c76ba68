import json

from online_models.rfm import RFMScorer
from streams.pipeline import Record, decode_batch, fold_batch, lookups
from streams.schemas import Limits
from streams.store import state_from_fields, state_to_fields

NOW = 1_800_000_000_000
DAY = 86_400_000


def rec(offset, obj, partition=0):
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return Record(partition, offset, b"k", raw)


def purchase(i, cid="c1", amount="20", ts=1_700_000_000_000, order=None):
    return {"event_id": f"e{i}", "customer_id": cid, "type": "purchase",
            "order_id": order or f"o{i}", "amount": amount, "ts": ts}  # fmt: skip


def run(records, states=None):
    valid, rejected = decode_batch(records, NOW, Limits())
    if states is None:
        from online_models.customer import CustomerState

        states = {cid: CustomerState(cid) for cid in lookups(valid)}
    return fold_batch(valid, states, RFMScorer()), rejected


def test_first_assignment_then_only_real_changes():
    out, _ = run([
        rec(0, purchase(0, amount="20")),
        rec(1, purchase(1, amount="20", ts=1_700_000_000_000 + DAY)),  # 2 orders: F=2
        rec(2, purchase(2, amount="20", ts=1_700_000_000_000 + DAY, order="o1")),  # duplicate
    ])  # fmt: skip
    pairs = [(c.from_segment, c.to_segment) for c in out.changes]
    assert pairs == [(None, "New"), ("New", "Potential Loyalists")]
    assert (out.applied, out.duplicates) == (2, 1)
    assert out.changes[1].at_ms == 1_700_000_000_000 + DAY


def test_event_ids_are_deterministic_and_distinct():
    a, _ = run([rec(0, purchase(0)), rec(1, purchase(1, cid="c2"))])
    b, _ = run([rec(0, purchase(0)), rec(1, purchase(1, cid="c2"))])
    assert [c.event_id for c in a.changes] == [c.event_id for c in b.changes]
    assert len({c.event_id for c in a.changes}) == 2
    assert a.changes[0].to_json()["from"] is None


def test_redelivered_records_change_nothing():
    first, _ = run([rec(0, purchase(0)), rec(1, purchase(1, ts=1_700_000_000_000 + DAY))])
    # What the store would hand back after writing the first batch:
    stored = state_from_fields("c1", state_to_fields(first.states["c1"]))
    stored.seen_keys, stored.seen_days = set(first.states["c1"].seen_keys), set()
    again, _ = run([rec(0, purchase(0)), rec(1, purchase(1))], {"c1": stored})
    assert again.redelivered == 2 and again.applied == 0 and not again.changes
    assert stored.purchases == 2


def test_bad_records_are_set_aside_and_the_rest_applies():
    out, rejected = run([rec(0, b"{oops"), rec(1, purchase(1)), rec(2, {"type": "nope"})])
    assert [r.offset for r, _ in rejected] == [0, 2]
    assert out.applied == 1


def test_watermarks_raise_marks_but_touch_no_customer():
    out, _ = run([rec(0, {"type": "watermark", "ts": 10}), rec(1, purchase(1, ts=5))])
    assert (out.explicit_watermark, out.max_event_ts) == (10, 10)
    assert list(out.states) == ["c1"]


def test_state_round_trips_through_the_hash_codec():
    out, _ = run([rec(0, purchase(0, amount="12.34")),
                  rec(1, {"event_id": "x", "customer_id": "c1", "type": "click",
                          "action": "view", "category": "a:b", "ts": 1})])  # fmt: skip
    state = out.states["c1"]
    back = state_from_fields(
        "c1", {k.encode(): v.encode() for k, v in state_to_fields(state).items() if v}
    )
    for attr in ("first_purchase_ms", "purchases", "gross", "clicks", "categories", "segment",
                 "applied_offset", "first_day_amount"):  # fmt: skip
        assert getattr(back, attr) == getattr(state, attr)

"""The stored state value: every field back as it was, compact, and refused when corrupt."""

import typing
from dataclasses import fields
from decimal import Decimal

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from online_models.customer import CustomerState, Order, Totals
from online_models.rfm import SEGMENTS
from streams.processing.schemas import Click
from streams.state.state_codec import (
    ACTION_CODES,
    SEGMENT_CODES,
    CorruptState,
    decode,
    encode,
    version_of,
)

# Not compared field by field: the key and the version are outside the payload, and the
# orders are checked on their own (parsed, or carried unparsed).
NOT_IN_THE_VALUE = {"customer_id", "version", "orders", "orders_loaded", "stored_orders"}
MS = st.integers(0, 4_102_444_800_000)  # up to 2100
maybe_ms = st.none() | MS
count = st.integers(0, 2**40)
amount = st.decimals(min_value=0, max_value=10**9, places=4, allow_nan=False)
names = st.text(min_size=1, max_size=20)
totals = st.builds(
    Totals, purchases=count, days=count, items=count, discounted=count, gross=amount,
    refunds=amount, first_ms=maybe_ms, last_ms=maybe_ms, first_day_amount=amount,
)  # fmt: skip

orders = st.builds(
    Order, ts_ms=maybe_ms, amount=amount, refunded=amount, items=count,
    discounted=st.booleans(), refund_ids=st.lists(names, max_size=4).map(tuple),
    refund_ms=maybe_ms,
).filter(lambda o: o.refund_ids or o.refund_ms is None)  # fmt: skip
states = st.builds(
    CustomerState,
    orders=st.dictionaries(names, orders, max_size=6),
    customer_id=st.text(min_size=1, max_size=30),
    first_purchase_ms=maybe_ms, last_purchase_ms=maybe_ms, first_event_ms=maybe_ms,
    last_event_ms=maybe_ms, evaluated_ms=maybe_ms,
    purchases=count, purchase_days=count, items=count, discounted=count,
    first_day_amount=amount, gross=amount, refunds=amount,
    clicks=st.dictionaries(st.sampled_from(ACTION_CODES) | names, count, max_size=5),
    categories=st.dictionaries(names, count, max_size=5),
    segment=st.none() | st.sampled_from(SEGMENT_CODES) | names,
    cluster_id=st.none() | st.integers(0, 1000),
    churn_armed=st.booleans(), applied_partition=st.none() | st.integers(0, 10_000),
    applied_offset=st.none() | st.integers(0, 2**62), change_seq=count,
    sealed=totals, sealed_before_ms=MS,
    audiences=st.dictionaries(names, MS, max_size=4),
    recent=st.dictionaries(names, st.lists(MS, min_size=1, max_size=5).map(sorted), max_size=4),
) | st.builds(CustomerState, customer_id=st.text(min_size=1, max_size=30),
              last_event_ms=maybe_ms)  # fmt: skip


@given(states, st.integers(1, 2**50))
def test_every_field_and_order_comes_back(state, version):
    raw = f"{version}|".encode() + encode(state)
    back = decode(state.customer_id, raw, with_orders=True)
    for f in fields(CustomerState):
        if f.name not in NOT_IN_THE_VALUE:
            assert getattr(back, f.name) == getattr(state, f.name), f.name
    assert back.version == version and back.customer_id == state.customer_id
    assert back.orders == state.orders and back.orders_loaded


@given(states)
def test_orders_not_asked_for_pass_through_a_write_untouched(state):
    """A tick or a click-only batch does not parse the orders, and writes them back as
    they were."""
    raw = b"3|" + encode(state)
    unparsed = decode(state.customer_id, raw)
    assert not unparsed.orders_loaded and unparsed.orders == {}
    again = decode(state.customer_id, b"4|" + encode(unparsed), with_orders=True)
    assert again.orders == state.orders


def test_unparsed_orders_keep_their_times_when_a_later_event_moves_the_state():
    """A click-only batch carries the orders unparsed while the click moves the state's
    own time anchor: the orders' times must not move with it (they did: offsets from the
    state's anchor, found by the fault suite's first-purchase times)."""
    t = 1_700_000_000_000
    state = CustomerState("c")
    state.apply_purchase(t, Decimal("5"), "o1")
    carried = decode("c", b"1|" + encode(state))  # no purchase in the batch: unparsed
    carried.apply_click(t + 40 * 86_400_000, "view")
    back = decode("c", b"2|" + encode(carried), with_orders=True)
    assert back.orders["o1"].ts_ms == t and back.first_purchase_ms == t


def test_a_state_of_the_earlier_format_is_refused_with_what_to_do():
    earlier = b"4|" + msgpack.packb([1, 1_700_000_000_000] + [None] * 12)
    with pytest.raises(CorruptState, match="earlier build.*replay the events"):
        decode("c", earlier)


def test_a_format_2_state_decodes_with_no_audiences_and_no_logs():
    state = CustomerState("c", last_event_ms=1_700_000_000_000, purchases=3, segment="Loyal",
                          audiences={"vip": 1_699_000_000_000}, recent={"view:*": [1]})  # fmt: skip
    fields_now = msgpack.unpackb(encode(state))
    assert fields_now[0] == 3
    format_2 = msgpack.packb([2, *fields_now[1:-2]])  # what the previous build wrote
    back = decode("c", b"5|" + format_2)
    assert (back.purchases, back.segment, back.version) == (3, "Loyal", 5)
    assert back.audiences == {} and back.recent == {}


@pytest.mark.parametrize("clicks", [{}, {"view": 3}, {"view": 0}, {"search": 1, "tap": 2},
                                    {"wishlist": 2**40, "view": 1}])  # fmt: skip
@pytest.mark.parametrize("segment", [None, "Lost", "Some Future Segment"])
def test_coded_names_come_back_and_the_rest_by_name(clicks, segment):
    state = CustomerState("c", last_event_ms=5, clicks=clicks, segment=segment)
    back = decode("c", b"1|" + encode(state))
    assert (back.clicks, back.segment) == (clicks, segment)


def test_every_segment_and_click_action_has_its_code():
    """A name outside the codes still round-trips (by name), but costs bytes: the codes
    must cover what the pipeline writes."""
    assert set(SEGMENTS) <= set(SEGMENT_CODES)
    assert set(typing.get_args(Click.model_fields["action"].annotation)) <= set(ACTION_CODES)


def test_no_stored_value_is_a_new_customer_with_all_of_its_orders():
    state = decode("c", None)
    assert (state.version, state.purchases, state.orders_loaded) == (0, 0, True)
    assert version_of(None) == 0


def test_a_busy_customer_takes_well_under_the_hash_it_replaces():
    """~350 bytes as a listpack hash of 24 fields; the value carries no field names."""
    t = 1_760_000_000_000
    state = CustomerState(
        "c", first_purchase_ms=t - 300 * 86_400_000, last_purchase_ms=t - 86_400_000,
        purchases=40, purchase_days=35, first_day_amount=Decimal("31.99"),
        gross=Decimal("1843.20"), refunds=Decimal("55.00"), items=97, discounted=12,
        first_event_ms=t - 310 * 86_400_000, last_event_ms=t, evaluated_ms=t + 3_600_000,
        clicks={"view": 412, "add_to_cart": 88, "wishlist": 9, "search": 150},
        categories={"books": 31, "toys": 12, "garden": 4, "electronics": 20},
        segment="Potential Loyalists", cluster_id=3, applied_partition=5,
        applied_offset=(2 << 48) | 1_234_567, change_seq=57,
    )  # fmt: skip
    assert len(encode(state)) <= 200  # 174; as JSON with short field names: 438


@pytest.mark.parametrize("raw", [b"garbage", b"|x", b"3|", b"3|\xc1", b"3|\x93\x01\x02\x03",
                                 b"3|\x91\x09"])  # fmt: skip
def test_a_value_that_is_not_a_state_is_refused_by_name(raw):
    with pytest.raises(CorruptState, match="state|format"):
        decode("c", raw)

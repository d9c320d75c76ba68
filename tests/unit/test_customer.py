import itertools
import random
from decimal import Decimal

import pytest

from online_models.customer import MS_PER_DAY, CustomerState

T0 = 1_700_000_000_000


def fold(events):
    """Events: ("p", ts, amount, order_id), ("r", ts, amount, "order_id/refund_id"),
    ("c", ts, None, action)."""
    s = CustomerState("c")
    for kind, ts, amount, key in events:
        if kind == "p":
            s.apply_purchase(ts, Decimal(amount), key, {"books": 1}, items=1)
        elif kind == "r":
            order_id, refund_id = key.split("/")
            s.apply_refund(ts, Decimal(amount), order_id, refund_id)
        else:
            s.apply_click(ts, key, "toys")
    return s


def snapshot(s: CustomerState):
    return (s.first_purchase_ms, s.last_purchase_ms, s.purchases, s.purchase_days, s.monetary,
            s.repeat_value, s.last_event_ms, tuple(sorted(s.clicks.items())),
            tuple(sorted(s.categories.items())))  # fmt: skip


def test_state_does_not_depend_on_arrival_order():
    events = [
        ("p", T0, "10.10", "o1"),
        ("p", T0 + 3_600_000, "5.00", "o2"),  # same day as o1
        ("p", T0 + 5 * MS_PER_DAY, "7.35", "o3"),
        ("r", T0 + 6 * MS_PER_DAY, "2.00", "o3/r1"),
        ("c", T0 + 9 * MS_PER_DAY, None, "view"),
        ("p", T0 - 2 * MS_PER_DAY, "1.25", "o0"),  # an earlier first purchase
    ]
    results = {snapshot(fold(perm)) for perm in itertools.permutations(events)}
    assert len(results) == 1
    s = fold(events)
    assert s.first_purchase_ms == T0 - 2 * MS_PER_DAY
    assert s.purchase_days == 3
    # repeat value: net value after the first purchase day, whichever arrived first
    assert s.repeat_value == Decimal("20.45")
    assert s.monetary == Decimal("21.70")


def test_refunds_belong_to_their_order_in_any_arrival_order():
    """Partial, full, excess and early refunds; the result is the same in every order."""
    events = [
        ("p", T0, "40.00", "a"),
        ("p", T0 + 2 * MS_PER_DAY, "25.00", "b"),
        ("p", T0 + 5 * MS_PER_DAY, "10.00", "c"),
        ("r", T0 + 3 * MS_PER_DAY, "5.00", "a/r1"),  # partial
        ("r", T0 + 6 * MS_PER_DAY, "30.00", "c/r2"),  # more than the order: capped at 10
        ("r", T0 + 7 * MS_PER_DAY, "7.00", "zz/r3"),  # no such order: waits, counts nothing
    ]
    results = {snapshot(fold(perm)) for perm in itertools.permutations(events)}
    assert len(results) == 1
    s = fold(events)
    # c is refunded in full: not a purchase, so neither F nor x nor the last purchase
    assert (s.purchases, s.purchase_days) == (2, 2)
    assert s.last_purchase_ms == T0 + 2 * MS_PER_DAY
    assert s.monetary == Decimal("60.00")  # 35 + 25 + 0, never below zero
    assert s.repeat_value == Decimal("25.00")  # b only
    assert s.items == 2
    assert s.btyd(T0 + 7 * MS_PER_DAY)["x"] == 1


def test_a_refund_before_its_order_is_applied_when_the_order_comes():
    s = fold([("r", T0, "15", "o1/r1"), ("r", T0, "15", "o1/r1")])  # the second is a repeat
    assert (s.purchases, s.monetary) == (0, 0)
    s.apply_purchase(T0 + 1, Decimal("20"), "o1")
    assert (s.purchases, s.monetary) == (1, Decimal("5"))
    s.apply_refund(T0 + 2, Decimal("9"), "o1", "r2")  # 5 were left: the order is now gone
    assert (s.purchases, s.purchase_days, s.monetary) == (0, 0, 0)
    assert s.first_purchase_ms is None and s.btyd(T0 + 5) is None


def test_a_free_order_is_a_purchase_and_cannot_be_refunded():
    s = fold([("p", T0, "0", "free"), ("r", T0 + 1, "3", "free/r1")])
    assert (s.purchases, s.purchase_days, s.monetary) == (1, 1, 0)


def test_orders_on_one_day_are_one_transaction_day():
    """Two orders on one UTC day: x = 0, and t_x = 0 however far apart they were."""
    day0 = T0 // MS_PER_DAY * MS_PER_DAY
    s = fold([("p", day0 + 60_000, "5", "a"), ("p", day0 + 23 * 3_600_000, "5", "b")])
    b = s.btyd(day0 + 60_000 + 30 * MS_PER_DAY)
    assert (s.purchases, b["x"], b["t_x_days"], b["T_days"]) == (2, 0, 0.0, 30.0)
    s.apply_purchase(day0 + 60_000 + 3 * MS_PER_DAY, Decimal("1"), "c")
    assert s.btyd(day0 + 60_000 + 30 * MS_PER_DAY)["t_x_days"] == 3.0


def test_figures_need_every_order():
    from streams.state import state_codec

    s = fold([("p", T0, "5", "a")])
    stored = state_codec.decode("c", b"1|" + state_codec.encode(s))  # as stored: no orders
    with pytest.raises(RuntimeError, match="not loaded"):
        stored.apply_purchase(T0 + 1, Decimal("1"), "b")


def test_repeated_order_counts_once_first_occurrence_wins():
    s = fold([("p", T0, "10.00", "o1"), ("p", T0 + 5, "99.00", "o1")])
    assert (s.purchases, s.monetary) == (1, Decimal("10.00"))
    assert s.orders["o1"].amount == Decimal("10.00")


def test_days_are_utc_calendar_days():
    midnight = (T0 // MS_PER_DAY + 1) * MS_PER_DAY
    s = fold([("p", midnight - 1, "1", "a"), ("p", midnight, "1", "b")])
    assert s.purchase_days == 2
    assert s.btyd(midnight)["x"] == 1


def test_btyd_units():
    s = fold([("p", T0, "1", "a"), ("p", T0 + 14 * MS_PER_DAY, "1", "b")])
    b = s.btyd(T0 + 21 * MS_PER_DAY)
    assert b == {"x": 1, "t_x_days": 14.0, "T_days": 21.0, "t_x_weeks": 2.0, "T_weeks": 3.0}
    assert s.recency_days(T0 + 21 * MS_PER_DAY) == 7.0
    assert s.recency_days(T0) == 0  # never negative


def test_redelivery_is_recognised_by_partition_and_offset():
    s = CustomerState("c")
    s.mark_applied(2, 40)
    assert s.already_applied(2, 40) and s.already_applied(2, 3)
    assert not s.already_applied(2, 41)
    assert not s.already_applied(1, 3)  # another partition (after a repartition)


def test_exact_decimal_sums():
    rng = random.Random(1)
    amounts = [f"{rng.randint(1, 99999) / 100:.2f}" for _ in range(500)]
    s = fold([("p", T0 + i, a, f"o{i}") for i, a in enumerate(amounts)])
    assert s.monetary == sum(Decimal(a) for a in amounts)

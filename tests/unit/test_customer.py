import itertools
import random
from decimal import Decimal

from online_models.customer import MS_PER_DAY, CustomerState

T0 = 1_700_000_000_000


def fold(events):
    s = CustomerState("c")
    for kind, ts, amount, key in events:
        if kind == "p":
            s.apply_purchase(ts, Decimal(amount), key, {"books": 1})
        elif kind == "r":
            s.apply_refund(ts, Decimal(amount), key)
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
        ("r", T0 + 6 * MS_PER_DAY, "2.00", "r1"),
        ("c", T0 + 9 * MS_PER_DAY, None, "view"),
        ("p", T0 - 2 * MS_PER_DAY, "1.25", "o0"),  # an earlier first purchase
    ]
    results = {snapshot(fold(perm)) for perm in itertools.permutations(events)}
    assert len(results) == 1
    s = fold(events)
    assert s.first_purchase_ms == T0 - 2 * MS_PER_DAY
    assert s.purchase_days == 3
    # repeat value: everything after the first purchase day, whichever arrived first
    assert s.repeat_value == Decimal("22.45")
    assert s.monetary == Decimal("21.70")


def test_repeated_order_counts_once_first_occurrence_wins():
    s = fold([("p", T0, "10.00", "o1"), ("p", T0 + 5, "99.00", "o1")])
    assert (s.purchases, s.monetary) == (1, Decimal("10.00"))
    assert s.new_keys == {"o:o1"}


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

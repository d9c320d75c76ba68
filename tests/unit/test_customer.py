import datetime as dt
import itertools
import random
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from online_models.customer import MS_PER_DAY, CustomerState
from online_models.days import days_in
from streams.state import state_codec

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


# -- RTBA_TIMEZONE: purchase days are the shop's calendar dates (docs/decisions.md, S9) ----
# The oracle computes local dates itself, with datetime and zoneinfo, never online_models.days.

ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe",  # DST of 30 min
         "Asia/Kolkata", "Pacific/Chatham", "America/Santiago"]  # fmt: skip
# Santiago changes at local midnight (a day starts at 01:00, or 23:00 comes twice)
YEAR_2024 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)


def offset_changes(zone: str) -> list[int]:
    """The instants (ms) of 2024 at which the zone's UTC offset changes, found by walking
    the year a quarter hour at a time (2024's changes are on quarter hours)."""
    tz, step = ZoneInfo(zone), 900_000
    offset = [datetime.fromtimestamp((YEAR_2024 + i * step) / 1000, tz).utcoffset()
              for i in range(366 * 96)]  # fmt: skip
    return [YEAR_2024 + i * step for i in range(1, len(offset)) if offset[i] != offset[i - 1]]


CHANGES = {zone: offset_changes(zone) or [YEAR_2024] for zone in ZONES}


def local_dates(times_ms, zone: str) -> set:
    return {datetime.fromtimestamp(t / 1000, ZoneInfo(zone)).date() for t in times_ms}


def buy_all(times_ms, days) -> CustomerState:
    s = CustomerState("c")
    for i, t in enumerate(times_ms):
        s.apply_purchase(t, Decimal("1"), f"o{i}", days=days)
    return s


def test_two_orders_around_utc_midnight_are_one_new_york_evening():
    """The audit's case: 19:59 and 20:01 in New York, either side of 00:00 UTC."""
    midnight = datetime(2026, 1, 15, tzinfo=UTC).timestamp() * 1000
    times = [int(midnight) - 60_000, int(midnight) + 60_000]
    assert len(local_dates(times, "America/New_York")) == 1  # the oracle's own view
    in_new_york = buy_all(times, days_in("America/New_York"))
    in_utc = buy_all(times, days_in("UTC"))
    assert in_new_york.btyd(times[1] + 30 * MS_PER_DAY)["x"] == 0
    assert in_new_york.purchase_days == 1 and in_new_york.repeat_value == 0
    assert in_utc.btyd(times[1] + 30 * MS_PER_DAY)["x"] == 1 and in_utc.purchase_days == 2


@settings(max_examples=300, deadline=None)
@given(
    st.data(),
    st.sampled_from(ZONES),
    st.lists(st.integers(-2 * MS_PER_DAY, 2 * MS_PER_DAY), min_size=1, max_size=12),
)
def test_purchase_days_are_local_dates_across_dst_changes(data, zone, offsets):
    """Orders within two days of one of the zone's changes of offset: 23 and 25 hour days
    included, a day is one local calendar date."""
    change = data.draw(st.sampled_from(CHANGES[zone]))
    times = [change + d for d in offsets]
    s = buy_all(times, days_in(zone))
    dates = local_dates(times, zone)
    assert s.purchase_days == len(dates)
    first = min(dates)
    first_day = [t for t in times if local_dates([t], zone) == {first}]
    assert s.first_day_amount == len(first_day)  # each order is 1


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(ZONES), st.integers(19_000, 21_000))
def test_a_day_starts_at_its_local_midnight(zone, day):
    """start_ms is the first instant of the local date (what the order horizon seals
    before): that instant is on the date, the millisecond before on the date before."""
    days = days_in(zone)
    date = dt.date(1970, 1, 1) + dt.timedelta(days=day)
    noon = datetime(date.year, date.month, date.day, 12, tzinfo=ZoneInfo(zone))
    start = days.start_ms(days.of(int(noon.timestamp() * 1000)))
    assert local_dates([start], zone) == {date}
    assert local_dates([start - 1], zone) == {date - dt.timedelta(days=1)}


def test_in_utc_a_day_is_what_it_always_was():
    days = days_in("UTC")
    assert days.of(T0) == T0 // MS_PER_DAY and days.start_ms(7) == 7 * MS_PER_DAY


# -- refunds: de-duplicated per order (docs/decisions.md, S9) --------------------------------


def test_a_refund_id_reused_for_another_order_counts_for_each_as_the_reference_says():
    from tests import reference

    events = [
        {"event_id": "p1", "customer_id": "c", "type": "purchase", "order_id": "a",
         "amount": "10", "ts": T0},
        {"event_id": "p2", "customer_id": "c", "type": "purchase", "order_id": "b",
         "amount": "10", "ts": T0 + 1},
        {"event_id": "r", "customer_id": "c", "type": "refund", "order_id": "a",
         "amount": "3", "ts": T0 + 2},
        {"event_id": "r", "customer_id": "c", "type": "refund", "order_id": "b",
         "amount": "4", "ts": T0 + 3},  # the same refund id, another order: counted
        {"event_id": "r", "customer_id": "c", "type": "refund", "order_id": "b",
         "amount": "4", "ts": T0 + 4},  # the same id for the same order: a duplicate
    ]  # fmt: skip
    s = fold([("p", T0, "10", "a"), ("p", T0 + 1, "10", "b"), ("r", T0 + 2, "3", "a/r"),
              ("r", T0 + 3, "4", "b/r"), ("r", T0 + 4, "4", "b/r")])  # fmt: skip
    assert s.monetary == Decimal(13)
    assert reference.batch_state(events)["c"]["monetary"] == Decimal(13)


def test_an_order_keeps_at_most_so_many_refund_ids():
    from online_models.customer import MAX_REFUNDS_PER_ORDER, TooManyRefunds

    s = fold([("p", T0, "1000", "o")])
    for i in range(MAX_REFUNDS_PER_ORDER):
        assert s.apply_refund(T0 + i, Decimal("0.01"), "o", f"r{i}")
    assert not s.apply_refund(T0, Decimal("0.01"), "o", "r0")  # a repeat: still a duplicate
    with pytest.raises(TooManyRefunds, match="already holds 100 refunds"):
        s.apply_refund(T0, Decimal("0.01"), "o", "one-more")
    with pytest.raises(TooManyRefunds):  # waiting for its order: bounded the same way
        for i in range(MAX_REFUNDS_PER_ORDER + 1):
            s.apply_refund(T0, Decimal("0.01"), "unseen", f"w{i}")
    assert len(s.orders["o"].refund_ids) == MAX_REFUNDS_PER_ORDER
    assert s.monetary == Decimal("999.00")


def test_a_customer_keeps_at_most_so_many_refund_ids_over_all_its_orders():
    """5,000 refund ids over 50 orders of 100 each fit; the next, on a fresh order, goes to
    the DLQ (changing nothing), and the state stays within ~40 bytes a refund id kept."""
    from online_models.customer import MAX_REFUNDS_PER_CUSTOMER, TooManyRefunds

    assert MAX_REFUNDS_PER_CUSTOMER == 5_000
    s = fold([("p", T0 + k, "1000", f"o{k}") for k in range(50)])
    for k in range(50):
        for i in range(100):
            assert s.apply_refund(T0 + 100, Decimal("0.01"), f"o{k}", f"r{k}-{i}")
    before = (s.monetary, len(s.orders))
    with pytest.raises(TooManyRefunds, match="orders already hold 5000 refunds"):
        s.apply_refund(T0 + 100, Decimal("0.01"), "o-new", "one-more")
    assert (s.monetary, len(s.orders)) == before == (Decimal("50000") - 50, 50)
    assert len(state_codec.encode(s)) < 5_000 * 40

"""One customer's behaviour state, folded event by event.

Every update is commutative (min, max, sums, set membership), so the state
after a set of events does not depend on the order they arrived in; only
de-duplication (a repeated order id counts once) looks at arrival order, and
keeps the first occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

MS_PER_DAY = 86_400_000


def utc_day(ts_ms: int) -> int:
    """The UTC calendar day of an epoch-millisecond time, as days since 1970-01-01.

    >>> utc_day(0), utc_day(MS_PER_DAY - 1), utc_day(MS_PER_DAY)
    (0, 0, 1)
    """
    return ts_ms // MS_PER_DAY


def _max(a: int | None, b: int) -> int:
    return b if a is None or b > a else a


def _min(a: int | None, b: int) -> int:
    return b if a is None or b < a else a


@dataclass
class CustomerState:
    """RFM and behaviour state of one customer.

    ``seen_keys`` and ``seen_days`` hold the de-duplication keys and purchase
    days known so far; a store may load only the ones a batch asks about.
    ``new_keys`` and ``new_days`` collect what this fold added, for the store
    to persist.

    Examples
    --------
    >>> s = CustomerState("c1")
    >>> s.apply_purchase(1_700_000_000_000, Decimal("30.00"), "o1")
    True
    >>> s.apply_purchase(1_700_000_000_000, Decimal("30.00"), "o1")  # same order again
    False
    >>> s.apply_purchase(1_700_000_000_000 + 3 * MS_PER_DAY, Decimal("12.50"), "o2")
    True
    >>> s.apply_refund(1_700_000_000_000 + 4 * MS_PER_DAY, Decimal("2.50"), "r1")
    True
    >>> s.purchases, s.purchase_days, s.monetary, s.repeat_value
    (2, 2, Decimal('40.00'), Decimal('12.50'))
    >>> s.btyd(1_700_000_000_000 + 7 * MS_PER_DAY)["t_x_days"]
    3.0
    """

    customer_id: str
    first_purchase_ms: int | None = None
    last_purchase_ms: int | None = None
    purchases: int = 0
    purchase_days: int = 0
    first_day: int | None = None
    first_day_amount: Decimal = Decimal(0)
    gross: Decimal = Decimal(0)
    refunds: Decimal = Decimal(0)
    items: int = 0  # item quantity over all purchases (basket size)
    discounted: int = 0  # purchases that carried a discount
    first_event_ms: int | None = None
    last_event_ms: int | None = None
    clicks: dict[str, int] = field(default_factory=dict)
    categories: dict[str, int] = field(default_factory=dict)
    segment: str | None = None
    cluster_id: int | None = None
    evaluated_ms: int | None = None  # latest time-driven evaluation (watermark timer)
    churn_armed: bool = True  # a churn-risk event may fire (hysteresis)
    applied_partition: int | None = None
    applied_offset: int | None = None
    version: int = 0
    seen_keys: set[str] = field(default_factory=set, repr=False)
    seen_days: set[int] = field(default_factory=set, repr=False)
    new_keys: set[str] = field(default_factory=set, repr=False)
    new_days: set[int] = field(default_factory=set, repr=False)

    # -- derived values -------------------------------------------------------

    @property
    def clock_ms(self) -> int | None:
        """The customer's own "now": latest of its events and its time-driven evaluations."""
        if self.evaluated_ms is None:
            return self.last_event_ms
        if self.last_event_ms is None:
            return self.evaluated_ms
        return max(self.last_event_ms, self.evaluated_ms)

    @property
    def monetary(self) -> Decimal:
        """Purchases minus refunds."""
        return self.gross - self.refunds

    @property
    def repeat_value(self) -> Decimal:
        """Purchase value on the days after the first purchase day (BTYD repeat purchases)."""
        return self.gross - self.first_day_amount

    def recency_days(self, as_of_ms: int) -> float | None:
        """Classic RFM recency: days from the last purchase to ``as_of_ms`` (never negative)."""
        if self.last_purchase_ms is None:
            return None
        return max(0, as_of_ms - self.last_purchase_ms) / MS_PER_DAY

    def btyd(self, as_of_ms: int) -> dict[str, float | int] | None:
        """The BG/NBD summary (x, t_x, T) in days and weeks, as of ``as_of_ms``."""
        if self.first_purchase_ms is None:
            return None
        t_x = (self.last_purchase_ms - self.first_purchase_ms) / MS_PER_DAY
        big_t = max(0, as_of_ms - self.first_purchase_ms) / MS_PER_DAY
        return {
            "x": self.purchase_days - 1,
            "t_x_days": t_x,
            "T_days": big_t,
            "t_x_weeks": t_x / 7,
            "T_weeks": big_t / 7,
        }

    # -- the fold ------------------------------------------------------------

    def already_applied(self, partition: int, offset: int) -> bool:
        """Whether the Kafka record at (partition, offset) is already in this state."""
        return (
            self.applied_partition == partition
            and self.applied_offset is not None
            and offset <= self.applied_offset
        )

    def mark_applied(self, partition: int, offset: int) -> None:
        self.applied_partition, self.applied_offset = partition, offset

    def _first_time(self, key: str) -> bool:
        if key in self.seen_keys:
            return False
        self.seen_keys.add(key)
        self.new_keys.add(key)
        return True

    def _touch(self, ts_ms: int) -> None:
        self.last_event_ms = _max(self.last_event_ms, ts_ms)
        self.first_event_ms = _min(self.first_event_ms, ts_ms)

    def apply_purchase(
        self,
        ts_ms: int,
        amount: Decimal,
        order_id: str,
        categories: dict[str, int] | None = None,
        discounted: bool = False,
        items: int = 0,
    ) -> bool:
        """Count a purchase; returns False (and changes nothing) for a repeated order id."""
        if not self._first_time(f"o:{order_id}"):
            return False
        self._touch(ts_ms)
        self.purchases += 1
        self.discounted += bool(discounted)
        self.items += items
        self.gross += amount
        self.first_purchase_ms = _min(self.first_purchase_ms, ts_ms)
        self.last_purchase_ms = _max(self.last_purchase_ms, ts_ms)
        day = utc_day(ts_ms)
        if day not in self.seen_days:
            self.seen_days.add(day)
            self.new_days.add(day)
            self.purchase_days += 1
        if self.first_day is None or day < self.first_day:
            # An earlier first day arrived late: the old first day becomes a repeat day.
            self.first_day, self.first_day_amount = day, amount
        elif day == self.first_day:
            self.first_day_amount += amount
        for category, quantity in (categories or {}).items():
            self.categories[category] = self.categories.get(category, 0) + quantity
        return True

    def apply_refund(self, ts_ms: int, amount: Decimal, refund_key: str) -> bool:
        """Lower monetary value; returns False for a refund already counted."""
        if not self._first_time(f"r:{refund_key}"):
            return False
        self._touch(ts_ms)
        self.refunds += amount
        return True

    def apply_click(self, ts_ms: int, action: str, category: str | None = None) -> bool:
        self._touch(ts_ms)
        self.clicks[action] = self.clicks.get(action, 0) + 1
        if category:
            self.categories[category] = self.categories.get(category, 0) + 1
        return True

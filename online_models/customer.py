"""One customer's behaviour state, folded event by event.

Purchases and refunds are kept per order (:class:`Order`), and every purchase
figure (orders, purchase days, first and last purchase, monetary and repeat
value) is derived from the orders, so the state after a set of events does not
depend on the order they arrived in; only de-duplication (a repeated order id
counts once) looks at arrival order, and keeps the first occurrence.

The refund rule (docs/decisions.md, "Orders and refunds"): a refund belongs to
its order and lowers it by at most what is left of it; a refund that arrives
before its order waits on the order and is applied when it comes; a fully
refunded order (amount > 0, nothing left) is no purchase: it counts toward
neither F nor x and sets neither first nor last purchase. A free order
(amount 0) is a purchase.

Orders are kept for a horizon, not forever (docs/decisions.md, "The order horizon"):
:meth:`CustomerState.seal` folds the orders placed more than the horizon before the
customer's latest event into :class:`Totals` and forgets them, ids and refunds
included, so a customer's state stays bounded however long it lives. A purchase placed
before the sealed day cannot be told from a repeat of a forgotten order and is refused
(:class:`BeyondHorizon`); a refund whose order is never placed expires after the horizon,
and :meth:`CustomerState.seal` says how many refunds expired so (``refund_unmatched``).

Days are the shop's calendar days (:mod:`online_models.days`, RTBA_TIMEZONE): the fold
takes them as a parameter (``days``, UTC by default), so this module never reads a
setting.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal

from online_models.days import MS_PER_DAY, UTC_DAYS, Days


def utc_day(ts_ms: int) -> int:
    """The UTC calendar day of an epoch-millisecond time, as days since 1970-01-01.

    >>> utc_day(0), utc_day(MS_PER_DAY - 1), utc_day(MS_PER_DAY)
    (0, 0, 1)
    """
    return ts_ms // MS_PER_DAY


# What one customer may hold, whatever its producer sends: a hostile or broken feed
# (one purchase may list 10,000 items, each of a new category) must not grow a state
# every batch reads and writes. Real customers stay far below both.
MAX_CATEGORIES = 100  # beyond: the least-counted category makes room (ties: by name)
# Orders within the horizon; a new one beyond goes to the DLQ. Each order change re-derives
# the purchase figures from all of them (exact under refunds): ~2 us an order held (one
# customer's first 2,000 purchases took 3.9 s), so ~10 ms a purchase at the cap.
MAX_OPEN_ORDERS = 5_000
# Refund ids one order keeps (its de-duplication set); a further refund of it goes to the
# DLQ. A real order is refunded a handful of times (a line at a time); the audit's hostile
# feed grew one order to 816 KiB with 4,000 refunds, and every write carries the orders.
MAX_REFUNDS_PER_ORDER = 100
# Refund ids one customer keeps over all its orders: without it, MAX_OPEN_ORDERS orders of
# MAX_REFUNDS_PER_ORDER refunds with 256-character ids made a 128 MB state. One refund
# per order at the order cap fits; a further refund id goes to the DLQ.
MAX_REFUNDS_PER_CUSTOMER = MAX_OPEN_ORDERS


class RefusedEvent(ValueError):
    """An event the state cannot take; it goes to the DLQ with ``reason``."""

    reason = "unprocessable"


class BeyondHorizon(RefusedEvent):
    """A purchase placed before the customer's sealed day: its order id may be one that
    was forgotten, so it cannot be de-duplicated."""

    reason = "beyond_horizon"


class TooManyOrders(RefusedEvent):
    """A new order id for a customer already holding MAX_OPEN_ORDERS within the horizon."""

    reason = "too_many_orders"


class TooManyRefunds(RefusedEvent):
    """A new refund id for an order already holding MAX_REFUNDS_PER_ORDER of them."""

    reason = "too_many_refunds"


def _max(a: int | None, b: int) -> int:
    return b if a is None or b > a else a


def _min(a: int | None, b: int) -> int:
    return b if a is None or b < a else a


@dataclass(frozen=True)
class Order:
    """One order id of a customer: placed (``ts_ms`` set) or only refunded so far.

    ``refunded`` is what the refunds credited to it add up to: at most ``amount`` once the
    order is placed; before that, everything its early refunds asked for. ``refund_ids``
    are the refunds counted (a refund is de-duplicated by its event id within its order),
    ``refund_ms`` the latest of their times (an order never placed expires by it).

    >>> Order(5, Decimal("10"), Decimal("10")).counts, Order(5, Decimal("0")).counts
    (False, True)
    """

    ts_ms: int | None = None
    amount: Decimal = Decimal(0)
    refunded: Decimal = Decimal(0)
    items: int = 0
    discounted: bool = False
    refund_ids: tuple[str, ...] = ()
    refund_ms: int | None = None

    @property
    def placed(self) -> bool:
        return self.ts_ms is not None

    @property
    def counts(self) -> bool:
        """Whether this is a purchase: placed, and not refunded in full (a free order is)."""
        return self.placed and (self.amount == 0 or self.refunded < self.amount)

    @property
    def net(self) -> Decimal:
        return self.amount - self.refunded if self.placed else Decimal(0)


@dataclass(frozen=True)
class Totals:
    """The purchase figures of a set of orders: what a customer's sealed orders add up to.

    >>> old = Totals.of([Order(0, Decimal("5")), Order(MS_PER_DAY, Decimal("7"))])
    >>> new = Totals.of([Order(9 * MS_PER_DAY, Decimal("3"), Decimal("3"))])  # refunded
    >>> both = old.then(new)
    >>> both.purchases, both.days, both.gross, both.refunds, both.last_ms == MS_PER_DAY
    (2, 2, Decimal('15'), Decimal('3'), True)
    """

    purchases: int = 0
    days: int = 0
    items: int = 0
    discounted: int = 0
    gross: Decimal = Decimal(0)  # placed orders' amounts
    refunds: Decimal = Decimal(0)  # refunds credited to placed orders (each capped)
    first_ms: int | None = None  # first and last purchase
    last_ms: int | None = None
    first_day_amount: Decimal = Decimal(0)  # net value of the first purchase day's orders

    @classmethod
    def of(cls, orders: Iterable[Order], calendar: Days = UTC_DAYS) -> Totals:
        """The figures of ``orders``, purchase days counted in ``calendar``'s dates."""
        placed = [o for o in orders if o.placed]
        buys = [o for o in placed if o.counts]
        of = calendar.of
        day = [of(o.ts_ms) for o in buys]  # each order's day, once (a hot path)
        days = set(day)
        first_day = min(days, default=None)
        return cls(
            len(buys), len(days), sum(o.items for o in buys), sum(o.discounted for o in buys),
            sum((o.amount for o in placed), Decimal(0)),
            sum((o.refunded for o in placed), Decimal(0)),
            min((o.ts_ms for o in buys), default=None),
            max((o.ts_ms for o in buys), default=None),
            sum((o.net for o, d in zip(buys, day, strict=True) if d == first_day), Decimal(0)),
        )  # fmt: skip

    def then(self, later: Totals) -> Totals:
        """These totals followed by those of orders placed on later days only (days
        are counted apart, so they must not overlap)."""
        return Totals(
            self.purchases + later.purchases, self.days + later.days,
            self.items + later.items, self.discounted + later.discounted,
            self.gross + later.gross, self.refunds + later.refunds,
            self.first_ms if self.first_ms is not None else later.first_ms,
            later.last_ms if later.last_ms is not None else self.last_ms,
            self.first_day_amount if self.purchases else later.first_day_amount,
        )  # fmt: skip


@dataclass
class CustomerState:
    """RFM and behaviour state of one customer.

    ``orders`` holds the customer's orders when a fold needs them (a store loads them for
    customers with a purchase or refund in the batch); the purchase figures are cached
    beside them, so readers that only score need not load the orders. ``sealed`` holds
    the totals of the orders placed before ``sealed_before_ms`` (:meth:`seal`), which are
    kept no more. ``stored_orders`` is the store's: the orders as stored, carried unparsed
    while they are not loaded, so a write that did not need them passes them on as is.

    Examples
    --------
    >>> s = CustomerState("c1")
    >>> s.apply_purchase(1_700_000_000_000, Decimal("30.00"), "o1")
    True
    >>> s.apply_purchase(1_700_000_000_000, Decimal("30.00"), "o1")  # same order again
    False
    >>> s.apply_purchase(1_700_000_000_000 + 3 * MS_PER_DAY, Decimal("12.50"), "o2")
    True
    >>> s.apply_refund(1_700_000_000_000 + 4 * MS_PER_DAY, Decimal("2.50"), "o2", "r1")
    True
    >>> s.purchases, s.purchase_days, s.monetary, s.repeat_value
    (2, 2, Decimal('40.00'), Decimal('10.00'))
    >>> s.btyd(1_700_000_000_000 + 7 * MS_PER_DAY)["t_x_days"]
    3.0
    >>> s.apply_refund(1_700_000_000_000 + 5 * MS_PER_DAY, Decimal("50"), "o2", "r2")  # capped
    True
    >>> s.purchases, s.purchase_days, s.monetary, s.last_purchase_ms == s.first_purchase_ms
    (1, 1, Decimal('30.00'), True)
    """

    customer_id: str
    first_purchase_ms: int | None = None
    last_purchase_ms: int | None = None
    purchases: int = 0
    purchase_days: int = 0
    first_day_amount: Decimal = Decimal(0)  # net value of the first purchase day's orders
    gross: Decimal = Decimal(0)  # placed orders' amounts
    refunds: Decimal = Decimal(0)  # refunds credited to placed orders (each capped)
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
    applied_offset: int | None = None  # its position: topic epoch << 48 | offset
    version: int = 0
    change_seq: int = 0  # the last output event's per-customer sequence number
    # audience id -> when the customer entered it (streams.audiences)
    audiences: dict[str, int] = field(default_factory=dict)
    # "<event>:<category>" -> the newest event times a windowed audience count reads
    recent: dict[str, list[int]] = field(default_factory=dict)
    sealed: Totals = field(default_factory=Totals)
    sealed_before_ms: int | None = None  # a (local) midnight: every order before it is sealed
    orders: dict[str, Order] = field(default_factory=dict, repr=False)
    orders_loaded: bool = field(default=True, repr=False)  # False: `orders` is not all of them
    stored_orders: bytes | None = field(default=None, repr=False)

    def next_change_seq(self) -> int:
        """The sequence number of the customer's next output event: strictly increasing
        over every writer, since each one folds from the state the last one wrote."""
        self.change_seq += 1
        return self.change_seq

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
        """Purchases minus refunds (never below zero: a refund is capped at its order)."""
        return self.gross - self.refunds

    @property
    def repeat_value(self) -> Decimal:
        """Net value of the purchases on days after the first purchase day (BTYD repeats)."""
        return self.monetary - self.first_day_amount

    def recency_days(self, as_of_ms: int) -> float | None:
        """Classic RFM recency: days from the last purchase to ``as_of_ms`` (never negative)."""
        if self.last_purchase_ms is None:
            return None
        return max(0, as_of_ms - self.last_purchase_ms) / MS_PER_DAY

    def btyd_ms(self, as_of_ms: int) -> tuple[int, int, int] | None:
        """(x, t_x, T) with times in ms. Purchases are aggregated per calendar day of the
        shop's time zone (RTBA_TIMEZONE; as in the BTYD literature): x counts purchase days
        after the first, and a customer with a single purchase day has t_x = 0 however far
        apart its orders on that day were.
        T is never below t_x."""
        if self.first_purchase_ms is None:
            return None
        x = self.purchase_days - 1
        t_x = self.last_purchase_ms - self.first_purchase_ms if x > 0 else 0
        return x, t_x, max(as_of_ms - self.first_purchase_ms, t_x)

    def btyd(self, as_of_ms: int) -> dict[str, float | int] | None:
        """The BG/NBD summary (x, t_x, T) in days and weeks, as of ``as_of_ms``."""
        summary = self.btyd_ms(as_of_ms)
        if summary is None:
            return None
        x, t_x, big_t = summary[0], summary[1] / MS_PER_DAY, summary[2] / MS_PER_DAY
        return {"x": x, "t_x_days": t_x, "T_days": big_t, "t_x_weeks": t_x / 7,
                "T_weeks": big_t / 7}  # fmt: skip

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

    def _touch(self, ts_ms: int) -> None:
        self.last_event_ms = _max(self.last_event_ms, ts_ms)
        self.first_event_ms = _min(self.first_event_ms, ts_ms)

    def _set_order(self, order_id: str, order: Order, days: Days) -> None:
        self._require_orders()
        self.orders[order_id] = order
        self._derive_purchases(days)

    def _require_orders(self) -> None:
        if not self.orders_loaded:
            # the figures are derived from every order: a partial set would corrupt them
            raise RuntimeError(f"orders of {self.customer_id!r} were not loaded")

    def _derive_purchases(self, days: Days) -> None:
        """Every purchase figure from the orders: exact whatever order events arrived in."""
        totals = self.sealed.then(Totals.of(self.orders.values(), days))
        self.purchases, self.purchase_days = totals.purchases, totals.days
        self.items, self.discounted = totals.items, totals.discounted
        self.gross, self.refunds = totals.gross, totals.refunds
        self.first_purchase_ms, self.last_purchase_ms = totals.first_ms, totals.last_ms
        self.first_day_amount = totals.first_day_amount

    def seal(self, horizon_ms: int, days: Days = UTC_DAYS) -> int:
        """Seal the orders placed before the (``days``) calendar day ``horizon_ms`` ahead
        of the latest event: their figures move into ``sealed`` (no figure changes) and
        they are forgotten; a refund that has waited that long for its order is dropped
        as unmatched. Returns how many refunds were dropped so (counted as
        ``refund_unmatched``: one keyed to another customer id than its order's ends here).

        >>> s = CustomerState("c")
        >>> s.apply_purchase(0, Decimal("5"), "old")
        True
        >>> s.apply_refund(0, Decimal("1"), "never-placed", "r1")
        True
        >>> s.apply_purchase(30 * MS_PER_DAY, Decimal("7"), "new")
        True
        >>> s.seal(10 * MS_PER_DAY)  # one refund dropped unmatched
        1
        >>> sorted(s.orders)  # "old" sealed, the refund waiting for "never-placed" dropped
        ['new']
        >>> s.purchases, s.monetary, s.sealed_before_ms == 20 * MS_PER_DAY
        (2, Decimal('12'), True)
        >>> s.apply_purchase(19 * MS_PER_DAY, Decimal("9"), "old")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        online_models.customer.BeyondHorizon: order 'old' placed before the sealed day ...
        """
        if self.last_event_ms is None or not self.orders:
            return 0
        self._require_orders()
        cutoff = days.start_ms(days.of(self.last_event_ms - horizon_ms))
        final = [oid for oid, o in self.orders.items() if o.placed and o.ts_ms < cutoff]
        expired = [oid for oid, o in self.orders.items()
                   if not o.placed and (o.refund_ms or 0) < cutoff]  # fmt: skip
        if final:
            self.sealed = self.sealed.then(Totals.of((self.orders[oid] for oid in final), days))
            self.sealed_before_ms = max(cutoff, self.sealed_before_ms or cutoff)
        unmatched = sum(len(self.orders[oid].refund_ids) for oid in expired)
        for oid in final + expired:
            del self.orders[oid]
        return unmatched

    def apply_purchase(
        self,
        ts_ms: int,
        amount: Decimal,
        order_id: str,
        categories: dict[str, int] | None = None,
        discounted: bool = False,
        items: int = 0,
        days: Days = UTC_DAYS,
    ) -> bool:
        """Count a purchase; returns False (and changes nothing) for a repeated order id.

        Refunds that came before it are credited now, capped at ``amount``. Raises
        :class:`BeyondHorizon` (changing nothing) for an order placed before the sealed
        day. Purchase days are ``days``' calendar dates."""
        early = self.orders.get(order_id, Order())
        if early.placed:
            return False
        if self.sealed_before_ms is not None and ts_ms < self.sealed_before_ms:
            raise BeyondHorizon(
                f"order {order_id!r} placed before the sealed day (orders before "
                f"{self.sealed_before_ms} ms are kept as totals only): it cannot be told "
                "from a repeat"
            )
        self._room_for(order_id)
        self._touch(ts_ms)
        order = replace(early, ts_ms=ts_ms, amount=amount, refunded=min(early.refunded, amount),
                        items=items, discounted=bool(discounted))  # fmt: skip
        self._set_order(order_id, order, days)
        for category, quantity in (categories or {}).items():
            self._count_category(category, quantity)
        return True

    def _room_for(self, order_id: str) -> None:
        if order_id not in self.orders and len(self.orders) >= MAX_OPEN_ORDERS:
            raise TooManyOrders(
                f"the customer already holds {MAX_OPEN_ORDERS} orders within the horizon"
            )

    def _count_category(self, category: str, n: int) -> None:
        """Add ``n`` to a category's count, keeping at most MAX_CATEGORIES of them.

        >>> s = CustomerState("c")
        >>> for i in range(MAX_CATEGORIES + 2):
        ...     s._count_category(f"k{i:03d}", 1 if i else 5)
        >>> len(s.categories), s.categories["k000"], "k101" in s.categories
        (100, 5, True)
        """
        if category not in self.categories and len(self.categories) >= MAX_CATEGORIES:
            least = min(self.categories.items(), key=lambda kv: (kv[1], kv[0]))[0]
            del self.categories[least]
        self.categories[category] = self.categories.get(category, 0) + n

    def apply_refund(self, ts_ms: int, amount: Decimal, order_id: str, refund_id: str,
                     days: Days = UTC_DAYS) -> bool:  # fmt: skip
        """Credit a refund to its order, capped at what is left of it (an order not seen yet
        keeps it until it arrives); returns False for a refund id already counted for this
        order (refund ids are de-duplicated per order, docs/decisions.md). Raises
        :class:`TooManyRefunds` (changing nothing) for a new refund id of an order already
        holding MAX_REFUNDS_PER_ORDER, or of a customer whose orders hold
        MAX_REFUNDS_PER_CUSTOMER."""
        order = self.orders.get(order_id, Order())
        if refund_id in order.refund_ids:
            return False
        if len(order.refund_ids) >= MAX_REFUNDS_PER_ORDER:
            raise TooManyRefunds(
                f"order {order_id!r} already holds {MAX_REFUNDS_PER_ORDER} refunds"
            )
        if sum(len(o.refund_ids) for o in self.orders.values()) >= MAX_REFUNDS_PER_CUSTOMER:
            raise TooManyRefunds(
                f"the customer's orders already hold {MAX_REFUNDS_PER_CUSTOMER} refunds"
            )
        self._room_for(order_id)
        self._touch(ts_ms)
        refunded = order.refunded + amount
        order = replace(
            order, refunded=min(order.amount, refunded) if order.placed else refunded,
            refund_ids=(*order.refund_ids, refund_id), refund_ms=_max(order.refund_ms, ts_ms),
        )  # fmt: skip
        self._set_order(order_id, order, days)
        return True

    def apply_click(self, ts_ms: int, action: str, category: str | None = None) -> bool:
        self._touch(ts_ms)
        self.clicks[action] = self.clicks.get(action, 0) + 1
        if category:
            self._count_category(category, 1)
        return True

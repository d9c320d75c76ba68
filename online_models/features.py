"""A customer's behaviour as a fixed vector of numbers, for clustering.

Heavy-tailed counts and amounts enter as log1p, ratios as they are; the
clustering model standardises them, so no feature dominates by its unit.

A per-order figure of a customer with no order (basket size, discount share, order
value), and the purchase rhythm of one with fewer than two purchase days, is *unknown*,
not zero: it is ``None`` here and enters the clustering at the population's mean, so it
neither pulls a customer towards a cluster nor away from one. Zero-filled, the six
purchase features of a non-buyer moved together and split the browsers who never bought
from those who did, ahead of any real behaviour difference (docs/clustering.md).
"""

from __future__ import annotations

import math

import numpy as np

from online_models.customer import MS_PER_DAY, CustomerState

FEATURES = (
    "recency",  # log1p(days since the last event)
    "frequency",  # log1p(orders)
    "monetary",  # log1p(purchases - refunds, floored at 0)
    "view_to_cart",  # add-to-carts per view
    "cart_to_purchase",  # orders per add-to-cart (capped at 1)
    "basket_size",  # log1p(items per order); None without an order
    "discount_share",  # share of orders with a discount; None without an order
    "category_spread",  # normalised entropy of category interest, 0..1
    "rhythm",  # log1p(mean days between purchase days); None below two purchase days
    "browsing",  # log1p(clicks per order, or all clicks for non-buyers)
    "order_value",  # log1p(net value per order); None without an order
    "wishlist_share",  # wishlist adds per click
    "tenure",  # log1p(days from the first event to the last)
)


def behaviour_features(state: CustomerState, as_of_ms: int) -> dict[str, float | None] | None:
    """The feature vector of a customer as of a time; None for a customer with no event.

    >>> from decimal import Decimal
    >>> s = CustomerState("c")
    >>> for i in range(4):
    ...     _ = s.apply_click(i * MS_PER_DAY, "view", "books")
    >>> s.apply_click(5, "add_to_cart", "books")
    True
    >>> s.apply_purchase(MS_PER_DAY, Decimal("20"), "o1", {"books": 2}, discounted=True, items=2)
    True
    >>> f = behaviour_features(s, 10 * MS_PER_DAY)
    >>> f["view_to_cart"], f["cart_to_purchase"], f["discount_share"], f["category_spread"]
    (0.25, 1.0, 1.0, 0.0)
    >>> round(math.expm1(f["order_value"]), 6), f["rhythm"], round(math.expm1(f["tenure"]), 6)
    (20.0, None, 3.0)
    >>> sorted(f) == sorted(FEATURES)
    True

    A browser who never bought has no basket, discount share or order value:

    >>> b = CustomerState("b")
    >>> _ = b.apply_click(0, "wishlist", "toys")
    >>> g = behaviour_features(b, 0)
    >>> g["basket_size"], g["discount_share"], g["order_value"], g["wishlist_share"]
    (None, None, None, 1.0)
    """
    if state.last_event_ms is None:
        return None
    views = state.clicks.get("view", 0)
    carts = state.clicks.get("add_to_cart", 0)
    clicks = sum(state.clicks.values())
    orders = state.purchases
    rhythm = None
    if state.purchase_days > 1:
        span_days = (state.last_purchase_ms - state.first_purchase_ms) / MS_PER_DAY
        rhythm = math.log1p(span_days / (state.purchase_days - 1))
    first = state.first_event_ms if state.first_event_ms is not None else state.last_event_ms
    return {
        "recency": recency(state.last_event_ms, as_of_ms),
        "frequency": math.log1p(orders),
        "monetary": math.log1p(max(0.0, float(state.monetary))),
        "view_to_cart": carts / views if views else 0.0,
        "cart_to_purchase": min(1.0, orders / carts) if carts else float(orders > 0),
        "basket_size": math.log1p(state.items / orders) if orders else None,
        "discount_share": state.discounted / orders if orders else None,
        "category_spread": _spread(state.categories),
        "rhythm": rhythm,
        "browsing": math.log1p(clicks / orders if orders else clicks),
        "order_value": math.log1p(max(0.0, float(state.monetary)) / orders) if orders else None,
        "wishlist_share": state.clicks.get("wishlist", 0) / clicks if clicks else 0.0,
        "tenure": math.log1p(max(0, state.last_event_ms - first) / MS_PER_DAY),
    }


def as_row(x: dict[str, float | None]) -> np.ndarray:
    """A feature dict as a row in FEATURES order; an unknown (None or absent) value is NaN.

    >>> as_row({"recency": 1.0, "basket_size": None})[:7].tolist()
    [1.0, nan, nan, nan, nan, nan, nan]
    """
    return np.array([_number(x.get(f)) for f in FEATURES], dtype=float)


def as_rows(vectors) -> np.ndarray:
    """Feature dicts as a matrix, one row each (see :func:`as_row`)."""
    return np.array([as_row(x) for x in vectors], dtype=float).reshape(-1, len(FEATURES))


def _number(v: float | None) -> float:
    return math.nan if v is None else float(v)


def recency(last_event_ms: int, as_of_ms: int) -> float:
    """The recency feature: log1p(days since the last event), 0 for an event in the future.

    >>> recency(0, MS_PER_DAY), recency(MS_PER_DAY, 0)
    (0.6931471805599453, 0.0)
    """
    return math.log1p(max(0, as_of_ms - last_event_ms) / MS_PER_DAY)


def _spread(counts: dict[str, int]) -> float:
    total = sum(counts.values())
    if total <= 0 or len(counts) < 2:
        return 0.0
    entropy = -sum((n / total) * math.log(n / total) for n in counts.values() if n > 0)
    return entropy / math.log(len(counts))

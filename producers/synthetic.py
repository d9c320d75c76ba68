"""A seedable synthetic stream of click, purchase and refund events.

Customers follow one of five personas with distinct rhythms; every persona's
activity rises in the holiday season (20 Nov - 31 Dec). The true persona of
every customer is a pure function of (seed, customer count), so later stages
can score clustering against it.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

MS_PER_DAY = 86_400_000
CATEGORIES = ("electronics", "fashion", "home", "beauty", "sports", "books", "toys", "grocery")


@dataclass(frozen=True)
class Persona:
    name: str
    share: float  # fraction of customers
    sessions_per_day: float
    views_per_session: float
    cart_prob: float  # per view
    buy_prob: float  # per session with a cart
    basket_price: float  # mean item price
    discount_share: float  # chance a purchase uses a discount
    search_prob: float
    wishlist_prob: float
    categories: int  # how many favourite categories
    refund_prob: float = 0.0
    max_purchases: int | None = None
    churn_after_days: tuple[float, float] | None = None  # active span, then silence


PERSONAS = (
    Persona("loyal", 0.25, 0.25, 4, 0.30, 0.75, 55.0, 0.10, 0.30, 0.05, 2, 0.02),
    Persona("bargain_hunter", 0.20, 0.20, 6, 0.20, 0.45, 22.0, 0.85, 0.70, 0.10, 5, 0.08),
    Persona("window_shopper", 0.25, 0.35, 9, 0.05, 0.08, 35.0, 0.20, 0.40, 0.35, 6),
    Persona("one_time_buyer", 0.15, 0.05, 3, 0.40, 0.90, 70.0, 0.30, 0.20, 0.02, 1, 0.0, 1),
    Persona(
        "churner",
        0.15,
        0.30,
        4,
        0.30,
        0.70,
        45.0,
        0.15,
        0.30,
        0.05,
        3,
        0.03,
        churn_after_days=(30.0, 150.0),
    ),  # fmt: skip
)
BY_NAME = {p.name: p for p in PERSONAS}


def customer_id(i: int) -> str:
    return f"c{i:06d}"


def personas(seed: int, customers: int) -> dict[str, str]:
    """The true persona of each synthetic customer.

    >>> sorted(set(personas(1, 200).values())) == sorted(p.name for p in PERSONAS)
    True
    """
    rng = random.Random(f"{seed}-personas")
    names = [p.name for p in PERSONAS]
    weights = [p.share for p in PERSONAS]
    return {customer_id(i): rng.choices(names, weights)[0] for i in range(customers)}


def holiday_boost(ts_ms: int) -> float:
    """Activity multiplier: 2.5x from 20 November to 31 December (UTC)."""
    day = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    if (day.month == 11 and day.day >= 20) or day.month == 12:
        return 2.5
    return 1.0


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def expected_events_per_day(customers: int) -> float:
    per = 0.0
    for p in PERSONAS:
        per += p.share * p.sessions_per_day * (p.views_per_session + 1.5)
    return customers * per


class _Customer:
    def __init__(self, cid: str, persona: Persona, rng: random.Random, start_ms: int):
        self.cid, self.persona, self.rng = cid, persona, rng
        self.favourites = rng.sample(CATEGORIES, persona.categories)
        self.purchases = 0
        self.active_until = None
        if persona.churn_after_days:
            lo, hi = persona.churn_after_days
            self.active_until = start_ms + int(rng.uniform(lo, hi) * MS_PER_DAY)

    def next_session(self, after_ms: int) -> int:
        # Poisson sessions at the peak rate, thinned by the seasonal multiplier.
        t = after_ms
        peak = self.persona.sessions_per_day * 2.5
        while True:
            t += int(self.rng.expovariate(peak) * MS_PER_DAY) + 1
            if self.rng.random() < holiday_boost(t) / 2.5:
                return t

    def done(self, ts_ms: int) -> bool:
        p = self.persona
        if self.active_until is not None and ts_ms > self.active_until:
            return True
        return p.max_purchases is not None and self.purchases >= p.max_purchases


def generate(seed: int, customers: int, events: int, start_ms: int, end_ms: int) -> Iterator[dict]:
    """Up to ``events`` events between start and end, in event-time order.

    >>> evs = list(generate(7, 20, 300, 1_700_000_000_000, 1_700_000_000_000 + 200 * MS_PER_DAY))
    >>> len(evs), all(a["ts"] <= b["ts"] for a, b in zip(evs, evs[1:]))
    (300, True)
    >>> evs == list(generate(7, 20, 300, 1_700_000_000_000, 1_700_000_000_000 + 200 * MS_PER_DAY))
    True
    """
    truth = personas(seed, customers)
    people = [
        _Customer(cid, BY_NAME[name], random.Random(f"{seed}-{cid}"), start_ms)
        for cid, name in truth.items()
    ]
    heap = [(c.next_session(start_ms), i) for i, c in enumerate(people)]
    heapq.heapify(heap)
    pending: list[tuple[int, int, dict]] = []  # session events not yet released, by ts
    seq = 0
    emitted = 0

    def release(until_ms: int | None) -> Iterator[dict]:
        nonlocal emitted
        while pending and (until_ms is None or pending[0][0] <= until_ms) and emitted < events:
            ts, _, event = heapq.heappop(pending)
            if ts > end_ms:  # e.g. a refund scheduled past the end of the window
                continue
            event["ts"] = _iso(ts)
            emitted += 1
            yield event

    while heap and emitted < events:
        t, i = heapq.heappop(heap)
        if t > end_ms:
            break
        yield from release(t)
        person = people[i]
        if person.done(t):
            continue
        for ts, event in _session(person, t, seed):
            seq += 1
            heapq.heappush(pending, (ts, seq, event))
        heapq.heappush(heap, (person.next_session(t + 3_600_000), i))
    yield from release(None)


def _session(person: _Customer, t: int, seed: int) -> list:
    p, r = person.persona, person.rng
    out = []
    clock = t
    carted = []

    def click(action: str, **extra) -> None:
        nonlocal clock
        clock += int(r.expovariate(1 / 40_000)) + 1_000
        eid = f"syn{seed}-{person.cid}-{clock}-{len(out)}"
        out.append(
            (clock, {"event_id": eid, "customer_id": person.cid, "type": "click",
                     "action": action, "session_id": f"s{t}", **extra})
        )  # fmt: skip

    if r.random() < p.search_prob:
        click("search")
    for _ in range(1 + int(r.expovariate(1 / p.views_per_session))):
        category = r.choice(person.favourites)
        price = round(r.lognormvariate(0, 0.5) * p.basket_price, 2)
        product = f"p-{category[:3]}-{r.randrange(500)}"
        click("view", product_id=product, category=category, price=price)
        if r.random() < p.wishlist_prob:
            click("wishlist", product_id=product, category=category)
        if r.random() < p.cart_prob:
            click("add_to_cart", product_id=product, category=category, price=price)
            carted.append((product, category, price))
    if carted and r.random() < p.buy_prob:
        discount = Decimal(0)
        gross = sum(Decimal(str(price)) for _, _, price in carted)
        if r.random() < p.discount_share:
            discount = (gross * Decimal("0.2")).quantize(Decimal("0.01"))
        clock += 60_000
        order_id = f"o{seed}-{person.cid}-{clock}"
        person.purchases += 1
        items = [{"product_id": pr, "category": c, "quantity": 1, "price": pc}
                 for pr, c, pc in carted]  # fmt: skip
        amount = gross - discount
        out.append(
            (clock, {"event_id": f"e-{order_id}", "customer_id": person.cid,
                     "type": "purchase", "order_id": order_id, "amount": str(amount),
                     "currency": "EUR", "items": items, "discount": str(discount)})
        )  # fmt: skip
        if r.random() < p.refund_prob:
            later = clock + int(r.uniform(1, 20) * MS_PER_DAY)
            refund = (amount / 2).quantize(Decimal("0.01"))
            out.append(
                (later, {"event_id": f"r-{order_id}", "customer_id": person.cid,
                         "type": "refund", "order_id": order_id, "amount": str(refund)})
            )  # fmt: skip
    return out

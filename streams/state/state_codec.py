"""A customer's state as one compact Redis string: ``<version>|<MessagePack array>``.

Why not a hash of fields: 24 small fields cost ~350 bytes per customer in a listpack
hash (every field name stored with every customer) and ~50 script arguments per write;
one positional MessagePack value is ~100-175 bytes and one argument (docs/performance.md).
The version stays plain text in front, so ``apply_customers.lua`` checks it without
decoding the rest. Times are stored as offsets from the last event (5 bytes within ~50
days of it, 9 beyond), amounts as decimal text (exact).

``FORMAT`` leads the array. Format 3 added the audience memberships and the event logs
their windowed counts read (format 2 values still decode, with neither); format 2 added
the sealed-order totals; format 1 values
(one unreleased build) are refused with a message to replay, as the hash layout before
them was (docs/decisions.md). After a release, a new layout adds a format and ``decode``
keeps reading the old one.

The customer's orders within the horizon ride in the value as its last element, a
MessagePack blob of its own anchor time and ``[order id, ts, amount, refunded, items,
discounted]`` arrays (plus ``refund_ms`` and the refund ids once refunded; times as
offsets from the blob's anchor, which is not the state's: the state's anchor moves with
every event, while an unparsed blob is written back as it was): a hash of their own cost
~90 bytes of key per buyer and a read per batch. The blob stays unparsed
(``CustomerState.stored_orders``) unless the fold needs the orders, so a tick or a
click-only batch neither parses nor re-packs them.
"""

from __future__ import annotations

from decimal import Decimal

import msgpack

from online_models.customer import CustomerState, Order, Totals

FORMAT = 3

_TIMES = ("first_event_ms", "first_purchase_ms", "last_purchase_ms", "evaluated_ms")
_INTS = ("purchases", "purchase_days", "items", "discounted", "cluster_id",
         "applied_partition", "applied_offset", "change_seq")  # fmt: skip
_AMOUNTS = ("first_day_amount", "gross", "refunds")

# Part of the format: a stored code means the name at that place, so these only ever grow
# at the end. A segment or click action outside them is stored by name.
SEGMENT_CODES = ("Champions", "Loyal", "Potential Loyalists", "New", "Promising",
                 "Need Attention", "About to Sleep", "At Risk", "Can't Lose Them",
                 "Hibernating", "Lost", "One-time Recent", "One-time Lapsed")  # fmt: skip
ACTION_CODES = ("view", "add_to_cart", "remove_from_cart", "search", "wishlist")
_SEGMENT_OF = {name: code for code, name in enumerate(SEGMENT_CODES)}
_ACTIONS = frozenset(ACTION_CODES)


class CorruptState(ValueError):
    """A stored value that is not a state this codec wrote."""


def encode(state: CustomerState) -> bytes:
    """The state and its orders, without the version (the write script prefixes that).

    >>> s = CustomerState("c", last_event_ms=1_700_000_000_000, first_event_ms=1_699_000_000_000,
    ...                   gross=Decimal("12.50"), clicks={"view": 3}, segment="Champions")
    >>> back = decode("c", b"7|" + encode(s))
    >>> (back.version, back.first_event_ms, back.gross, back.clicks, back.segment)
    (7, 1699000000000, Decimal('12.50'), {'view': 3}, 'Champions')
    >>> len(encode(s))
    52
    >>> s.apply_purchase(1_700_000_000_000, Decimal("25.00"), "o-123456")  # one order: +36
    True
    >>> len(encode(s)), list(decode("c", b"8|" + encode(s), with_orders=True).orders)
    (88, ['o-123456'])
    """
    anchor = state.last_event_ms or 0
    times = [_offset(anchor, getattr(state, name)) for name in _TIMES]
    return msgpack.packb([
        FORMAT, state.last_event_ms, *times,
        *(getattr(state, name) for name in _INTS),
        *(str(getattr(state, name)) for name in _AMOUNTS),
        _SEGMENT_OF.get(state.segment, state.segment), state.churn_armed,
        _clicks(state.clicks), state.categories,
        _sealed_fields(state, anchor), _orders_blob(state, anchor),
        _memberships(state, anchor), _logs(state, anchor),
    ])  # fmt: skip


def _memberships(state: CustomerState, anchor: int) -> dict[str, int] | None:
    return {aid: anchor - at for aid, at in state.audiences.items()} or None


def _logs(state: CustomerState, anchor: int) -> dict[str, list[int]] | None:
    return {key: [anchor - t for t in times] for key, times in state.recent.items()} or None


def _clicks(clicks: dict[str, int]) -> list[int] | dict[str, int]:
    """Counts in ACTION_CODES order (one byte for a count below 128), or the dict itself
    when it names another action or holds a zero (the list cannot tell 0 from absent)."""
    if clicks.keys() <= _ACTIONS and all(clicks.values()):
        return [clicks.get(action, 0) for action in ACTION_CODES]
    return clicks


def _orders_blob(state: CustomerState, anchor: int) -> bytes | None:
    if not state.orders_loaded:
        return state.stored_orders
    if not state.orders:
        return None
    orders = [_order_fields(oid, o, anchor) for oid, o in state.orders.items()]
    return msgpack.packb([anchor, *orders])


def _order_fields(order_id: str, order: Order, anchor: int) -> list:
    fields = [order_id, _offset(anchor, order.ts_ms), str(order.amount), str(order.refunded),
              order.items, order.discounted]  # fmt: skip
    if order.refund_ids:
        fields += [_offset(anchor, order.refund_ms), list(order.refund_ids)]
    return fields


def _orders(blob: bytes | None) -> dict[str, Order]:
    if blob is None:
        return {}
    anchor, *stored = msgpack.unpackb(blob)
    orders = {}
    for order_id, ts, amount, refunded, items, discounted, *refunds in stored:
        refund_ms, ids = refunds or (None, ())
        orders[order_id] = Order(_at(anchor, ts), Decimal(amount), Decimal(refunded), items,
                                 bool(discounted), tuple(ids), _at(anchor, refund_ms))  # fmt: skip
    return orders


def _sealed_fields(state: CustomerState, anchor: int) -> list | None:
    if state.sealed_before_ms is None:
        return None
    t = state.sealed
    return [anchor - state.sealed_before_ms, t.purchases, t.days, t.items, t.discounted,
            str(t.gross), str(t.refunds), _offset(anchor, t.first_ms), _offset(anchor, t.last_ms),
            str(t.first_day_amount)]  # fmt: skip


def _offset(anchor: int, ts: int | None) -> int | None:
    return None if ts is None else anchor - ts


def _at(anchor: int, offset: int | None) -> int | None:
    return None if offset is None else anchor - offset


def version_of(raw: bytes | None) -> int:
    """The version in front of a stored value (0: no state).

    >>> version_of(None), version_of(b"12|..."), version_of(b"")
    (0, 12, 0)
    """
    return _split(raw)[0] if raw else 0


def _split(raw: bytes) -> tuple[int, bytes]:
    head, sep, body = raw.partition(b"|")
    if not sep or not head.isdigit():
        raise CorruptState(f"not an rtba state value: {raw[:20]!r}")
    return int(head), body


def decode(customer_id: str, raw: bytes | None, with_orders: bool = False) -> CustomerState:
    """A stored state; its orders parsed ``with_orders``, else carried unparsed
    (``orders_loaded`` False). A new customer (``raw`` None) has all of its none."""
    if not raw:
        return CustomerState(customer_id)
    version, body = _split(raw)
    try:
        fields = msgpack.unpackb(body)
        fmt = fields[0]
    except (ValueError, TypeError, IndexError, KeyError, msgpack.UnpackException) as e:
        raise CorruptState(f"stored state of {customer_id!r} does not decode: {e}") from e
    if fmt == 1:
        raise CorruptState(f"state of {customer_id!r} was written by an earlier build "
                           "(format 1): replay the events into a fresh namespace")  # fmt: skip
    if fmt not in (2, FORMAT):
        raise CorruptState(f"state format {fmt!r} of {customer_id!r} is unknown")
    try:
        return _from_fields(customer_id, version, fields, with_orders)
    except (ValueError, TypeError, IndexError, StopIteration, ArithmeticError,
            msgpack.UnpackException) as e:  # fmt: skip
        raise CorruptState(f"stored state of {customer_id!r} does not decode: {e}") from e


def _from_fields(customer_id: str, version: int, fields: list, with_orders: bool) -> CustomerState:
    anchor_ms, values = fields[1], iter(fields[2:])
    state = CustomerState(customer_id, last_event_ms=anchor_ms, version=version,
                          orders_loaded=False)  # fmt: skip
    anchor = anchor_ms or 0
    for name in _TIMES:
        setattr(state, name, _at(anchor, next(values)))
    for name in _INTS:
        setattr(state, name, next(values))
    for name in _AMOUNTS:
        setattr(state, name, Decimal(next(values)))
    segment, state.churn_armed, clicks, state.categories, sealed, blob, *audiences = values
    if audiences:  # format 3 on
        memberships, logs = audiences
        state.audiences = {aid: anchor - at for aid, at in (memberships or {}).items()}
        state.recent = {key: [anchor - t for t in times] for key, times in (logs or {}).items()}
    state.segment = SEGMENT_CODES[segment] if isinstance(segment, int) else segment
    state.clicks = clicks if isinstance(clicks, dict) else {
        action: n for action, n in zip(ACTION_CODES, clicks, strict=True) if n
    }  # fmt: skip
    if with_orders:
        state.orders, state.orders_loaded = _orders(blob), True
    else:
        state.stored_orders = blob
    if sealed is not None:
        before, purchases, days, items, discounted, gross, refunds, first, last, first_day = sealed
        state.sealed_before_ms = anchor - before
        state.sealed = Totals(purchases, days, items, discounted, Decimal(gross),
                              Decimal(refunds), _at(anchor, first), _at(anchor, last),
                              Decimal(first_day))  # fmt: skip
    return state

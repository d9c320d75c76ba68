"""Input event schemas (pydantic v2) and the decoder that sorts records into
valid events and rejections (which go to the DLQ with a reason).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError


def to_epoch_ms(value: object) -> int:
    """Event time as epoch milliseconds: from epoch ms (int/float) or ISO-8601.

    An ISO time without an offset is UTC.

    >>> to_epoch_ms(1700000000000)
    1700000000000
    >>> to_epoch_ms("2023-11-14T22:13:20Z"), to_epoch_ms("2023-11-14T23:13:20+01:00")
    (1700000000000, 1700000000000)
    >>> to_epoch_ms("2023-11-14 22:13:20")
    1700000000000
    """
    if isinstance(value, bool):
        raise ValueError("ts must be ISO-8601 text or epoch milliseconds, not a boolean")
    if isinstance(value, int | float):
        if value != value or value < 0:
            raise ValueError("epoch milliseconds must be a non-negative number")
        return int(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"not an ISO-8601 time: {value[:40]!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return round(parsed.timestamp() * 1000)
    raise ValueError("ts must be ISO-8601 text or epoch milliseconds")


def iso(ts_ms: int | None) -> str | None:
    """ISO-8601 UTC text of epoch milliseconds.

    >>> iso(1700000000000)
    '2023-11-14T22:13:20+00:00'
    """
    if ts_ms is None:
        return None
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat()


EpochMs = Annotated[int, BeforeValidator(to_epoch_ms)]
Id = Annotated[str, Field(min_length=1, max_length=256)]
Money = Annotated[Decimal, Field(allow_inf_nan=False)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    event_id: Id
    customer_id: Id
    ts: EpochMs


class Click(_Event):
    type: Literal["click"]
    action: Literal["view", "add_to_cart", "remove_from_cart", "search", "wishlist"]
    session_id: str | None = None
    product_id: str | None = None
    category: str | None = Field(default=None, max_length=128)
    price: Annotated[Money, Field(ge=0)] | None = None


class Item(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    product_id: str | None = None
    category: str | None = Field(default=None, max_length=128)
    quantity: int = Field(default=1, ge=1, le=100_000)
    price: Annotated[Money, Field(ge=0)] | None = None


class Purchase(_Event):
    type: Literal["purchase"]
    order_id: Id
    amount: Annotated[Money, Field(gt=0)]
    currency: str | None = None
    items: list[Item] = Field(default_factory=list, max_length=10_000)
    discount: Annotated[Money, Field(ge=0)] | None = None

    def category_quantities(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in self.items:
            if item.category:
                out[item.category] = out.get(item.category, 0) + item.quantity
        return out


class Refund(_Event):
    type: Literal["refund"]
    order_id: Id
    amount: Annotated[Money, Field(gt=0)]


class Watermark(BaseModel):
    """Producer heartbeat: event time has reached ``ts`` (no customer)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["watermark"]
    ts: EpochMs


Event = Annotated[Click | Purchase | Refund | Watermark, Field(discriminator="type")]
_EVENT = TypeAdapter(Event)


@dataclass(frozen=True)
class Rejection:
    """Why a record cannot be applied; it goes to the DLQ with its original bytes."""

    reason: str  # short code, e.g. invalid_json, invalid_schema, ts_in_future, absurd_amount
    detail: str


@dataclass(frozen=True)
class Limits:
    max_event_bytes: int = 65_536
    max_amount: float = 1_000_000.0
    max_future_ms: int = 86_400_000


def _schema_detail(error: ValidationError) -> str:
    parts = []
    for err in error.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)


def decode(raw: bytes | None, now_ms: int, limits: Limits = Limits()) -> Event | Rejection:
    """Decode one record value into an event, or say why it is rejected.

    >>> decode(b'{"type": "watermark", "ts": 5}', now_ms=10)
    Watermark(type='watermark', ts=5)
    >>> decode(b'{nope', now_ms=10).reason
    'invalid_json'
    """
    if raw is None:
        return Rejection("empty", "record has no value")
    if len(raw) > limits.max_event_bytes:
        return Rejection("oversize", f"{len(raw)} bytes > limit {limits.max_event_bytes}")
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        return Rejection("invalid_json", str(exc)[:300])
    if not isinstance(obj, dict):
        return Rejection("invalid_schema", f"expected a JSON object, got {type(obj).__name__}")
    try:
        event = _EVENT.validate_python(obj)
    except ValidationError as exc:
        return Rejection("invalid_schema", _schema_detail(exc))
    if event.ts > now_ms + limits.max_future_ms:
        return Rejection("ts_in_future", f"ts {iso(event.ts)} is beyond now + allowed skew")
    for amount in _amounts(event):
        if amount > limits.max_amount:
            return Rejection("absurd_amount", f"amount {amount} > limit {limits.max_amount:g}")
    return event


def _amounts(event: Event) -> list[Decimal]:
    if isinstance(event, Purchase | Refund):
        return [event.amount]
    if isinstance(event, Click) and event.price is not None:
        return [event.price]
    return []

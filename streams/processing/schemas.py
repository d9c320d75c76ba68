"""Input event schemas (pydantic v2) and the decoder that sorts records into
valid events and rejections (which go to the DLQ with a reason).
"""

from __future__ import annotations

import json
import math
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

# Event times outside 1970-01-01 .. 9999-12-31 cannot be dates; refusing them here keeps
# every later date conversion total.
MAX_EPOCH_MS = 253_402_300_799_999
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_epoch_ms(value: object) -> int:
    """Event time as epoch milliseconds: from epoch ms (int/float) or ISO-8601.

    An ISO time without an offset is UTC.

    >>> to_epoch_ms(1700000000000)
    1700000000000
    >>> to_epoch_ms("2023-11-14T22:13:20Z"), to_epoch_ms("2023-11-14T23:13:20+01:00")
    (1700000000000, 1700000000000)
    >>> to_epoch_ms("2023-11-14 22:13:20")
    1700000000000
    >>> to_epoch_ms("2024-07-30T04:45:52.141999Z")  # sub-millisecond digits are cut
    1722314752141
    >>> to_epoch_ms(1e300)
    Traceback (most recent call last):
    ...
    ValueError: epoch milliseconds out of range (1970 to 9999): 1e+300
    """
    if isinstance(value, bool):
        raise ValueError("ts must be ISO-8601 text or epoch milliseconds, not a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value) or not 0 <= value <= MAX_EPOCH_MS:
            raise ValueError(f"epoch milliseconds out of range (1970 to 9999): {value:.6g}")
        return int(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            # exact integer arithmetic, truncating sub-millisecond digits (as Kafka and
            # java.time do); float timestamp() * 1000 rounds some times to the next ms
            ms = (parsed - _EPOCH) // timedelta(milliseconds=1)
        except (ValueError, OverflowError):
            raise ValueError(f"not an ISO-8601 time: {value[:40]!r}") from None
        if not 0 <= ms <= MAX_EPOCH_MS:
            raise ValueError(f"time out of range (1970 to 9999): {value[:40]!r}")
        return ms
    raise ValueError("ts must be ISO-8601 text or epoch milliseconds")


def _clean_text(value: str) -> str:
    """Ids and names end up in Redis keys and Kafka keys: they must be encodable UTF-8 (no
    lone surrogates) and hold no control characters."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid Unicode (lone surrogate)") from None
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise ValueError("text contains control characters")
    return value


def iso(ts_ms: int | None) -> str | None:
    """ISO-8601 UTC text of epoch milliseconds.

    >>> iso(1700000000000)
    '2023-11-14T22:13:20+00:00'
    """
    if ts_ms is None:
        return None
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat()


EpochMs = Annotated[int, BeforeValidator(to_epoch_ms)]
Id = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_clean_text)]
Name = Annotated[str, Field(max_length=128), AfterValidator(_clean_text)]
Money = Annotated[Decimal, Field(allow_inf_nan=False)]


# The click actions events may carry (audience counts name them too).
ClickAction = Literal["view", "add_to_cart", "remove_from_cart", "search", "wishlist"]


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    event_id: Id
    customer_id: Id
    ts: EpochMs


class Click(_Event):
    type: Literal["click"]
    action: ClickAction
    session_id: str | None = None
    product_id: str | None = None
    category: Name | None = None
    price: Annotated[Money, Field(ge=0)] | None = None


class Item(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    product_id: str | None = None
    category: Name | None = None
    quantity: int = Field(default=1, ge=1, le=100_000)
    price: Annotated[Money, Field(ge=0)] | None = None


class Purchase(_Event):
    type: Literal["purchase"]
    order_id: Id
    amount: Annotated[Money, Field(ge=0)]  # a free order (sample, 100%-off coupon) counts
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
    try:
        return _decode(raw, now_ms, limits)
    except Exception as exc:  # noqa: BLE001 - a record never takes its batch down
        return Rejection("invalid_schema", f"undecodable: {type(exc).__name__}: {exc}"[:300])


def _decode(raw: bytes | None, now_ms: int, limits: Limits) -> Event | Rejection:
    if raw is None:
        return Rejection("empty", "record has no value")
    if len(raw) > limits.max_event_bytes:
        return Rejection("oversize", f"{len(raw)} bytes > limit {limits.max_event_bytes}")
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        return Rejection("invalid_json", str(exc)[:300])
    except RecursionError:
        return Rejection("invalid_json", "nested too deeply")
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

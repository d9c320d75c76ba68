"""Input event schemas (pydantic v2) and the decoder that sorts records into
valid events and rejections (which go to the DLQ with a reason).
"""

from __future__ import annotations

import json
import math
import re
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


# Characters no id or name may hold. Control (Cc) and line or paragraph separators (Zl, Zp)
# break keys and line-oriented output; format characters (Cf: U+202E right-to-left
# override, U+200B zero-width space, U+200D joiner, U+FEFF, soft hyphen) are invisible,
# so two ids that print the same would be two customers, or one id would print as another.
_REFUSED = {"Cc": "control", "Cf": "format", "Zl": "line separator", "Zp": "paragraph separator"}

# The form a lookup uses to name a stored pseudonym (streams.privacy): no customer id may
# take it, so every other given id is always the id the producers sent.
STORED_PSEUDONYM = re.compile(r"^pseudonym:(p_[0-9a-f]{32})$")


def canonical_id(value: str) -> str:
    """The one spelling of an id that rtba stores and looks up: blanks around it dropped,
    Unicode NFC (a precomposed "é" and "e" + U+0301 are one customer).

    >>> canonical_id(" Jose\u0301 ") == "Jos\u00e9"
    True
    """
    return unicodedata.normalize("NFC", value.strip())


def _clean_text(value: str) -> str:
    """Ids and names end up in Redis keys and Kafka keys: encodable UTF-8 (no lone
    surrogates), in NFC, with no control, format or separator character."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid Unicode (lone surrogate)") from None
    value = unicodedata.normalize("NFC", value)
    for ch in value:
        kind = _REFUSED.get(unicodedata.category(ch))
        if kind:
            raise ValueError(f"text contains a {kind} character (U+{ord(ch):04X})")
    return value


def _not_a_pseudonym_reference(value: str) -> str:
    if STORED_PSEUDONYM.match(value):
        raise ValueError("'pseudonym:p_...' is reserved: lookups use it to name a stored pseudonym")
    return value


# Money: at most this many significant digits and decimal places (trailing zeros aside).
# Far beyond any price or order total, and it keeps an amount a few dozen bytes in state
# (the audit's 60 KB amount became a 60 KB state).
MAX_SIGNIFICANT_DIGITS = 18
MAX_DECIMAL_PLACES = 6


def _from_json_number(value: object) -> object:
    """A JSON number with a fraction arrives as a binary float: its digits past the sixth
    decimal place are the float's noise (0.1 + 0.2 = 0.30000000000000004), not the
    producer's, so they are rounded away. Text amounts are taken digit for digit."""
    if isinstance(value, float) and math.isfinite(value):
        exact = Decimal(repr(value))
        if exact.as_tuple().exponent < -MAX_DECIMAL_PLACES:
            return round(exact, MAX_DECIMAL_PLACES)
        return exact
    return value


def precision_problem(value: Decimal) -> str | None:
    """Why an amount has too many digits, or None.

    >>> precision_problem(Decimal("12.50")), precision_problem(Decimal("1E-7"))
    (None, 'has 7 decimal places (at most 6)')
    """
    _, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):  # NaN and infinity are refused before
        return None
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    kept = digits[: len(digits) - trailing]
    places = max(0, -(exponent + trailing))
    significant = len("".join(map(str, kept)).lstrip("0"))
    if places > MAX_DECIMAL_PLACES:
        return f"has {places} decimal places (at most {MAX_DECIMAL_PLACES})"
    if significant > MAX_SIGNIFICANT_DIGITS:
        return f"has {significant} significant digits (at most {MAX_SIGNIFICANT_DIGITS})"
    return None


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
CustomerId = Annotated[Id, AfterValidator(_not_a_pseudonym_reference)]
Name = Annotated[str, Field(max_length=128), AfterValidator(_clean_text)]
Money = Annotated[Decimal, Field(allow_inf_nan=False), BeforeValidator(_from_json_number)]


# The click actions events may carry (audience counts name them too).
ClickAction = Literal["view", "add_to_cart", "remove_from_cart", "search", "wishlist"]


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    event_id: Id
    customer_id: CustomerId
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
    for field, amount in _money(event):
        if problem := precision_problem(amount):
            return Rejection("absurd_amount", f"{field} {_shown(amount)} {problem}")
    for amount in _amounts(event):
        if amount > limits.max_amount:
            return Rejection("absurd_amount", f"amount {amount} > limit {limits.max_amount:g}")
    return event


def _shown(amount: Decimal) -> str:
    text = str(amount)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def _money(event: Event) -> list[tuple[str, Decimal]]:
    """Every decimal of an event, named by its field."""
    if isinstance(event, Click):
        return [("price", event.price)] if event.price is not None else []
    if not isinstance(event, Purchase | Refund):
        return []
    out = [("amount", event.amount)]
    if isinstance(event, Purchase):
        if event.discount is not None:
            out.append(("discount", event.discount))
        out += [(f"items.{i}.price", item.price) for i, item in enumerate(event.items)
                if item.price is not None]  # fmt: skip
    return out


def _amounts(event: Event) -> list[Decimal]:
    if isinstance(event, Purchase | Refund):
        return [event.amount]
    if isinstance(event, Click) and event.price is not None:
        return [event.price]
    return []

"""Audience definitions: a JSON file of named conditions over a customer's profile,
validated with pydantic (docs/audiences.md has the grammar).

A condition is one of

- ``{"all": [...]}``, ``{"any": [...]}``, ``{"not": {...}}``;
- ``{"field": NAME, OP: VALUE}`` with OP one of ``gte gt lte lt eq`` (numbers) or
  ``in`` (a list: segment names, cluster ids);
- ``{"count": EVENT, "category": C, "within_days": D, "at_least": N}``: at least N
  events of EVENT (``purchase``, ``click`` or one click action such as ``view``), of
  category C when given, in the rolling event-time window of the last D days.

A condition over a value the customer does not have (no purchase yet: no recency; no
churn model yet: no churn risk) is false, so ``not`` of it is true.
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
import unicodedata
from collections.abc import Callable
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from online_models.customer import MS_PER_DAY
from online_models.rfm import SEGMENTS
from streams.processing.schemas import ClickAction

# What one definition file may ask for: every audience is evaluated on every customer
# update, and every windowed count keeps up to ``at_least`` times per customer.
MAX_AUDIENCES = 50
MAX_CONDITIONS = 100  # leaves and combinators of one audience
MAX_AT_LEAST = 100
MAX_WINDOW_DAYS = 366
MAX_FILE_BYTES = 256 * 1024

NUMBER_FIELDS = ("r", "f", "m", "recency_days", "frequency", "monetary", "churn_risk",
                 "p_alive", "clv", "days_since_last_event")  # fmt: skip
SET_FIELDS = ("segment", "cluster")
COMPARISONS = ("gte", "gt", "lte", "lt", "eq")
_OPERATORS = {"gte": operator.ge, "gt": operator.gt, "lte": operator.le, "lt": operator.lt,
              "eq": operator.eq}  # fmt: skip

# A compiled condition: called with a profile (streams.audiences.evaluate.Profile), which
# answers ``value(field)`` and ``count(log key, window ms)``.
Predicate = Callable[[Any], bool]
# what a count may count: purchases, any click, or one click action
EVENTS = ("purchase", "click", *get_args(ClickAction))

_Strict = ConfigDict(extra="forbid", frozen=True)


class FieldCondition(BaseModel):
    model_config = _Strict

    field: Literal[NUMBER_FIELDS + SET_FIELDS]
    gte: float | None = None
    gt: float | None = None
    lte: float | None = None
    lt: float | None = None
    eq: float | None = None
    in_: tuple[str | int, ...] | None = Field(None, alias="in", max_length=100)

    @model_validator(mode="after")
    def _one_operator(self) -> FieldCondition:
        given = [op for op in (*COMPARISONS, "in_") if getattr(self, op) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(COMPARISONS)} or in "
                             f"(got {len(given) or 'none'})")  # fmt: skip
        numeric = self.field in NUMBER_FIELDS
        if numeric and given[0] == "in_":
            raise ValueError(f"{self.field} is a number: compare it with {'/'.join(COMPARISONS)}")
        if not numeric and given[0] != "in_":
            raise ValueError(f'{self.field} takes a list: {{"in": [...]}}')
        if numeric and not math.isfinite(getattr(self, given[0])):
            raise ValueError("the value must be a finite number")
        if self.field == "segment":
            unknown = [s for s in self.in_ if s not in SEGMENTS]
            if unknown:
                raise ValueError(f"unknown segment {unknown[0]!r}: one of {', '.join(SEGMENTS)}")
        if self.field == "cluster" and not all(isinstance(c, int) for c in self.in_):
            raise ValueError("cluster ids are integers")
        return self

    @property
    def op(self) -> str:
        return next(op for op in (*COMPARISONS, "in_") if getattr(self, op) is not None)

    @property
    def value(self):
        return getattr(self, self.op)

    def size(self) -> int:
        return 1

    def predicate(self) -> Predicate:
        name, op = self.field, self.op
        if op == "in_":
            allowed = frozenset(self.in_)
            return lambda p: (v := p.value(name)) is not None and v in allowed
        compare, target = _OPERATORS[op], self.value
        exact = Decimal(str(target))  # monetary is a Decimal: compared exactly, not as a float

        def holds(p) -> bool:
            v = p.value(name)
            if v is None:
                return False
            return compare(v, exact if isinstance(v, Decimal) else target)

        return holds


class CountCondition(BaseModel):
    model_config = _Strict

    count: str
    category: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    within_days: float = Field(gt=0, le=MAX_WINDOW_DAYS)
    at_least: int = Field(ge=1, le=MAX_AT_LEAST)

    @field_validator("count")
    @classmethod
    def _event(cls, value: str) -> str:
        if value == "refund":
            raise ValueError("refunds are not counted: count purchase or click events")
        if value not in EVENTS:
            raise ValueError(f"cannot count {value[:40]!r}: one of {', '.join(EVENTS)}")
        return value

    @field_validator("category")
    @classmethod
    def _named(cls, value: str | None) -> str | None:
        if value == "*":
            raise ValueError("leave category out to count every category")
        # events' categories are NFC (streams.processing.schemas): spelled the same here,
        # an NFD name in a definition counts them
        return None if value is None else unicodedata.normalize("NFC", value)

    @property
    def window_ms(self) -> int:
        return round(self.within_days * MS_PER_DAY)

    @property
    def key(self) -> str:
        """The per-customer log this count reads: ``<event>:<category or *>``."""
        return f"{self.count}:{self.category if self.category is not None else '*'}"

    def size(self) -> int:
        return 1

    def predicate(self) -> Predicate:
        key, window, n = self.key, self.window_ms, self.at_least
        return lambda p: p.count(key, window) >= n


class AllOf(BaseModel):
    model_config = _Strict
    all: tuple[Condition, ...] = Field(min_length=1)

    def size(self) -> int:
        return 1 + sum(c.size() for c in self.all)

    def predicate(self) -> Predicate:
        parts = [c.predicate() for c in self.all]

        def holds(p) -> bool:  # a loop: all() over a generator cost a third more here
            for part in parts:
                if not part(p):
                    return False
            return True

        return holds


class AnyOf(BaseModel):
    model_config = _Strict
    any: tuple[Condition, ...] = Field(min_length=1)

    def size(self) -> int:
        return 1 + sum(c.size() for c in self.any)

    def predicate(self) -> Predicate:
        parts = [c.predicate() for c in self.any]

        def holds(p) -> bool:
            for part in parts:
                if part(p):
                    return True
            return False

        return holds


class NotOf(BaseModel):
    model_config = _Strict
    not_: Condition = Field(alias="not")

    def size(self) -> int:
        return 1 + self.not_.size()

    def predicate(self) -> Predicate:
        inner = self.not_.predicate()
        return lambda p: not inner(p)


def _kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return type(value).__name__
    if isinstance(value, dict):
        for key, kind in (("all", "AllOf"), ("any", "AnyOf"), ("not", "NotOf"),
                          ("field", "FieldCondition"), ("count", "CountCondition")):  # fmt: skip
            if key in value:
                return kind
    return None


Condition = Annotated[
    Annotated[AllOf, Tag("AllOf")]
    | Annotated[AnyOf, Tag("AnyOf")]
    | Annotated[NotOf, Tag("NotOf")]
    | Annotated[FieldCondition, Tag("FieldCondition")]
    | Annotated[CountCondition, Tag("CountCondition")],
    Discriminator(
        _kind,
        custom_error_type="condition",
        custom_error_message="a condition is an object with one of: all, any, not, field, count",
    ),
]
for _model in (AllOf, AnyOf, NotOf):
    _model.model_rebuild()


def leaves(condition) -> list[FieldCondition | CountCondition]:
    """Every field and count condition under ``condition``, depth first."""
    if isinstance(condition, AllOf | AnyOf):
        return [leaf for c in (condition.all if isinstance(condition, AllOf) else condition.any)
                for leaf in leaves(c)]  # fmt: skip
    if isinstance(condition, NotOf):
        return leaves(condition.not_)
    return [condition]


class Audience(BaseModel):
    model_config = _Strict

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=2000)] = ""
    when: Condition

    @model_validator(mode="after")
    def _bounded(self) -> Audience:
        if self.when.size() > MAX_CONDITIONS:
            raise ValueError(f"more than {MAX_CONDITIONS} conditions in one audience")
        return self


class AudienceSet(BaseModel):
    """A definition file: the audiences, each with a unique id."""

    model_config = _Strict

    audiences: tuple[Audience, ...] = Field(max_length=MAX_AUDIENCES)

    @field_validator("audiences")
    @classmethod
    def _unique(cls, audiences: tuple[Audience, ...]) -> tuple[Audience, ...]:
        seen: set[str] = set()
        for audience in audiences:
            if audience.id in seen:
                raise ValueError(f"audience id {audience.id!r} is defined twice")
            seen.add(audience.id)
        return audiences

    @cached_property
    def digest(self) -> str:
        """Names this set of definitions (what a backfill pass is for)."""
        return hashlib.sha256(self.canonical().encode()).hexdigest()[:16]

    def canonical(self) -> str:
        return json.dumps(self.model_dump(mode="json", by_alias=True, exclude_none=True),
                          sort_keys=True, separators=(",", ":"))  # fmt: skip

    @cached_property
    def predicates(self) -> tuple[tuple[str, Predicate], ...]:
        """Each audience's id and its condition compiled once (the hot path calls them on
        every customer update)."""
        return tuple((a.id, a.when.predicate()) for a in self.audiences)

    @cached_property
    def ids(self) -> frozenset[str]:
        return frozenset(a.id for a in self.audiences)

    @cached_property
    def by_id(self) -> dict[str, Audience]:
        return {a.id: a for a in self.audiences}

    @cached_property
    def logs(self) -> dict[str, tuple[int, int]]:
        """Per event log a count reads: (longest window ms, most events any count needs)."""
        out: dict[str, tuple[int, int]] = {}
        for audience in self.audiences:
            for leaf in leaves(audience.when):
                if isinstance(leaf, CountCondition):
                    window, keep = out.get(leaf.key, (0, 0))
                    out[leaf.key] = (max(window, leaf.window_ms), max(keep, leaf.at_least))
        return out

    @cached_property
    def counts(self) -> dict[str, list[CountCondition]]:
        """The count conditions, by the log each reads."""
        out: dict[str, list[CountCondition]] = {}
        for audience in self.audiences:
            for leaf in leaves(audience.when):
                if isinstance(leaf, CountCondition):
                    out.setdefault(leaf.key, []).append(leaf)
        return out

    @cached_property
    def fields(self) -> list[FieldCondition]:
        return [leaf for a in self.audiences for leaf in leaves(a.when)
                if isinstance(leaf, FieldCondition)]  # fmt: skip


class DefinitionError(ValueError):
    """A definition file that cannot be used; the message says where and why."""


_ADAPTER = TypeAdapter(AudienceSet)


def parse(text: str | bytes, source: str = "the definitions") -> AudienceSet:
    """An AudienceSet from JSON text; DefinitionError names each problem's place.

    >>> parse('{"audiences": [{"id": "big", "name": "Big spenders",'
    ...       ' "when": {"field": "monetary", "gte": 500}}]}').ids
    frozenset({'big'})
    >>> parse('{"audiences": [{"id": "x", "name": "X", "when": {"field": "segment",'
    ...       ' "in": ["Champs"]}}]}')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streams.audiences.definitions.DefinitionError: ...unknown segment 'Champs'...
    """
    if len(text) > MAX_FILE_BYTES:
        raise DefinitionError(f"{source}: larger than {MAX_FILE_BYTES} bytes")
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise DefinitionError(f"{source}: not JSON ({e})") from None
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or 'top level'}: {err['msg']}"
            for err in e.errors(include_url=False)[:5]
        )
        raise DefinitionError(f"{source}: {problems}") from None


EXAMPLE = Path(__file__).parent / "examples" / "holiday.json"  # the holiday-promotion set


def load(path: str | Path) -> AudienceSet:
    """The definitions in a file (DefinitionError for a missing or unreadable one)."""
    try:
        text = Path(path).read_bytes()
    except OSError as e:
        raise DefinitionError(f"cannot read {path}: {e.strerror or e}") from None
    return parse(text, str(path))

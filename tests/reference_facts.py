"""The population facts, written out from a stored state's attributes (the contract in
docs/population.md, "Population facts"): what the tests sum over the stored states to
check the facts the writers keep. Shares no code with rtba (no import of online_models
or streams): the M histogram's bucket rule is written out here from docs/segments.md.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

DAY = 86_400_000
MONEY_PER_DECADE = 115  # the M histogram's buckets per power of ten (alpha = 1%)
ZERO_MONEY = -(2**31)  # the M histogram's one bucket for 0
CENTS_CAP = 10**10


def m_bucket(money: Decimal) -> int:
    """ceil(log10(money) * 115), exact in the decimal exponent; 0 its own bucket."""
    if money <= 0:
        return ZERO_MONEY
    exponent = money.adjusted()
    mantissa = float(money.scaleb(-exponent))
    return exponent * MONEY_PER_DECADE + math.ceil(math.log10(mantissa) * MONEY_PER_DECADE)


def contribution(state, utc_offset_ms: int = 0) -> dict[str, int]:
    """What one stored state adds, field by field (zero fields left out). The last purchase
    day is the UTC day shifted by ``utc_offset_ms`` (a zone without DST changes)."""
    out = {"customers": 1}
    last = state.last_purchase_ms
    if last is None:
        out["without_purchase"] = 1
    if state.segment is not None:
        monetary = state.gross - state.refunds
        cents = int((monetary * 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
        out[f"seg:{state.segment}"] = 1
        out[f"seg:{state.segment}:lp_ms"] = last or 0
        out[f"seg:{state.segment}:purchases"] = state.purchases
        out[f"seg:{state.segment}:cents"] = min(cents, CENTS_CAP)
    if state.cluster_id is not None:
        out[f"cluster:{state.cluster_id}"] = 1
    for audience in state.audiences:
        out[f"audience:{audience}"] = 1
    if last is not None:
        out[f"hist:lp:{(last + utc_offset_ms) // DAY}"] = 1
        out[f"hist:f:{state.purchases}"] = 1
        out[f"hist:m:{m_bucket(state.gross - state.refunds)}"] = 1
    return {k: v for k, v in out.items() if v}


def add(total: dict[str, int], more: dict[str, int], sign: int = 1) -> dict[str, int]:
    """``total + sign * more`` as a new dict, zero fields left out."""
    out = dict(total)
    for name, n in more.items():
        out[name] = out.get(name, 0) + sign * n
    return {k: v for k, v in out.items() if v}


def population(states) -> dict[str, int]:
    """The facts of a population: every state's contribution summed."""
    total: dict[str, int] = {}
    for state in states:
        total = add(total, contribution(state))
    return total


def cell(state, utc_offset_ms: int = 0) -> str | None:
    """A state's day cell (docs/population.md, "Day cells"): ``<x>:<first purchase
    day>:<last purchase day>``, x the purchase days after the first, days the UTC day
    numbers shifted by ``utc_offset_ms``; None without a purchase."""
    first, last = state.first_purchase_ms, state.last_purchase_ms
    if first is None:
        return None
    first_day, last_day = (first + utc_offset_ms) // DAY, (last + utc_offset_ms) // DAY
    return f"{state.purchase_days - 1}:{first_day}:{last_day}"


def cells(states, utc_offset_ms: int = 0) -> dict[str, int]:
    """The day cells of a population: customers per cell."""
    out: dict[str, int] = {}
    for state in states:
        name = cell(state, utc_offset_ms)
        if name is not None:
            out[name] = out.get(name, 0) + 1
    return out


def three_digits(value: Fraction) -> tuple[int, int]:
    """(digits, exponent) of a positive ``value`` rounded to three significant digits,
    ties to even, trailing zeros dropped: value ~ digits * 10**exponent."""
    exponent = 0
    while value * Fraction(10) ** -exponent >= 1000:
        exponent += 1
    while value * Fraction(10) ** -exponent < 100:
        exponent -= 1
    scaled = value * Fraction(10) ** -exponent  # in [100, 1000)
    digits = round(scaled)  # Python rounds a Fraction's .5 to even
    if digits == 1000:
        digits, exponent = 100, exponent + 1
    while digits % 10 == 0:
        digits, exponent = digits // 10, exponent + 1
    return digits, exponent


def spend_cell(state) -> str | None:
    """A state's spend cell (docs/population.md, "Spend cells"): ``gg:<x>:<mean>``, x the
    purchase days after the first, the mean the repeat value (money spent less the first
    purchase day's) over x, to three significant digits; None without a repeat day or
    with a repeat value of 0 or less."""
    x = state.purchase_days - 1
    repeat_value = Fraction(state.gross - state.refunds - state.first_day_amount)
    if state.first_purchase_ms is None or x < 1 or repeat_value <= 0:
        return None
    digits, exponent = three_digits(repeat_value / x)
    return f"gg:{x}:{digits}e{exponent}"


def spend_cells(states) -> dict[str, int]:
    """The spend cells of a population: customers per cell."""
    out: dict[str, int] = {}
    for state in states:
        name = spend_cell(state)
        if name is not None:
            out[name] = out.get(name, 0) + 1
    return out


def index_entries(state, utc_offset_ms: int = 0) -> list[str]:
    """A state's member and ranking index entries (docs/population.md, "Member and ranking
    index"): its segment and cluster, its money spent as 24 digits, 10**24 - 1 minus
    the amount in millionths, and its day cell as ``d:<cell>``, each followed by its id."""
    cid = state.customer_id
    out = [] if state.segment is None else [f"s:{state.segment}:{cid}"]
    if state.cluster_id is not None:
        out.append(f"k:{state.cluster_id}:{cid}")
    millionths = int((state.gross - state.refunds) * 1_000_000)
    out.append(f"m:{str(10**24 - 1 - millionths).zfill(24)}:{cid}")
    if (day_cell := cell(state, utc_offset_ms)) is not None:
        out.append(f"d:{day_cell}:{cid}")
    return out


def written_population(states) -> dict[str, int]:
    """What the writers' deltas sum to: the facts, the day and spend cells as ``cell:``
    fields and the index entries as ``idx:`` fields."""
    states = list(states)
    entries = {f"idx:{entry}": 1 for state in states for entry in index_entries(state)}
    every_cell = {**cells(states), **spend_cells(states)}
    return {**population(states), **{f"cell:{k}": n for k, n in every_cell.items()},
            **entries}  # fmt: skip

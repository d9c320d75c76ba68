"""Which customers a new set of RFM edges can move, found from the indexes, not a walk.

Under cut dates (S10) R counts the cut dates after the last purchase's date and M the
monetary edges at or below the money spent, and neither moves with time. A customer's
R changes with a new cut date only if its last purchase date lies between the old and
the new one; its M only if its money spent lies between an old and a new edge. So the
customers a refresh can move are the members of the day cells whose last purchase day
falls in a recency band (the ``d:<x>:<first>:<last>:<id>`` index entries) and those
whose money spent falls in a monetary band (the ``m:<inverted money>:<id>`` entries):
their states are read and the ones whose segment really changes woken, as the walk did.
The cost follows those customers and the day cells, not the population.

F counts orders, which no index holds: a refresh that moves a frequency edge (rare:
they are whole order counts) wakes by the walk, as does one from edges of another shape
or calendar.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from online_models.days import day_number
from streams.state import due_cells
from streams.state.facts import entry_id, money_rank, read_each_shard, read_shards
from streams.state.keys import Keys

_MONEY = "m:"  # the money entries' prefix (streams.state.facts.index_entries)
_MICRO = Decimal("0.000001")


@dataclass(frozen=True)
class Bands:
    """Last purchase day numbers (inclusive ranges) and money spent (inclusive ranges)
    between an old edge and its new place."""

    days: list[tuple[int, int]]
    money: list[tuple[Decimal, Decimal]]


def bands(old: dict | None, new: dict, zone: str) -> Bands | None:
    """The bands between the edges in force (``old``) and ``new`` (RFM edge dicts as
    published), the cut dates read in the calendar ``zone`` (the day cells'); None when
    only a walk can tell who moves: no old cut dates, another calendar, a moved
    frequency edge, or another number of edges.

    >>> old = {"recency_cut_dates": ["2026-01-10", "2026-01-01"], "recency_timezone": "UTC",
    ...        "frequency_edges": [2, 3], "monetary_edges": [100.0, 250.5]}
    >>> new = {**old, "recency_cut_dates": ["2026-01-12", "2026-01-01"],
    ...        "monetary_edges": [100.0, 240.0]}
    >>> b = bands(old, new, "UTC")
    >>> b.days, [(str(lo), str(hi)) for lo, hi in b.money]  # 20463: 2026-01-10
    ([(20463, 20464)], [('239.999999', '250.500001')])
    >>> bands({**old, "frequency_edges": [2, 4]}, new, "UTC") is None
    True
    """
    if old is None or not old.get("recency_cut_dates") or not new.get("recency_cut_dates"):
        return None
    same_zone = old.get("recency_timezone") == new.get("recency_timezone") == zone
    if not same_zone or list(old["frequency_edges"]) != list(new["frequency_edges"]):
        return None
    pairs = [(old["recency_cut_dates"], new["recency_cut_dates"]),
             (old["monetary_edges"], new["monetary_edges"])]  # fmt: skip
    if any(len(a) != len(b) for a, b in pairs):
        return None
    days = []
    for was, now in zip(*pairs[0], strict=True):
        lo, hi = sorted((day_number(was), day_number(now)))
        if lo < hi:  # a last purchase dated lo .. hi - 1 is before one cut and not the other
            days.append((lo, hi - 1))
    money = []
    for was, now in zip(*pairs[1], strict=True):
        lo, hi = sorted((Decimal(repr(float(was))), Decimal(repr(float(now)))))
        if lo != hi:  # closed, and a micro-unit wider each way: an edge is a float
            money.append((lo - _MICRO, hi + _MICRO))
    return Bands(days, money)


def members(client, keys: Keys, found: Bands) -> list[str]:
    """The customers the bands hold (each once, sorted): the members of every day cell
    whose last purchase day is in a day band, and everyone whose money spent is in a
    money band (synchronous client)."""
    ids: set[str] = set()
    if found.days:
        held = due_cells.held_cells(read_shards(client, keys, cells=True))
        last_day = {name: int(name.rsplit(":", 1)[1]) for name in held}
        moved = [(name, [shard for shard, _ in pairs]) for name, pairs in held.items()
                 if any(lo <= last_day[name] <= hi for lo, hi in found.days)]  # fmt: skip
        ids.update(due_cells.read_members(client, keys, moved))
    for lo, hi in found.money:
        # most spent first: the higher amount's rank is the lower bound
        lower = f"[{_MONEY}{money_rank(hi)}:".encode()
        upper = f"[{_MONEY}{money_rank(lo)}:".encode() + b"\xff"  # above every id's bytes

        def ask(pipe, name, lower=lower, upper=upper):
            pipe.zrangebylex(name, lower, upper)

        for shard in read_each_shard(client, keys.index, ask):
            ids.update(entry_id(m.decode() if isinstance(m, bytes) else m) for m in shard)
    return sorted(ids)

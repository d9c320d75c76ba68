"""Customers ranked by churn risk from the day cells, not by a walk (S10).

A customer's P(alive) as of a moment depends on it only through its day cell (x, first
and last purchase day: streams.state.facts.cell_of) and the times of day within those
days, so each cell's customers lie between bounds the model gives for the whole cell
(ChurnScorer.p_alive_bounds). A page of the ranking (P(alive) ascending, that is churn
risk descending; then customer id) is found as a top-k query over those bounds:

1. every day cell with its customer count (the ``Keys.cells`` hashes, no state) gets its
   bounds (lo, hi) as of the moment;
2. taking cells by ``hi``, the ``need`` customers wanted (offset + limit + 1, after the
   cursor) are surely among those with P(alive) at most ``tau``, the ``hi`` of the cell
   at which the count reaches ``need``;
3. only cells with ``lo <= tau`` can hold them: their members are read from the index
   (``d:<cell>:<id>``, one lexical range per cell and shard), their states loaded, their
   exact P(alive) computed as the profile computes it, sorted and cut.

The answer is exact; its cost is the cells (bounded by the calendar: ~1 µs each) plus
the customers of the cells that straddle the page, not the population. The largest day
cell is one day's first-time buyers (~N / days of history).

Churn risk is shown as ``1 - P(alive)``, which rounds to 1.0 for many long-lapsed
customers; ordering by P(alive) itself still tells them apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from online_models.churn_risk import ChurnScorer
from online_models.days import Days
from streams.read.ranking import MAX_OFFSET, BadPage
from streams.state import due_cells
from streams.state.facts import read_shards
from streams.state.keys import Keys
from streams.state.store import read_states

_CURSOR = re.compile(r"(-?\d+):(\d+):([^:]+):(.+)", re.DOTALL)


@dataclass(frozen=True)
class CellTable:
    """The day cells as of a moment: names, P(alive) bounds, customers, shards holding
    members of each."""

    names: list[str]
    lo: np.ndarray
    hi: np.ndarray
    counts: np.ndarray
    shards: list[list[int]]

    @property
    def customers(self) -> int:
        return int(self.counts.sum())


def cell_table(shard_cells: list[dict[str, int]], scorer: ChurnScorer, as_of_ms: int,
               days: Days) -> CellTable:  # fmt: skip
    """The cells of ``shard_cells`` (per index shard: cell -> customers; spend cells and
    empty ones left out) with their P(alive) bounds as of ``as_of_ms``."""
    held = due_cells.held_cells(shard_cells)
    names = sorted(held)
    x, first, last = due_cells.cell_arrays(names, days)
    lo, hi = scorer.p_alive_bounds(x, first, last, as_of_ms)
    return CellTable(names, np.asarray(lo, dtype=float), np.asarray(hi, dtype=float),
                     np.array([sum(n for _, n in held[c]) for c in names], dtype=np.int64),
                     [[shard for shard, _ in held[c]] for c in names])  # fmt: skip


def candidate_cells(table: CellTable, need: int, after_p: float | None = None) -> np.ndarray:
    """Indexes of the cells that hold every one of the first ``need`` customers in
    P(alive) order among those not before a cursor at P(alive) ``after_p`` (None: from
    the start).

    >>> t = CellTable(["a", "b", "c"], np.array([.1, .2, .6]), np.array([.3, .5, .9]),
    ...               np.array([5, 5, 5]), [[0], [0], [0]])
    >>> candidate_cells(t, 5).tolist(), candidate_cells(t, 6).tolist()
    ([0, 1], [0, 1])
    >>> candidate_cells(t, 11).tolist(), candidate_cells(t, 1, after_p=0.4).tolist()
    ([0, 1, 2], [1, 2])
    """
    eligible = np.ones(len(table.names), dtype=bool)
    surely_after = eligible
    if after_p is not None:
        eligible = table.hi >= after_p  # a cell wholly below the cursor was paged past
        surely_after = table.lo > after_p
    order = np.flatnonzero(surely_after)[np.argsort(table.hi[surely_after], kind="stable")]
    reached = np.cumsum(table.counts[order]) >= need
    tau = table.hi[order[np.argmax(reached)]] if reached.any() else np.inf
    return np.flatnonzero(eligible & (table.lo <= tau))


def cursor(as_of_ms: int, version: int, p_alive: float, customer_id: str) -> str:
    """A page's ``next``: the moment and model it ranks by, and the last row's place.

    >>> cursor(86_400_000, 3, 0.25, "c:1"), parse_cursor(cursor(86_400_000, 3, 0.25, "c:1"))
    ('86400000:3:0.25:c:1', (86400000, 3, 0.25, 'c:1'))
    """
    return f"{as_of_ms}:{version}:{p_alive!r}:{customer_id}"


def parse_cursor(text: str) -> tuple[int, int, float, str]:
    match = _CURSOR.fullmatch(text)
    try:
        if match is None:
            raise ValueError(text)
        p_alive = float(match.group(3))
    except ValueError:
        shape = "<as-of ms>:<model version>:<P(alive)>:<customer id>"
        raise BadPage(f"after= takes a page's next as given ({shape})") from None
    return int(match.group(1)), int(match.group(2)), p_alive, match.group(4)


@dataclass(frozen=True)
class RiskPage:
    states: list  # the customers' states, in ranking order
    next: str | None  # the cursor that continues after them; None: this was the last page
    total: int  # customers with a purchase (all of them are ranked)
    read: int  # states read to find the page (its cost)


def page(client, keys: Keys, scorer: ChurnScorer, days: Days, as_of_ms: int, limit: int,
         after: str | None = None, offset: int = 0) -> RiskPage:  # fmt: skip
    """One page of everyone with a purchase by P(alive) ascending, then id, as of
    ``as_of_ms`` (a cursor carries its own, and the model version it was ranked by)."""
    if offset > MAX_OFFSET:
        raise BadPage(f"offset {offset:,} is past {MAX_OFFSET:,}: page on with after= (each "
                      "page's next)")  # fmt: skip
    place = None
    if after is not None:
        at, version, p_after, id_after = parse_cursor(after)
        if version != scorer.version:
            raise BadPage(f"the churn model is v{scorer.version} now, the cursor ranked by "
                          f"v{version}: start again without after=")  # fmt: skip
        if at != as_of_ms:
            raise BadPage("the cursor ranks as of another moment than as_of=: leave as_of "
                          "out with after=")  # fmt: skip
        place = (p_after, id_after)
    table = cell_table(read_shards(client, keys, cells=True), scorer, as_of_ms, days)
    need = offset + limit + 1  # one more tells whether a next page exists
    chosen = candidate_cells(table, need, None if place is None else place[0])
    ids = due_cells.read_members(client, keys, [(table.names[i], table.shards[i]) for i in chosen])
    states = read_states(client, keys, ids)
    ranked = []
    for state, p_alive in zip(states, scorer.p_alive_each(states, as_of_ms), strict=True):
        if p_alive is not None and (place is None or (p_alive, state.customer_id) > place):
            ranked.append((p_alive, state.customer_id, state))
    ranked.sort(key=lambda row: row[:2])
    taken = ranked[offset : offset + limit]
    following = None
    if len(ranked) > offset + limit and taken:
        following = cursor(as_of_ms, scorer.version, taken[-1][0], taken[-1][1])
    return RiskPage([row[2] for row in taken], following, table.customers, len(ids))

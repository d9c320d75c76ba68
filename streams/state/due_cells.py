"""Wake-ups by day cell: how a new churn model reaches the customers whose crossing it
moves without reading them one by one.

A churn crossing (the alert's, or a ``churn_risk`` / ``p_alive`` audience condition's)
depends on the customer only through its day cell (x, first and last purchase day:
streams.state.facts.cell_of) and the time of day within those days, so a cell's
customers cross within bounds the model gives for the whole cell
(ChurnScorer.crossing_bounds_ms). When a refit publishes, :func:`plan` puts each cell
whose customers may cross later than the watermark under the model in force (so may
hold a due time the new model makes late) and may cross at all under the new one into
``Keys.due_cells``, at the least time any of them crosses under the new model: one entry
per index shard holding members of the cell, ``<shard>:<cell>``. The leader's tick takes
the entries that fell due, reads their members from the index (the ``d:<cell>:<id>``
entries, one lexical range each) and marks them due now; the re-scoring then gives each
its exact due time. A cell entry is never later than any member's crossing, so nobody
is woken late; a customer woken before its crossing costs one idle re-score. A
customer whose old due time is earlier than its new crossing just wakes then, idle.

The cost of a published model is the day cells (read and bounded, ~1 µs each) plus the
customers of the cells that fall due, when they do; not the population.
"""

from __future__ import annotations

import numpy as np

from online_models.churn_risk import SPEND_CELL, ChurnScorer
from online_models.days import Days
from streams.state.facts import CELL_MEMBER

_PER_WRITE = 10_000  # entries per pipelined ZADD


def entry(shard: int, cell: str) -> str:
    """A due-cells entry: the members of ``cell`` in index shard ``shard``.

    >>> entry(3, "1:20100:20150"), parse(entry(3, "1:20100:20150"))
    ('3:1:20100:20150', (3, '1:20100:20150'))
    """
    return f"{shard}:{cell}"


def parse(name: str | bytes) -> tuple[int, str]:
    """(shard, cell) of an entry."""
    text = name.decode() if isinstance(name, bytes) else name
    shard, _, cell = text.partition(":")
    return int(shard), cell


def member_prefix(cell: str) -> str:
    """What precedes a member's id in its ``d:`` entry."""
    return f"{CELL_MEMBER}{cell}:"


def member_range(cell: str) -> tuple[str, str]:
    """ZRANGEBYLEX bounds of the cell's ``d:`` entries in an index shard (``;`` is the
    character after ``:``, so a longer cell sharing the prefix is not among them).

    >>> member_range("1:3:7")
    ('[d:1:3:7:', '(d:1:3:7;')
    """
    return f"[{member_prefix(cell)}", f"({CELL_MEMBER}{cell};"


def held_cells(shard_cells: list[dict[str, int]]) -> dict[str, list[tuple[int, int]]]:
    """Each day cell with customers -> its (index shard, customers) pairs, from the cells
    as stored per shard (spend cells and emptied cells left out).

    >>> held_cells([{"1:3:7": 2, "gg:1:1e2": 1}, {"1:3:7": 1, "0:4:4": 0}])
    {'1:3:7': [(0, 2), (1, 1)]}
    """
    held: dict[str, list[tuple[int, int]]] = {}
    for shard, cells in enumerate(shard_cells):
        for name, n in cells.items():
            if n > 0 and not name.startswith(SPEND_CELL):
                held.setdefault(name, []).append((shard, n))
    return held


def plan(shard_cells: list[dict[str, int]], old: ChurnScorer | None, new: ChurnScorer,
         levels: tuple[list[float], list[float]], as_of_ms: int,
         days: Days) -> dict[str, int]:  # fmt: skip
    """The due-cells entries a newly published model needs: entry -> wake time (ms).

    Parameters
    ----------
    shard_cells
        Per index shard, its day cells -> customers (Keys.cells; spend cells ignored).
    old, new
        The model in force before (None: there was none, every crossing is new) and the
        published one.
    levels
        The churn-risk levels whose crossings each of them decides
        (streams.audiences.evaluate.churn_thresholds).
    as_of_ms
        The watermark: a cell all of whose customers crossed by then under ``old`` was
        woken for it already (their due times were at most the watermark).
    days
        The namespace's calendar, the cells' days.
    """
    held = held_cells(shard_cells)
    names = sorted(held)
    if not names:
        return {}
    x, first, last = cell_arrays(names, days)
    if old is None:
        latest_old = np.full(len(names), np.inf)
    else:
        latest_old = np.max([old.crossing_bounds_ms(x, first, last, level)[1]
                             for level in levels[0]], axis=0)  # fmt: skip
    earliest_new = np.min([new.crossing_bounds_ms(x, first, last, level)[0]
                           for level in levels[1]], axis=0)  # fmt: skip
    moved = np.flatnonzero((latest_old > as_of_ms) & np.isfinite(earliest_new))
    wake = {names[i]: int(np.floor(earliest_new[i])) for i in moved}
    return {entry(shard, c): at for c, at in wake.items() for shard, _ in held[c]}


def cell_arrays(names: list[str], days: Days):
    """(x, (first purchase's least, greatest ms), (last purchase's least, greatest ms)) of
    each day cell named, as arrays.

    >>> from online_models.days import UTC_DAYS
    >>> x, first, last = cell_arrays(["2:1:3"], UTC_DAYS)
    >>> x.tolist(), first[0].tolist(), last[1].tolist()
    ([2], [86400000.0], [345599999.0])
    """
    parts = np.array([[int(v) for v in name.split(":")] for name in names],
                     dtype=np.int64).reshape(-1, 3)  # fmt: skip
    return parts[:, 0], _day_range(parts[:, 1], days), _day_range(parts[:, 2], days)


def _day_range(day_numbers: np.ndarray, days: Days) -> tuple[np.ndarray, np.ndarray]:
    """(first, last) millisecond of each day (a time zone's days differ in length)."""
    start = {int(d): days.start_ms(int(d)) for d in np.unique(day_numbers)}
    end = {d: days.start_ms(d + 1) - 1 for d in start}
    return (np.array([start[int(d)] for d in day_numbers], dtype=float),
            np.array([end[int(d)] for d in day_numbers], dtype=float))  # fmt: skip


def schedule(client, keys, wake: dict[str, int]) -> int:
    """Write ``wake`` into Keys.due_cells (synchronous client), never moving an entry
    later (ZADD LT: an earlier model's wake-up not yet taken stands). Returns the count."""
    items = list(wake.items())
    for at in range(0, len(items), _PER_WRITE):
        client.zadd(keys.due_cells, dict(items[at : at + _PER_WRITE]), lt=True)
    return len(items)


def read_members(client, keys, cells: list[tuple[str, list[int]]]) -> list[str]:
    """The ids of the members of each (cell, index shards holding any of them): one
    lexical range read per cell and shard, pipelined (synchronous client)."""
    asked = [(cell, shard) for cell, shards in cells for shard in shards]
    replies = []
    for at in range(0, len(asked), _PER_WRITE):
        with client.pipeline(transaction=False) as pipe:
            for cell, shard in asked[at : at + _PER_WRITE]:
                pipe.zrangebylex(keys.index(shard), *member_range(cell))
            replies += pipe.execute()
    out = []
    for (cell, _), found in zip(asked, replies, strict=True):
        skip = len(member_prefix(cell))
        out += [(m.decode() if isinstance(m, bytes) else m)[skip:] for m in found]
    return out

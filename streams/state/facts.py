"""Population facts: integer counters over every stored customer, kept by the writers.

The one place the facts are defined. Each stored customer state adds its
:func:`contribution` (a few ``field -> int``); the facts are the sums of those over the
population, kept in hashes (``Keys.facts(shard)``) by HINCRBY of each write's
:func:`delta`, in the same script call as the version-checked state write
(apply_customers.lua) or the delete (erase_customer.lua). A write that loses its version
check, or never happens, moves no fact; one that happens moves them exactly once: the
facts stay equal to a walk over the stored states under conflicts, crashes, erase and
retention. `rtba verify` (:func:`recompute`) is that walk.

Fields (every value an int; a field at 0 is deleted, absent reads as 0):

- ``customers``: 1 per customer with state; ``without_purchase``: 1 with no purchase.
- ``seg:<segment>`` 1, ``seg:<segment>:lp_ms`` its last purchase (epoch ms),
  ``seg:<segment>:purchases`` its purchases, ``seg:<segment>:cents`` its monetary value
  in cents (half-even, each customer's capped at CENTS_CAP): for the stored segment, the
  one of the customer's last evaluation.
- ``cluster:<id>`` 1 for its stored cluster; ``audience:<id>`` 1 per audience it is in.
- ``hist:lp:<bucket>``, ``hist:f:<bucket>``, ``hist:m:<bucket>`` 1 each: the buckets of
  the population histograms behind the adaptive RFM edges (:func:`histogram_point`).

Day cells (``Keys.cells(shard)``, a hash family of their own so the facts /segments reads
stay small): ``<x>:<first purchase day>:<last purchase day>`` 1 per customer with a
purchase (:func:`cell_of`; days in the namespace's calendar, x the purchase days after
the first, as CustomerState.btyd_ms). The churn refit fits on them, weighted
(online_models.churn_risk.cell_rows). They travel inside a written contribution as
``cell:<cell>`` fields (:func:`written_contribution`) and are split off to the cells
key by :func:`script_args`: the same deltas, the same script call, the same version
check as the facts, so they stay exact as the facts do.

The member and ranking index (``Keys.index(shard)``, a sorted set of its own, every
score 0, read by lexical range: streams.read.ranking): ``s:<segment>:<id>`` for the
stored segment, ``k:<cluster>:<id>`` for the stored cluster, ``m:<inverted money>:<id>``
for everyone (:func:`index_entries`). They travel as ``idx:`` fields worth 1 and go to
the index key as ZADD (+1) or ZREM (-1): the same deltas, the same call, the same check.

Shards: on a Redis Cluster a script's keys share one slot, so a customer's facts shard is
its own slot (the shard key's hash tag hashes to that slot: keys.slot_tag); the facts
are the sum over 16,384 shards. On a single server the shard is that slot mod
SINGLE_SERVER_SHARDS, the same key names and the same summing code.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal

import redis
from redis.crc import key_slot

from online_models.churn_risk import SPEND_CELL
from online_models.customer import CustomerState
from online_models.days import UTC_DAYS, Days
from online_models.quantiles import rfm_histograms
from streams.state.keys import Keys, hash_tag
from streams.state.redis_client import clustered as is_clustered

SLOTS = 16_384  # a Redis Cluster's hash slots
SINGLE_SERVER_SHARDS = 16
# One customer's cents at most (100M in money): 100M customers' capped cents in one
# Cluster shard (~6,100 customers) or in one of a single server's 16 (~6.3M) stay far
# below int64's 9.2e18, where HINCRBY would refuse the write. (``seg:<s>:lp_ms`` sums
# ~1.8e12 a customer: int64 holds ~5M customers of one segment in one shard, ~80M on a
# single server's 16; docs/population.md.)
CENTS_CAP = 10**10
# Shard keys per pipelined read.
_SHARDS_PER_READ = 1024

_HISTOGRAMS = rfm_histograms()
_HUNDRED = Decimal(100)


def histogram_point(state: CustomerState, days: Days = UTC_DAYS) -> dict[str, int] | None:
    """The buckets a customer occupies in the population histograms (None: no purchase):
    the last purchase by the shop's calendar day, so a sale day is one R tie wherever
    UTC midnight falls in it."""
    if state.last_purchase_ms is None:
        return None
    return {
        "lp": _HISTOGRAMS["lp"].bucket(days.of(state.last_purchase_ms)),
        "f": _HISTOGRAMS["f"].bucket(state.purchases),
        "m": _HISTOGRAMS["m"].bucket(float(state.monetary)),
    }


def cents(amount: Decimal) -> int:
    """Money in whole cents, half to even, capped at CENTS_CAP (see there)."""
    exact = int((amount * _HUNDRED).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    return min(exact, CENTS_CAP)


def contribution(state: CustomerState, days: Days = UTC_DAYS) -> dict[str, int]:
    """What one stored customer state adds to the population facts.

    Parameters
    ----------
    state
        The state as stored (or about to be).
    days
        The namespace's calendar (RTBA_TIMEZONE): the last-purchase histogram's days.

    Returns
    -------
    dict
        Field -> int, every value non-zero.
    """
    out = {"customers": 1}
    if state.last_purchase_ms is None:
        out["without_purchase"] = 1
    if state.segment is not None:
        seg = f"seg:{state.segment}"
        out[seg] = 1
        out[f"{seg}:lp_ms"] = state.last_purchase_ms or 0
        out[f"{seg}:purchases"] = state.purchases
        out[f"{seg}:cents"] = cents(state.monetary)
    if state.cluster_id is not None:
        out[f"cluster:{state.cluster_id}"] = 1
    for audience_id in state.audiences:
        out[f"audience:{audience_id}"] = 1
    for name, bucket in (histogram_point(state, days) or {}).items():
        out[f"hist:{name}:{bucket}"] = 1
    return {k: v for k, v in out.items() if v}


CELL = "cell:"  # a written contribution's day-cell field; stored without it in Keys.cells
INDEX = "idx:"  # a written contribution's index entry; stored without it in Keys.index
# The money rank's width: micro-units (amounts have at most 6 decimal places) up to 1e18
# in money, inverted so that lexical order is most spent first.
MONEY_DIGITS = 24
_MICRO = Decimal(10**6)
_MONEY_TOP = 10**MONEY_DIGITS - 1


def money_rank(amount: Decimal) -> str:
    """A fixed-width text whose lexical order is ``amount``'s, largest first (exact: in
    micro-units, clamped to the width).

    >>> ranks = [money_rank(Decimal(a)) for a in ("9.5", "10", "0", "9.500001")]
    >>> [ranks.index(r) for r in sorted(ranks)]  # 10, then 9.500001, 9.5, 0
    [1, 3, 0, 2]
    >>> money_rank(Decimal("10"))
    '999999999999999989999999'
    """
    micro = int((amount * _MICRO).to_integral_value(rounding=ROUND_HALF_EVEN))
    return f"{_MONEY_TOP - min(max(micro, 0), _MONEY_TOP):0{MONEY_DIGITS}d}"


CELL_MEMBER = "d:"  # an index entry naming a day cell's member: d:<cell>:<id>


def index_entries(state: CustomerState, days: Days = UTC_DAYS) -> list[str]:
    """The customer's entries in the member and ranking index: its stored segment and
    cluster (as the facts count them), its money spent and its day cell (whose members
    a new churn model wakes: streams.state.due_cells), each followed by its id.

    >>> s = CustomerState("c1")
    >>> s.segment, s.cluster_id = "Champions", 3
    >>> index_entries(s)[:2]
    ['s:Champions:c1', 'k:3:c1']
    """
    cid = state.customer_id
    out = []
    if state.segment is not None:
        out.append(f"s:{state.segment}:{cid}")
    if state.cluster_id is not None:
        out.append(f"k:{state.cluster_id}:{cid}")
    out.append(f"m:{money_rank(state.monetary)}:{cid}")
    if (cell := cell_of(state, days)) is not None:
        out.append(f"{CELL_MEMBER}{cell}:{cid}")
    return out


# How many ``:``-separated fields each kind of index entry has before the id (which may
# hold ``:`` itself).
_FIELDS_BEFORE_ID = {"s": 2, "k": 2, "m": 2, "d": 4}


def entry_id(entry: str) -> str:
    """The customer an index entry names.

    >>> entry_id("s:Champions:a:b"), entry_id("d:1:3:7:c1")
    ('a:b', 'c1')
    """
    return entry.split(":", _FIELDS_BEFORE_ID[entry[0]])[-1]


def cell_of(state: CustomerState, days: Days = UTC_DAYS) -> str | None:
    """The customer's day cell, ``<x>:<first purchase day>:<last purchase day>`` (day
    numbers of ``days``, the namespace's calendar), or None without a purchase. With the
    as-of time it gives x exactly and t_x, T to the day (churn_risk.cell_rows).

    >>> from decimal import Decimal
    >>> s = CustomerState("c1")
    >>> _ = s.apply_purchase(3 * 86_400_000 + 5, Decimal("9"), "o1")
    >>> _ = s.apply_purchase(7 * 86_400_000 + 9, Decimal("9"), "o2")
    >>> cell_of(s), cell_of(CustomerState("c2"))
    ('1:3:7', None)
    """
    if state.first_purchase_ms is None or state.last_purchase_ms is None:
        return None
    first, last = days.of(state.first_purchase_ms), days.of(state.last_purchase_ms)
    return f"{state.purchase_days - 1}:{first}:{last}"


# A mean spend to three significant digits: within 0.5% of it, and at most 900 cells a
# power of ten for each x.
_SPEND_DIGITS = Context(prec=3, rounding=ROUND_HALF_EVEN)


def spend_cell_of(state: CustomerState) -> str | None:
    """The customer's spend cell, ``gg:<x>:<mean>`` (x the purchase days after the first,
    the mean the repeat value a repeat day to three significant digits, ties to even,
    written ``<digits>e<exponent>``), or None when Gamma-Gamma leaves it out (no repeat
    day, or a repeat value of 0 or less). Gamma-Gamma is fitted on them, weighted
    (online_models.churn_risk.spend_cell_rows).

    >>> from decimal import Decimal
    >>> s = CustomerState("c1")
    >>> for day, amount in ((3, "20"), (7, "45.25"), (9, "45.3")):
    ...     _ = s.apply_purchase(day * 86_400_000, Decimal(amount), f"o{day}")
    >>> spend_cell_of(s), spend_cell_of(CustomerState("c2"))
    ('gg:2:453e-1', None)
    """
    repeats = state.purchase_days - 1
    if state.first_purchase_ms is None or repeats < 1 or state.repeat_value <= 0:
        return None
    return spend_cell(repeats, state.repeat_value)


def spend_cell(repeats: int, repeat_value: Decimal) -> str:
    """The spend cell of ``repeats`` repeat days worth ``repeat_value`` in all (both > 0).

    >>> spend_cell(2, Decimal("90.55")), spend_cell(1, Decimal("999.5"))
    ('gg:2:453e-1', 'gg:1:1e3')
    """
    mean = _SPEND_DIGITS.divide(repeat_value, repeats).normalize(_SPEND_DIGITS)
    _sign, digits, exponent = mean.as_tuple()
    return f"{SPEND_CELL}{repeats}:{''.join(map(str, digits))}e{exponent}"


def written_contribution(state: CustomerState, days: Days = UTC_DAYS) -> dict[str, int]:
    """What a stored state adds to the facts, to the day cells and spend cells (its cells
    as ``cell:`` fields) and to the index (its entries as ``idx:`` fields): what a write's
    delta is taken between."""
    out = contribution(state, days)
    for cell in (cell_of(state, days), spend_cell_of(state)):
        if cell is not None:
            out[CELL + cell] = 1
    for entry in index_entries(state, days):
        out[INDEX + entry] = 1
    return out


def stored_contribution(state: CustomerState, days: Days = UTC_DAYS) -> dict[str, int] | None:
    """A loaded state's written contribution (facts and cell), or None when it is not
    stored (version 0: a new customer, or one erased since)."""
    return written_contribution(state, days) if state.version > 0 else None


def split(fields: dict[str, int]) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """(the facts' fields, the cells' fields without ``cell:``, the index entries without
    ``idx:``) of a contribution or delta."""
    facts_part, cells_part, index_part = {}, {}, {}
    for name, n in fields.items():
        if name.startswith(CELL):
            cells_part[name[len(CELL) :]] = n
        elif name.startswith(INDEX):
            index_part[name[len(INDEX) :]] = n
        else:
            facts_part[name] = n
    return facts_part, cells_part, index_part


def script_args(fact_delta: dict[str, int]) -> list:
    """A delta as the write and erase scripts take it: f, f field/delta pairs for the facts
    shard, then g, g cell/delta pairs for the cells shard, then h, h entry/delta pairs
    for the index shard."""
    args: list = []
    for part in split(fact_delta):
        args.append(len(part))
        for name, n in part.items():
            args += [name, n]
    return args


def delta(before: dict | None, after: dict | None) -> dict[str, int]:
    """``after - before`` field by field (None: no contribution), zero entries dropped."""
    out = dict(after or {})
    for name, n in (before or {}).items():
        out[name] = out.get(name, 0) - n
    return {k: v for k, v in out.items() if v}


def add_into(total: dict[str, int], more: dict[str, int], sign: int = 1) -> dict[str, int]:
    """``total += sign * more`` in place (zero fields dropped); returns ``total``."""
    for name, n in more.items():
        value = total.get(name, 0) + sign * n
        if value:
            total[name] = value
        else:
            total.pop(name, None)
    return total


# -- shards -------------------------------------------------------------------


def shard_of(customer_id: str, clustered: bool) -> int:
    """The facts shard of a customer: its key's Cluster slot, or on a single server that
    slot mod SINGLE_SERVER_SHARDS."""
    slot = key_slot(hash_tag(customer_id).encode())
    return slot if clustered else slot % SINGLE_SERVER_SHARDS


def shard_count(clustered: bool) -> int:
    return SLOTS if clustered else SINGLE_SERVER_SHARDS


def shard_keys(keys: Keys, clustered: bool) -> list[str]:
    """Every facts shard's key, shard 0 first."""
    return [keys.facts(shard) for shard in range(shard_count(clustered))]


def cell_shard_keys(keys: Keys, clustered: bool) -> list[str]:
    """Every day-cells shard's key, shard 0 first."""
    return [keys.cells(shard) for shard in range(shard_count(clustered))]


def customer_facts_key(keys: Keys, customer_id: str, clustered: bool) -> str:
    """The key of the shard a customer's contribution lives in (on a Cluster, in its slot)."""
    return keys.facts(shard_of(customer_id, clustered))


def _parse(raw: dict) -> dict[str, int]:
    return {_text(k): int(v) for k, v in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def read_shards(client, keys: Keys, cells: bool = False) -> list[dict[str, int]]:
    """Every shard's fields, shard 0 first (synchronous client; pipelined); the day
    cells' shards when ``cells``."""
    name_of = keys.cells if cells else keys.facts
    return [_parse(raw) for raw in read_each_shard(client, name_of, _hgetall)]


def _hgetall(pipe, name: str) -> None:
    pipe.hgetall(name)


def _read_per_node(client, names: list[str], command) -> list:
    """``command(pipe, name)`` of every Cluster shard (shard = slot), one
    plain pipeline per master: the cluster pipeline's per-command routing cost more than
    the reads (1,056 ms against 628 ms for 16,384 keys on a local three-master Cluster).
    A MOVED reply raises."""
    by_node: dict[str, tuple] = {}
    for slot in range(len(names)):
        node = client.nodes_manager.get_node_from_slot(slot)
        by_node.setdefault(node.name, (node, []))[1].append(slot)
    replies: list = [None] * len(names)
    for node, slots in by_node.values():
        server = client.get_redis_connection(node)
        for at in range(0, len(slots), _SHARDS_PER_READ):
            part = slots[at : at + _SHARDS_PER_READ]
            with server.pipeline(transaction=False) as pipe:
                for slot in part:
                    command(pipe, names[slot])
                for slot, raw in zip(part, pipe.execute(), strict=True):
                    replies[slot] = raw
    return replies


def read_facts(client, keys: Keys) -> dict[str, int]:
    """The population facts: every shard summed (synchronous client). On a Cluster that
    reads 16,384 keys; on a single server 16."""
    return sum_shards(read_shards(client, keys))


def read_fact(client, keys: Keys, field: str) -> int:
    """One field of the population facts, every shard's summed: an HGET a shard, not the
    whole hashes (a page's total)."""
    replies = read_each_shard(client, keys.facts, lambda pipe, name: pipe.hget(name, field))
    return sum(int(n) for n in replies if n is not None)


def read_cells(client, keys: Keys) -> dict[str, int]:
    """The day cells, ``<x>:<first day>:<last day>`` -> customers, and the spend cells,
    ``gg:<x>:<mean>`` -> customers (churn_risk.split_cells tells them apart), every shard
    summed (synchronous client): what the churn refit fits on."""
    return sum_shards(read_shards(client, keys, cells=True))


def sum_shards(shards) -> dict[str, int]:
    total: dict[str, int] = {}
    for shard in shards:
        add_into(total, shard)
    return total


def histograms(facts: dict[str, int]) -> dict:
    """The population histograms (lp, f, m) as BucketHistograms, from the ``hist:``
    fields of the facts."""
    hists = rfm_histograms()
    for field, n in facts.items():
        head, _, rest = field.partition(":")
        if head != "hist" or not n:
            continue
        name, _, bucket = rest.partition(":")
        if name in hists:
            hists[name].counts[int(bucket)] += n
    return hists


# -- the walk: `rtba verify` ------------------------------------------------------


def namespace_days(client, keys: Keys, default: Days) -> Days:
    """The calendar the namespace's writers count days in (``keys.timezone``, claimed by
    its first worker), else ``default``: the facts' last-purchase days are in it."""
    from online_models.days import days_in

    zone = client.get(keys.timezone)
    return default if zone is None else days_in(_text(zone))


@dataclass
class Check:
    """A walk's facts against the stored ones, shard by shard."""

    # per shard, the facts and (as ``cell:`` fields) the day cells
    expected: list[dict[str, int]]  # summed over the stored states
    stored: list[dict[str, int]]  # as read after the walk
    moved: bool  # the stored facts changed during the walk (writers at work)
    customers: int  # states walked

    def differences(self) -> list[tuple[int, str, int, int]]:
        """(shard, field, expected, stored) of every field that differs, shard by shard."""
        out = []
        for shard, (want, got) in enumerate(zip(self.expected, self.stored, strict=True)):
            for name in sorted(set(want) | set(got)):
                if want.get(name, 0) != got.get(name, 0):
                    out.append((shard, name, want.get(name, 0), got.get(name, 0)))
        return out


def recompute(client, keys: Keys, days: Days = UTC_DAYS) -> Check:
    """Walk every stored state (a page of the due index at a time) and sum their
    contributions per shard (facts and day cells); read the stored ones before and after
    the walk. The one function that walks the population (`rtba verify`)."""
    from streams.state.store import customer_pages, read_states

    clustered = is_clustered(client)
    before = _read_written(client, keys)
    expected: list[dict[str, int]] = [{} for _ in range(shard_count(clustered))]
    walked = 0
    for ids in customer_pages(client, keys):
        for state in read_states(client, keys, ids):
            add_into(expected[shard_of(state.customer_id, clustered)],
                     written_contribution(state, days))  # fmt: skip
            walked += 1
    after = _read_written(client, keys)
    return Check(expected, after, before != after, walked)


def _read_written(client, keys: Keys) -> list[dict[str, int]]:
    """Per shard, the stored facts, day cells (as ``cell:`` fields) and index entries (as
    ``idx:`` fields, each 1) in one dict."""
    cells = read_shards(client, keys, cells=True)
    index = _read_index_shards(client, keys)
    return [{**shard, **{CELL + name: n for name, n in cell.items()},
             **{INDEX + _text(entry): 1 for entry in entries}}
            for shard, cell, entries in zip(read_shards(client, keys), cells, index,
                                            strict=True)]  # fmt: skip


def _read_index_shards(client, keys: Keys) -> list[list]:
    """Every index shard's entries, shard 0 first (the walk's comparison only)."""
    return read_each_shard(client, keys.index, lambda pipe, name: pipe.zrange(name, 0, -1))


def read_each_shard(client, name_of, command) -> list:
    """``command(pipe, name)``'s reply for every shard's key (``name_of(shard)``), shard 0
    first, pipelined (per master on a Cluster)."""
    names = [name_of(shard) for shard in range(shard_count(is_clustered(client)))]
    if is_clustered(client):
        try:
            return _read_per_node(client, names, command)
        except redis.exceptions.RedisError:  # slots moving (a reshard): the cluster pipeline
            pass
    out: list = []
    for at in range(0, len(names), _SHARDS_PER_READ):
        with client.pipeline(transaction=False) as pipe:
            for name in names[at : at + _SHARDS_PER_READ]:
                command(pipe, name)
            out += pipe.execute()
    return out


def repair(client, keys: Keys, check: Check) -> int:
    """Rewrite every shard that differs to the walk's sums (one transaction per shard: DEL,
    then HSET or ZADD, of its facts, day cells and index keys). Only for a quiet namespace
    (the workers stopped): a write between the walk and this would be overwritten.
    Returns how many shards were rewritten."""
    shards = sorted({shard for shard, *_ in check.differences()})
    for shard in shards:
        counts, cells, entries = split(check.expected[shard])
        with client.pipeline(transaction=True) as pipe:
            for name, fields in ((keys.facts(shard), counts), (keys.cells(shard), cells)):
                pipe.delete(name)
                if fields:
                    pipe.hset(name, mapping=fields)
            pipe.delete(keys.index(shard))
            if entries:
                pipe.zadd(keys.index(shard), dict.fromkeys(entries, 0))
            pipe.execute()
    return len(shards)

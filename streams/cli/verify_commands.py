"""`rtba verify`: the population facts against a walk over every stored state
(streams.state.facts; docs/population.md, "Population facts")."""

from __future__ import annotations

import click

from streams.cli.common import json_option, print_json, require_redis, settings
from streams.errors import RtbaError

# Differing fields listed at most (all of them are counted).
SHOWN = 20

EQUAL, DIFFERENT, MOVED = 0, 1, 2


@click.command()
@click.option(
    "--repair",
    is_flag=True,
    help="rewrite the differing shards from the walk (stop the workers first)",
)
@json_option
def verify(repair, as_json) -> int:
    """Recompute the population facts by a walk and compare them with the stored ones.

    Reads every customer's state (the only command that walks the population), sums
    what each adds to the facts (segment, cluster and audience sizes, the sums behind
    the means, the RFM histograms), to the day and spend cells the churn refit fits on
    (``cell:<x>:<first day>:<last day>``, ``cell:gg:<x>:<mean>``) and to the member and
    ranking index (``idx:`` entries), and lists each field that differs, shard by shard.
    Exit code 0 when they are equal, 1 when some differ, 2 when the facts changed during
    the walk (workers writing: run it again on a quiet system). --repair rewrites the
    differing shards from the walk, for a namespace kept by an rtba without facts (an
    upgrade), and marks the spend cells whole: stop the workers first.

    \b
    Examples:
      rtba verify
      rtba verify --json
      rtba verify --repair      # after an upgrade, workers stopped
    """
    chosen = settings()
    require_redis(chosen)
    from streams.state import facts
    from streams.state.claims import mark_whole
    from streams.state.keys import Keys
    from streams.state.state_codec import CorruptState
    from streams.state.store import connect

    client = connect(chosen.redis_url, **chosen.redis_options())
    keys = Keys(chosen.namespace)
    try:
        check = facts.recompute(client, keys, facts.namespace_days(client, keys, chosen.days()))
        differences = check.differences()
        repaired = 0
        if repair and differences and not check.moved:
            repaired = facts.repair(client, keys, check)
        if repair and not check.moved:  # every cell and index entry as the walk has it: whole
            mark_whole(client, chosen.namespace)
    except CorruptState as exc:
        raise RtbaError(f"{exc}: the walk cannot add it up (`rtba erase` the customer, or "
                        "replay the events into a fresh namespace)") from None  # fmt: skip
    finally:
        client.close()
    code = MOVED if check.moved else DIFFERENT if differences and not repaired else EQUAL
    report = {
        "customers": check.customers,
        "shards": len(check.expected),
        "equal": not differences,
        "moved": check.moved,
        "different": len(differences),
        "differences": [
            dict(shard=shard, key=_key(keys, shard, name), field=name, expected=want, stored=got)
            for shard, name, want, got in differences[:SHOWN]
        ],
        "repaired_shards": repaired,
    }
    if as_json:
        print_json(report)
    else:
        click.echo(_text(report))
    return code


def _key(keys, shard: int, field: str) -> str:
    """The key a differing field lives in: the day cells' (``cell:`` fields), the index's
    (``idx:``) or the facts'."""
    from streams.state.facts import CELL, INDEX

    if field.startswith(CELL):
        return keys.cells(shard)
    return keys.index(shard) if field.startswith(INDEX) else keys.facts(shard)


def _text(report: dict) -> str:
    walked = f"{report['customers']:,} customers walked, {report['shards']:,} shards"
    if report["moved"]:
        return (f"rtba verify: {walked}; the facts changed during the walk (workers are "
                "writing): run it again on a quiet system")  # fmt: skip
    if report["equal"]:
        return f"rtba verify: {walked}: the facts equal the walk"
    lines = [f"rtba verify: {walked}: {report['different']:,} fields differ"]
    for d in report["differences"]:
        lines.append(f"  shard {d['shard']} ({d['key']})  {d['field']}: expected "
                     f"{d['expected']:,}, stored {d['stored']:,}")  # fmt: skip
    if report["different"] > len(report["differences"]):
        lines.append(f"  ... and {report['different'] - len(report['differences']):,} more")
    if report["repaired_shards"]:
        lines.append(f"repaired: {report['repaired_shards']:,} shards rewritten from the walk")
    return "\n".join(lines)


COMMANDS = [verify]

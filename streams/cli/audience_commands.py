"""`rtba audience`: put audience definitions in force, and read sizes and members
(docs/audiences.md)."""

from __future__ import annotations

import csv
import sys

import click

from streams.cli.common import json_option, log, print_json, require_redis, settings
from streams.errors import ConfigError


@click.group()
def audience() -> None:
    """Live audiences: who is in them, as events and event time flow.

    \b
    Examples:
      rtba audience apply --example     # the holiday-promotion set
      rtba audience list
      rtba audience members gift-browsers --limit 20
      rtba audience export gift-browsers --output gift-browsers.csv
    """


def _client():
    from streams.state.keys import Keys
    from streams.state.store import connect

    chosen = settings()
    require_redis(chosen)
    return connect(chosen.redis_url, **chosen.redis_options()), Keys(chosen.namespace)


@audience.command()
@click.argument("path", type=click.Path(dir_okay=False), required=False)
@click.option("--example", is_flag=True,
              help="the holiday-promotion set rtba ships (docs/audiences.md)")  # fmt: skip
@click.option("--check", is_flag=True, help="only validate the file; put nothing in force")
@json_option
def apply(path, example, check, as_json) -> int:
    """Put the definitions in PATH (JSON) in force.

    Workers evaluate with them from their next batch; the leader backfills every other
    customer in the background (`rtba audience list` shows how far). Applying the same
    definitions again does nothing.

    \b
    Examples:
      rtba audience apply my-audiences.json --check
      rtba audience apply my-audiences.json
      rtba audience apply --example
    """
    from streams.audiences.definitions import EXAMPLE, DefinitionError, load

    if bool(path) == example:
        raise click.UsageError("name a definition file, or use --example")
    path = path or str(EXAMPLE)
    try:
        audiences = load(path)
    except DefinitionError as e:
        raise ConfigError(str(e)) from None
    report = {"path": path, "audiences": [a.id for a in audiences.audiences],
              "digest": audiences.digest}  # fmt: skip
    if not check:
        from streams.state.store import publish_audiences, read_audiences

        client, keys = _client()
        current, version = read_audiences(client, keys)
        if current is not None and current.digest == audiences.digest:
            report.update(version=version, changed=False)
        else:
            report.update(version=publish_audiences(client, keys, audiences), changed=True)
    if as_json:
        print_json(report)
    elif check:
        log(f"rtba audience: {path}: {len(audiences.audiences)} audiences, valid")
    elif report["changed"]:
        log(
            f"rtba audience: {len(audiences.audiences)} audiences in force as version "
            f"{report['version']}; existing customers are backfilled in the background"
        )
    else:
        log(f"rtba audience: these definitions are already in force (version {report['version']})")
    return 0


@audience.command(name="list")
@json_option
def list_(as_json) -> int:
    """Defined audiences, their sizes and the backfill's progress.

    \b
    Examples:
      rtba audience list
      rtba audience list --json
    """
    from streams.read.audiences import audience_rows
    from streams.read.views import table

    client, keys = _client()
    rows = audience_rows(client, keys)
    if as_json:
        print_json(rows)
        return 0
    if not rows["audiences"]:
        log("rtba audience: no audiences defined; `rtba audience apply FILE` defines them")
        return 0
    click.echo(table([[r["id"], str(r["members"]), r["name"]] for r in rows["audiences"]],
                     ["audience", "members", "name"]))  # fmt: skip
    click.echo(_backfill_line(rows["backfill"]))
    return 0


def _backfill_line(backfill: dict) -> str:
    state, version = backfill["state"], backfill["version"]
    if state == "done":
        return f"definitions v{version}; backfill done ({backfill['total']} customers)"
    if state == "running":
        done, total = backfill["done"], backfill["total"]
        share = f"{100 * done / total:.0f}%" if total else "-"
        return f"definitions v{version}; backfill running: {done} of {total} customers ({share})"
    return f"definitions v{version}; backfill waiting for the leader worker"


@audience.command()
@click.argument("audience_id")
@json_option
def show(audience_id, as_json) -> int:
    """One audience's definition and size. Exit code 1 for an audience not defined.

    \b
    Examples:
      rtba audience show gift-browsers
    """
    import json

    from streams.read.audiences import audience_detail

    client, keys = _client()
    detail = audience_detail(client, keys, audience_id)
    if as_json:
        print_json(detail)
    else:
        click.echo(f"{detail['id']}: {detail['name']} ({detail['members']} members)")
        if detail.get("description"):
            click.echo(detail["description"])
        click.echo(json.dumps(detail["when"], indent=2))
        click.echo(_backfill_line(detail["backfill"]))
    return 0


@audience.command()
@click.argument("audience_id")
@click.option(
    "--limit",
    type=click.IntRange(1, 100_000),
    default=100,
    show_default=True,
    help="at most this many members",
)
@click.option("--offset", type=click.IntRange(0), default=0, help="skip this many first")
@json_option
def members(audience_id, limit, offset, as_json) -> int:
    """An audience's members in the order they entered (event time), then by id.

    \b
    Examples:
      rtba audience members gift-browsers --limit 20
      rtba audience members cart-abandoners --json
    """
    from streams.read.audiences import member_rows

    client, keys = _client()
    for row in member_rows(client, keys, audience_id, offset, limit):
        if as_json:
            print_json(row)
        else:
            click.echo(f"{row['customer_id']}\t{row['entered']}")
    return 0


@audience.command()
@click.argument("audience_id")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True),
              help="write the CSV here (default: stdout)")  # fmt: skip
def export(audience_id, output) -> int:
    """Every member of an audience as CSV: customer_id, entered_at.

    \b
    Examples:
      rtba audience export gift-browsers > gift-browsers.csv
      rtba audience export lapsed-loyals --output lapsed.csv
    """
    from streams.read.audiences import member_rows

    client, keys = _client()
    rows = member_rows(client, keys, audience_id)
    try:
        out = open(output, "w", newline="") if output else sys.stdout  # noqa: SIM115
    except OSError as e:
        raise ConfigError(f"cannot write {output}: {e.strerror or e}") from None
    try:
        writer = csv.writer(out)
        writer.writerow(["customer_id", "entered_at"])
        writer.writerows([r["customer_id"], r["entered"]] for r in rows)
    finally:
        if output:
            out.close()
    if output:
        log(f"rtba audience: {len(rows)} members of {audience_id} written to {output}")
    return 0


COMMANDS = [audience]

"""Commands that read what the pipeline keeps in Redis: profile, segments, members, stats,
churn fit, reset."""

from __future__ import annotations

import time
from collections.abc import Iterator

import click

from streams.cli.common import ISO_TIME, json_option, log, print_json, require_redis, settings, when
from streams.errors import NotReady


class Reader:
    """The settings, the stack check and a StateReader, for one command."""

    def __init__(self):
        self.settings = settings()
        require_redis(self.settings)  # before the heavy imports: a stack down answers at once
        from streams.read.reader import StateReader

        self.state = StateReader(self.settings)
        self.client, self.keys = self.state.client, self.state.keys
        self.models = self.state.models()

    def as_of(self, given: int | None) -> int:
        return self.state.as_of(given)

    def states(self, ids: list[str]):
        return self.state.states(ids)

    def everyone(self) -> Iterator:
        return self.state.everyone()

    def profile(self, state, as_of_ms: int) -> dict:
        return self.state.profile(state, as_of_ms, self.models)

    def indexed(self, prefix: str, as_of_ms: int, limit: int, after: str | None):
        return self.state.indexed(prefix, as_of_ms, limit, after)


@click.command()
@click.argument("customer_ids", nargs=-1)
@click.option("--all", "everyone", is_flag=True, help="every customer, one after another")
@click.option(
    "--as-of", type=ISO_TIME, help="the time the profile is seen at (default: the watermark)"
)
@json_option
def profile(customer_ids, everyone, as_of, as_json) -> int:
    """Customer profiles.

    RFM figures and segment, cluster, churn risk, expected purchases and CLV. Exit code
    1 when an id has no state.

    \b
    Examples:
      rtba profile c000001 c000002
      rtba profile --all --json | head
      rtba profile c000001 --as-of 2026-12-24
    """
    if not everyone and not customer_ids:
        raise click.UsageError("name customer ids, or use --all")
    reader = Reader()
    from streams.privacy import customer_refs
    from streams.read.views import profile_text

    moment = reader.as_of(as_of)
    # given ids as stored (NFC; their pseudonyms when RTBA_PSEUDONYM_KEY is set), after
    # checking the key is the namespace's: another one would make everyone "not found"
    ref = customer_refs(reader.settings, reader.client)
    stored = {ref(c): c for c in customer_ids}
    states = reader.everyone() if everyone else reader.states(list(stored))
    found = set()
    for state in states:
        found.add(stored.get(state.customer_id, state.customer_id))
        row = reader.profile(state, moment)
        if as_json:
            print_json(row)
        else:
            click.echo(profile_text(row))
    missing = [c for c in dict.fromkeys(customer_ids) if c not in found]
    for customer in missing:
        log(f"rtba profile: no customer {customer!r} in namespace {reader.settings.namespace!r}")
    return 1 if missing else 0


@click.command()
@click.option(
    "--as-of",
    type=ISO_TIME,
    help="mean recency as of this time (default: the watermark); sizes are always as of "
    "each customer's last evaluation",
)
@json_option
def segments(as_of, as_json) -> None:
    """Segment and cluster sizes and profiles.

    RFM segments, clusters with their labels, and (with --json) the models in force.
    Read from the population facts the workers keep: as fast at 10M customers as at 10.

    \b
    Examples:
      rtba segments
      rtba segments --json | jq '.rfm[] | select(.customers > 0)'
    """
    reader = Reader()
    from streams.read.views import table
    from streams.state.store import model_status

    moment = reader.as_of(as_of)
    clusters, rfm = reader.models.clusters, reader.models.rfm
    summary = reader.state.summary(moment, reader.models)
    summary["cluster_snapshot"] = clusters.version if clusters else None
    summary["models"] = model_status(reader.client, reader.keys, int(time.time() * 1000))
    summary["cluster_events"] = clusters.events if clusters else []  # born or died at it
    summary["rfm_edges"] = {
        "recency_days": rfm.recency_edges,
        "recency_cut_dates": rfm.recency_cut_dates,  # adaptive (S10): days is None
        "frequency": rfm.frequency_edges,
        "monetary": rfm.monetary_edges,
    }
    if as_json:
        print_json(summary)
        return
    click.echo(
        f"as of {when(moment)}: {summary['customers']:,} customers "
        f"({summary['without_purchase']:,} without a purchase)\n"
    )
    if as_of is not None:  # the sizes cannot move with it: say so once, on stderr
        log("rtba segments: --as-of moves the mean recency only; sizes are each customer's "
            f"segment at its last evaluation (watermark {when(reader.as_of(None))})")  # fmt: skip
    rows = [
        [
            r["segment"],
            f"{r['customers']:,}",
            f"{r['mean_recency_days']:.0f}",
            f"{r['mean_frequency']:.1f}",
            f"{r['mean_monetary']:,.2f}",
        ]
        for r in summary["rfm"]
        if r["customers"]
    ]
    click.echo(table(rows, ["segment", "customers", "recency (days)", "purchases", "spent"]))
    if summary["clusters"]:
        rows = [
            [str(r["id"]), f"{r['customers']:,}", r["label"] or "(gone)"]
            for r in summary["clusters"]
        ]
        click.echo("\n" + table(rows, ["cluster", "customers", "label"]))


@click.command()
@click.option("--segment", help="an RFM segment name, e.g. 'At Risk'")
@click.option("--cluster", type=int, help="a cluster id (see `rtba segments`)")
@click.option("--as-of", type=ISO_TIME, help="segments as of this time (default: the watermark)")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="at most this many customers",
)
@json_option
def members(segment, cluster, as_of, limit, as_json) -> None:
    """The customers in a segment or a cluster.

    In customer-id order: each customer's segment and cluster as last evaluated (what
    `rtba segments` counts), read from the index; with --as-of, those of that time, by a
    walk over every customer.

    \b
    Examples:
      rtba members --segment "Can't Lose Them"
      rtba members --cluster 2 --limit 1000 --json
    """
    from online_models.rfm import SEGMENTS

    if (segment is None) == (cluster is None):
        raise click.UsageError("give one of --segment or --cluster")
    if segment is not None and segment not in SEGMENTS:
        raise click.BadParameter(
            f"{segment!r}; expected one of: {', '.join(SEGMENTS)}", param_hint="--segment"
        )
    reader = Reader()
    moment = reader.as_of(as_of)
    shown = 0
    for row in _member_rows(reader, segment, cluster, as_of, moment, limit):
        if as_json:
            print_json(
                {
                    k: row[k]
                    for k in (
                        "customer_id",
                        "segment",
                        "cluster",
                        "churn_risk",
                        "monetary",
                        "recency_days",
                    )
                }
            )
        else:
            risk = "-" if row["churn_risk"] is None else f"{row['churn_risk']:.2f}"
            click.echo(f"{row['customer_id']}  {row['segment'] or '-'}  churn risk {risk}")
        shown += 1
        if shown >= limit:
            break


def _member_rows(reader, segment, cluster, as_of, moment, limit):
    """The members' profiles: the stored memberships from the index a page at a time (no
    walk), or with --as-of those of that moment, by a walk."""
    from streams.read import ranking

    if as_of is None:
        prefix = ranking.segment_prefix(segment) if segment is not None else (
            ranking.cluster_prefix(cluster))  # fmt: skip
        after, left = None, limit
        while left > 0:
            rows, after = reader.indexed(prefix, moment, min(left, 1000), after)
            yield from rows
            left -= len(rows)
            if after is None:
                return
        return
    for state in reader.everyone():
        row = reader.profile(state, moment)
        if (row["segment"] == segment) if segment is not None else (
                row["cluster"]["id"] == cluster):  # fmt: skip
            yield row


@click.command()
@json_option
def stats(as_json) -> None:
    """Worker counters and event-time marks.

    Events taken, applied, duplicates, DLQ by reason; the watermark.

    \b
    Examples:
      rtba stats
      rtba stats --json
    """
    reader = Reader()
    from streams.read.views import table
    from streams.state.store import model_status, read_marks, read_stats

    marks = read_marks(reader.client, reader.keys)
    counters = read_stats(reader.client, reader.keys)
    churn_model = model_status(reader.client, reader.keys, int(time.time() * 1000))["churn"]
    if as_json:
        print_json(
            {
                "counters": counters,
                "max_event_ts": marks.max_event_ts,
                "partition_marks": marks.partitions,
                "watermark": marks.watermark(),
                "churn_model": churn_model,
            }
        )
        return
    if not counters:
        click.echo(f"namespace {reader.settings.namespace!r}: no events counted yet")
    else:
        click.echo(
            table([[k, f"{v:,}"] for k, v in sorted(counters.items())], ["counter", "value"])
        )
    click.echo(
        f"\nwatermark        {when(marks.watermark())}\nlatest event     {when(marks.max_event_ts)}"
    )
    click.echo(churn_health_line(churn_model))


def churn_health_line(status: dict) -> str:
    """The churn model in force and, if the latest refit was not put in force or its spend
    model was dropped, why (fit health, docs/decisions.md S9)."""
    line = f"churn model      v{status['version']}" if status["version"] else (
        "churn model      none in force")  # fmt: skip
    if status.get("last_error"):
        line += f"; last refit: {status['last_error']['reason']}"
    if status.get("spend_error"):
        line += f"; {status['spend_error']}"
    return line


@click.group()
def churn() -> None:
    """The churn model (MBG/NBD or BG/NBD, with Gamma-Gamma CLV).

    \b
    Examples:
      rtba churn fit
    """


@churn.command("fit")
@click.option(
    "--model",
    type=click.Choice(["bgnbd", "mbgnbd"]),
    default=None,
    help="default: RTBA_CHURN_MODEL (mbgnbd)",
)
@click.option("--as-of", type=ISO_TIME, help="fit as of this time (default: the watermark)")
@json_option
def churn_fit(model, as_of, as_json) -> None:
    """Fit the churn model on every customer now and publish it (workers pick it up).

    \b
    Examples:
      rtba churn fit
      rtba churn fit --model bgnbd --json
    """
    chosen = settings()
    require_redis(chosen)
    from streams.processing.schemas import iso
    from streams.processing.worker import RefitSkipped, refit_churn

    log(
        f"rtba churn fit: fitting {model or chosen.churn_model} on everyone's day cells, "
        "Gamma-Gamma on the spend cells where they are whole, else on a sample of "
        f"{chosen.churn_fit_sample:,} customers (RTBA_CHURN_FIT_SAMPLE) ..."
    )
    try:
        fitted = refit_churn(chosen, as_of, model)
    except RefitSkipped as exc:
        raise NotReady(f"not fitted: {exc}") from None
    fitted["as_of"] = iso(fitted.pop("as_of_ms"))
    if as_json:
        print_json(fitted)
        return
    p = fitted["params"]
    click.echo(
        f"{fitted['model']} v{fitted['version']} on {fitted['customers']:,} customers "
        f"({_fitted_on(fitted)}) as of "
        f"{fitted['as_of']}: r={p['r']:.4g} alpha={p['alpha']:.4g} a={p['a']:.4g} "
        f"b={p['b']:.4g}  log-likelihood {fitted['log_likelihood']:.2f}"
    )
    if not fitted["published"]:  # the same parameters: nothing to put in force
        click.echo(f"the same model as v{fitted['version']} in force: nothing published")
    elif fitted.get("rescheduled_by") == "cells":
        click.echo(f"{fitted['cell_entries']:,} day-cell wake-ups planned: each cell's customers "
                   "are re-scored when its earliest crossing comes (none read now)")  # fmt: skip
    else:
        click.echo(f"{fitted['rescheduled']:,} customers re-scheduled by a walk (`rtba "
                   "verify --repair`, workers stopped, lets the next model wake them by "
                   "day cell)")  # fmt: skip
    if fitted.get("spend_error"):  # published, but without CLV: say why
        click.echo(fitted["spend_error"])


def _fitted_on(fitted: dict) -> str:
    if fitted.get("fitted_on") == "day cells":
        spend = "spend cells" if fitted.get("spend_fitted_on") == "spend cells" else "the sample"
        return f"{fitted['cells']:,} day cells; Gamma-Gamma on {spend}"
    if fitted.get("fitted_on") == "everyone":
        return "every customer's exact purchase times"
    return "the sample: no day cell kept yet (`rtba verify --repair`, workers stopped)"


COMMANDS = [profile, segments, members, stats, churn]

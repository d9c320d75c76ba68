"""The `rtba` command line. With --json, stdout carries JSON only; logs and
progress go to stderr."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from streams.settings import Settings


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


# -- stack ---------------------------------------------------------------------------


def cmd_stack(args, settings: Settings) -> int:
    from streams import stack

    try:
        if args.action == "install":
            stack.install()
            result = {
                "kafka_jars": str(stack.kafka_jars()),
                "redis_server": stack.ensure_redis_server(),
            }
        elif args.action == "up":
            if args.redis_cluster:
                settings = dataclasses.replace(settings, redis_cluster=True)
            result = stack.up(settings)
        elif args.action == "down":
            result = stack.down(settings)
        else:
            result = stack.status(settings)
    except stack.StackError as exc:
        _log(f"rtba stack {args.action}: {exc}")
        return 2
    if args.json:
        _print_json(result)
    else:
        for key, value in result.items():
            print(f"{key:16} {value}")
    return 0


# -- worker --------------------------------------------------------------------------


def cmd_worker(args, settings: Settings) -> int:
    from streams.app import create_app
    from streams.logs import Worker
    from streams.store import connect, durability_warning
    from streams.topics import ensure_topics

    ensure_topics(settings)
    client = connect(settings.redis_url)
    if warning := durability_warning(client):
        _log(f"warning: {warning}")
    client.close()
    app = create_app(settings).app
    _log(
        f"rtba worker: {settings.events_topic} on {settings.kafka_bootstrap}, {settings.redis_url}"
    )
    Worker(app, loglevel=args.loglevel, quiet=True).execute_from_commandline()
    return 0


# -- producers -----------------------------------------------------------------------


def cmd_produce(args, settings: Settings) -> int:
    from producers import synthetic
    from producers.kafka import make_producer, send_watermark
    from streams.topics import ensure_topics

    ensure_topics(settings)
    end_ms = int(time.time() * 1000)
    days = args.days or min(
        3 * 365, max(30, args.events / synthetic.expected_events_per_day(args.customers))
    )
    start_ms = end_ms - int(days * synthetic.MS_PER_DAY)
    if args.truth:
        truth = synthetic.personas(args.seed, args.customers)
        Path(args.truth).write_text(
            "customer_id,persona\n" + "".join(f"{c},{p}\n" for c, p in truth.items())
        )
    producer = make_producer(settings.kafka_bootstrap)
    sent = 0
    last_ts = None
    started = time.monotonic()
    for event in synthetic.generate(args.seed, args.customers, args.events, start_ms, end_ms):
        producer.send(settings.events_topic, key=event["customer_id"], value=event)
        sent += 1
        last_ts = event["ts"]
        if sent % 1000 == 0:
            send_watermark(producer, settings.events_topic, last_ts)
            _log(f"produced {sent} events (event time {last_ts})")
        if args.rate:
            ahead = sent / args.rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    if last_ts:
        send_watermark(producer, settings.events_topic, last_ts)
    producer.flush()
    producer.close()
    _log(f"produced {sent} events over {days:.0f} days of event time")
    return 0


def cmd_replay(args, settings: Settings) -> int:
    from producers.kafka import make_producer, send_all, send_watermark
    from producers.replay import ReplaySpec, end_watermark, read_file
    from streams.topics import ensure_topics

    spec = ReplaySpec(
        customer_col=args.customer_col,
        time_col=args.time_col,
        amount_col=args.amount_col,
        time_format=args.time_format,
        sep=args.sep,
        header=not args.no_header,
    )
    try:
        events, problems = read_file(Path(args.file), spec)
    except (OSError, ValueError) as exc:
        _log(f"rtba replay: {exc}")
        return 2
    for problem in problems[:20]:
        _log(f"rtba replay: unreadable row sent to the DLQ path: {problem}")
    end = end_watermark(events, args.end_time)
    ensure_topics(settings)
    producer = make_producer(settings.kafka_bootstrap)
    sent = send_all(producer, settings.events_topic, events)
    if end:
        send_watermark(producer, settings.events_topic, end)
    producer.close()
    _log(f"rtba replay: sent {sent} purchases ({len(problems)} unreadable), watermark {end}")
    return 0


# -- reading state -------------------------------------------------------------------


def _as_of_ms(args, settings: Settings, client) -> int:
    from streams.keys import Keys
    from streams.schemas import to_epoch_ms
    from streams.store import read_marks

    if getattr(args, "as_of", None):
        return to_epoch_ms(args.as_of)
    wm = read_marks(client, Keys(settings.namespace)).watermark()
    return wm if wm is not None else int(time.time() * 1000)


def cmd_profile(args, settings: Settings) -> int:
    from streams.keys import Keys
    from streams.store import all_customer_ids, connect, read_states
    from streams.views import profile
    from streams.worker import current_models

    if not args.all and not args.customer_ids:
        _log("rtba profile: name customer ids or use --all")
        return 2
    client = connect(settings.redis_url)
    keys = Keys(settings.namespace)
    as_of = _as_of_ms(args, settings, client)
    ids = all_customer_ids(client, keys) if args.all else args.customer_ids
    states = read_states(client, keys, ids)
    found = {s.customer_id for s in states}
    for missing in [i for i in ids if i not in found]:
        _log(f"rtba profile: no state for customer {missing!r}")
    models = current_models(client, keys, settings)
    for state in states:
        row = profile(state, as_of, models.rfm, models.churn, models.clusters)
        if args.json:
            _print_json(row)
        else:
            print(
                f"{row['customer_id']:>12}  {row['segment'] or '-':20} purchases={row['purchases']}"
                f" monetary={row['monetary']:.2f} recency_days={row['recency_days']}"
            )
    return 0 if len(found) == len(set(ids)) else 1


def cmd_churn(args, settings: Settings) -> int:
    from streams.schemas import iso, to_epoch_ms
    from streams.worker import RefitSkipped, refit_churn

    as_of = to_epoch_ms(args.as_of) if args.as_of else None
    try:
        fitted = refit_churn(settings, as_of, args.model)
    except RefitSkipped as exc:
        _log(f"rtba churn fit: not fitted: {exc}")
        return 1
    fitted["as_of"] = iso(fitted.pop("as_of_ms"))
    if args.json:
        _print_json(fitted)
    else:
        p = fitted["params"]
        print(f"{fitted['model']} v{fitted['version']} on {fitted['customers']} customers as of "
              f"{fitted['as_of']}: r={p['r']:.4g} alpha={p['alpha']:.4g} a={p['a']:.4g} "
              f"b={p['b']:.4g}  log-likelihood {fitted['log_likelihood']:.2f}")  # fmt: skip
    return 0


def cmd_segments(args, settings: Settings) -> int:
    from streams.keys import Keys
    from streams.store import all_customer_ids, connect, model_status, read_states
    from streams.views import segment_summary
    from streams.worker import current_models

    client = connect(settings.redis_url)
    keys = Keys(settings.namespace)
    as_of = _as_of_ms(args, settings, client)
    models = current_models(client, keys, settings)
    rfm = models.rfm
    states = read_states(client, keys, all_customer_ids(client, keys))
    summary = segment_summary(states, as_of, rfm, models.clusters)
    summary["cluster_snapshot"] = models.clusters.version if models.clusters else None
    summary["models"] = model_status(client, keys, int(time.time() * 1000))
    # clusters that appeared or died at that snapshot, versus the one before
    summary["cluster_events"] = models.clusters.events if models.clusters else []
    summary["rfm_edges"] = {
        "recency_days": rfm.recency_edges,
        "frequency": rfm.frequency_edges,
        "monetary": rfm.monetary_edges,
    }
    if args.json:
        _print_json(summary)
        return 0
    print(f"as of {summary['as_of']}: {summary['customers']} customers "
          f"({summary['without_purchase']} without a purchase)")  # fmt: skip
    for row in summary["rfm"]:
        if row["customers"]:
            print(f"  {row['segment']:20} {row['customers']:>8}  "
                  f"R={row['mean_recency_days']:.0f}d F={row['mean_frequency']:.1f} "
                  f"M={row['mean_monetary']:.2f}")  # fmt: skip
    for row in summary["clusters"]:
        print(f"  cluster {row['id']:<3} {row['customers']:>8}  {row['label']}")
    return 0


def cmd_stats(args, settings: Settings) -> int:
    from streams.keys import Keys
    from streams.store import connect, read_marks, read_stats

    client = connect(settings.redis_url)
    keys = Keys(settings.namespace)
    marks = read_marks(client, keys)
    out = {
        "counters": read_stats(client, keys),
        "max_event_ts": marks.max_event_ts,
        "partition_marks": marks.partitions,
        "watermark": marks.watermark(),
    }
    if args.json:
        _print_json(out)
    else:
        print(json.dumps(out, indent=2))
    return 0


def cmd_demo(args, settings: Settings) -> int:
    from streams.demo import run_demo

    return run_demo(settings, args)


def cmd_bench(argv: list[str]) -> int:
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "benchmarks" / "pipeline.py").exists():  # an editable install
        sys.path.insert(0, str(checkout))
    try:
        from benchmarks import pipeline
    except ImportError:
        _log("rtba bench: run it from an rtba checkout (the benchmarks are not installed)")
        return 2
    return pipeline.main(argv)


# -- parser --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rtba", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("stack", help="local real Kafka (KRaft) and Redis on loopback")
    s.add_argument("action", choices=["up", "down", "status", "install"])
    s.add_argument("--json", action="store_true")
    s.add_argument("--redis-cluster", action="store_true",
                   help="up: a three-master Redis Cluster instead of one redis-server "
                        "(also RTBA_REDIS_CLUSTER=1)")  # fmt: skip
    s.set_defaults(func=cmd_stack)

    s = sub.add_parser("worker", help="run a Faust worker (any number may run)")
    s.add_argument("-l", "--loglevel", default="warn",
                   choices=["crit", "error", "warn", "info", "debug"])  # fmt: skip
    s.set_defaults(func=cmd_worker)

    s = sub.add_parser("produce", help="produce events")
    s.add_argument("source", choices=["synthetic"])
    s.add_argument("--customers", type=int, required=True)
    s.add_argument("--events", type=int, required=True)
    s.add_argument(
        "--rate", type=float, default=0, help="events per second (0 = as fast as possible)"
    )
    s.add_argument("--seed", type=int, default=42)
    s.add_argument(
        "--days", type=float, default=None, help="span of event time (default: fits --events)"
    )
    s.add_argument("--truth", help="write customer_id,persona CSV here")
    s.set_defaults(func=cmd_produce)

    s = sub.add_parser("replay", help="replay a purchase file in time order")
    s.add_argument("file")
    s.add_argument("--customer-col", required=True)
    s.add_argument("--time-col", required=True)
    s.add_argument("--amount-col", required=True)
    s.add_argument("--time-format")
    s.add_argument("--sep", default=",", help="a delimiter, 'tab' or 'whitespace'")
    s.add_argument("--no-header", action="store_true")
    s.add_argument("--end-time", help="ISO time of the final watermark (default: last row)")
    s.set_defaults(func=cmd_replay)

    s = sub.add_parser("profile", help="customer profiles")
    s.add_argument("customer_ids", nargs="*")
    s.add_argument("--all", action="store_true")
    s.add_argument("--as-of")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_profile)

    s = sub.add_parser("churn", help="churn model")
    s.add_argument("action", choices=["fit"])
    s.add_argument("--model", choices=["bgnbd", "mbgnbd"], default=None,
                   help="default: RTBA_CHURN_MODEL (mbgnbd)")  # fmt: skip
    s.add_argument("--as-of", help="fit as of this time (default: the watermark)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_churn)

    s = sub.add_parser("segments", help="RFM segment sizes and profiles")
    s.add_argument("--as-of")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_segments)

    s = sub.add_parser("stats", help="worker counters and event-time marks")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_stats)

    # Listed for --help only: main() hands bench's arguments to benchmarks/pipeline.py.
    sub.add_parser("bench", help="the pipeline benchmark on the real stack (see "
                   "benchmarks/pipeline.py; arguments are passed on)")  # fmt: skip

    s = sub.add_parser("demo", help="stack, worker, synthetic producer, live segment changes")
    s.add_argument("--customers", type=int, default=300)
    s.add_argument("--events", type=int, default=200_000)
    s.add_argument("--rate", type=float, default=300)
    s.add_argument("--duration", type=float, default=0, help="stop after N seconds (0 = Ctrl-C)")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # its own options: benchmarks/pipeline.py parses them
        return cmd_bench(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args, Settings.from_env())
    except KeyboardInterrupt:  # Ctrl-C (or the demo's group-wide stop): quietly, as a shell does
        print("rtba: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

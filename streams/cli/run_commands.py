"""Commands that run the pipeline or feed it: worker, produce, replay, demo, bench."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from streams.cli.common import (
    ISO_TIME,
    log,
    require_free_port,
    require_kafka,
    require_stack,
    settings,
)
from streams.errors import ConfigError
from streams.settings import redacted


@click.command()
@click.option(
    "-l",
    "--loglevel",
    default="info",
    show_default=True,
    type=click.Choice(["crit", "error", "warn", "info", "debug"]),
    help="rtba's own log level (info: ready, progress every 30 s, slow steps); Kafka's and "
    "Faust's records show from warn up, all of them at debug",
)
def worker(loglevel: str) -> None:
    """Run a Faust worker.

    Events in, state in Redis, segment changes and churn alerts out. Any number may run; they
    share the partitions. Stops cleanly on Ctrl-C or SIGTERM.

    \b
    Examples:
      rtba worker
      RTBA_WORKER_ID=w1 rtba worker -l debug   # static membership: restarts keep partitions
    """
    chosen = settings()
    if chosen.metrics_port:  # a clash is known before anything starts
        require_free_port(chosen.metrics_host, chosen.metrics_port,
                          f"RTBA_METRICS_PORT={chosen.metrics_port}",
                          "give each worker on a host its own port")  # fmt: skip
    require_stack(chosen)  # before the heavy imports: a stack down answers at once
    from streams.privacy import claim_key
    from streams.state.claims import claim_segment_map, claim_whole
    from streams.state.keys import Keys
    from streams.state.store import connect, durability_warning, reshard_indexes
    from streams.state.timezone import claim_timezone

    client = connect(chosen.redis_url, **chosen.redis_options())
    try:
        # another pseudonym key (or none) than the namespace's would mix two customers'
        # ids: one line, exit 2, before Faust is even imported (streams.privacy)
        claim_key(chosen, client)
        # likewise another time zone or segment map than the namespace's
        # (streams.state.timezone, streams.state.claims)
        claim_timezone(chosen, client)
        claim_segment_map(chosen, client)
        claim_whole(client, chosen.namespace)  # whole from the first event on
        if moved := reshard_indexes(client, Keys(chosen.namespace)):
            log(f"moved {moved} due-index and outbox-index entries to their shards")
        if warning := durability_warning(client):
            log(f"warning: {warning}")
    finally:
        client.close()
    from streams.processing.app import create_app
    from streams.processing.logs import Worker, logging_config
    from streams.processing.topics import ensure_topics, events_partitions

    ensure_topics(chosen)
    held = events_partitions(chosen)
    if held and held != chosen.partitions:
        # The due-index shards go with the topic's partitions: a count that is not the
        # topic's own would leave some shards to nobody (or give some two workers).
        log(f"warning: {chosen.events_topic} has {held} partitions, RTBA_PARTITIONS says "
            f"{chosen.partitions}: going by the topic")  # fmt: skip
        chosen = chosen.model_copy(update={"partitions": held})
    pipeline = create_app(chosen)
    shown = redacted(chosen.redis_url)
    log(f"rtba worker: {chosen.events_topic} on {chosen.kafka_bootstrap}, {shown}")
    if chosen.metrics_port:
        from streams.processing.metrics import serve

        serve(pipeline.metrics.registry, chosen.metrics_host, chosen.metrics_port)
        log(f"metrics: http://{chosen.metrics_host}:{chosen.metrics_port}/metrics")
    Worker(
        pipeline.app, loglevel=loglevel, quiet=True, logging_config=logging_config(loglevel)
    ).execute_from_commandline()


def _progress(total: int, label: str):
    return click.progressbar(
        length=total, label=label, file=sys.stderr, show_eta=True, show_pos=True
    )


@click.command()
@click.argument("source", type=click.Choice(["synthetic"]))
@click.option("--customers", type=click.IntRange(min=1), required=True, help="how many customers")
@click.option("--events", type=click.IntRange(min=1), required=True, help="how many events")
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="events per second (0: as fast as possible)",
)
@click.option("--seed", type=int, default=42, show_default=True, help="same seed, same events")
@click.option(
    "--days",
    type=click.FloatRange(min=1),
    default=None,
    help="span of event time, ending now (default: fits --events)",
)
@click.option(
    "--truth",
    type=click.Path(dir_okay=False, writable=True),
    help="write customer_id,persona CSV here (the personas behind the events)",
)
def produce(source, customers, events, rate, seed, days, truth) -> None:
    """Produce synthetic events.

    Click, purchase and refund events from personas that buy, lapse and return, with
    watermarks.

    \b
    Examples:
      rtba produce synthetic --customers 1000 --events 100000 --rate 500
      rtba produce synthetic --customers 50 --events 2000 --truth personas.csv
    """
    from producers import synthetic
    from producers.kafka import make_producer, send_watermark
    from streams.processing.topics import ensure_topics

    chosen = settings()
    require_kafka(chosen)
    ensure_topics(chosen)
    end_ms = int(time.time() * 1000)
    days = days or min(3 * 365, max(30, events / synthetic.expected_events_per_day(customers)))
    start_ms = end_ms - int(days * synthetic.MS_PER_DAY)
    if truth:
        personas = synthetic.personas(seed, customers)
        Path(truth).write_text(
            "customer_id,persona\n" + "".join(f"{c},{p}\n" for c, p in personas.items())
        )
    producer = make_producer(chosen.kafka_bootstrap, **chosen.kafka_options())
    sent, last_ts, started = 0, None, time.monotonic()
    with _progress(events, "producing") as bar:
        for event in synthetic.generate(seed, customers, events, start_ms, end_ms):
            producer.send(chosen.events_topic, key=event["customer_id"], value=event)
            sent += 1
            last_ts = event["ts"]
            bar.update(1)
            if sent % 1000 == 0:
                send_watermark(producer, chosen.events_topic, last_ts)
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
    if last_ts:
        send_watermark(producer, chosen.events_topic, last_ts)
    producer.flush()
    producer.close()
    log(f"rtba produce: {sent} events over {days:.0f} days of event time to {chosen.events_topic}")


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option(
    "--customer-col", required=True, help="header name, or 0-based index with --no-header"
)
@click.option("--time-col", required=True, help="header name, or 0-based index with --no-header")
@click.option("--amount-col", required=True, help="header name, or 0-based index with --no-header")
@click.option("--time-format", help="strptime format, e.g. %Y%m%d (default: ISO or epoch ms)")
@click.option("--sep", default=",", show_default=True, help="a delimiter, 'tab' or 'whitespace'")
@click.option("--no-header", is_flag=True, help="the file has no header row")
@click.option(
    "--end-time", type=ISO_TIME, help="the final watermark (default: the last row's time)"
)
def replay(file, customer_col, time_col, amount_col, time_format, sep, no_header, end_time) -> None:
    """Replay a purchase file.

    In time order, then a final watermark. Ids come from each line, so replaying a file twice
    counts nothing twice; unreadable rows go to the DLQ.

    \b
    Examples:
      rtba replay docs/examples/purchases.csv --customer-col customer --time-col time \\
          --amount-col amount
      rtba replay CDNOW_master.txt --customer-col 0 --time-col 1 --amount-col 3 \\
          --time-format %Y%m%d --sep whitespace --no-header --end-time 1998-06-30
    """
    from producers.kafka import make_producer, send_watermark
    from producers.replay import ReplaySpec, end_watermark, read_file
    from streams.processing.schemas import iso
    from streams.processing.topics import ensure_topics

    spec = ReplaySpec(
        customer_col=customer_col,
        time_col=time_col,
        amount_col=amount_col,
        time_format=time_format,
        sep=sep,
        header=not no_header,
    )
    try:
        events, problems = read_file(Path(file), spec)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: {exc}") from None
    for problem in problems[:20]:
        log(f"rtba replay: unreadable row, sent on to the DLQ: {problem}")
    end = end_watermark(events, iso(end_time) if end_time is not None else None)
    chosen = settings()
    require_kafka(chosen)
    ensure_topics(chosen)
    producer = make_producer(chosen.kafka_bootstrap, **chosen.kafka_options())
    with _progress(len(events), "replaying") as bar:
        for event in events:  # an unreadable row may have no customer: unkeyed, to the DLQ
            producer.send(chosen.events_topic, key=event.get("customer_id"), value=event)
            bar.update(1)
    if end:
        send_watermark(producer, chosen.events_topic, end)
    producer.flush()
    producer.close()
    log(f"rtba replay: sent {len(events)} purchases ({len(problems)} unreadable), watermark {end}")


@click.command()
@click.option(
    "--customers",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="synthetic shoppers",
)
@click.option(
    "--events",
    type=click.IntRange(min=1),
    default=200_000,
    show_default=True,
    help="events to produce (then the demo keeps showing)",
)
@click.option(
    "--rate", type=click.FloatRange(min=1), default=300, show_default=True, help="events per second"
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=0,
    help="stop after N seconds (default: at Ctrl-C)",
)
@click.option(
    "--api-port",
    type=click.IntRange(1, 65535),
    default=8000,
    show_default=True,
    help="the dashboard's port on loopback (a free one if it is taken)",
)
def demo(customers, events, rate, duration, api_port) -> int:
    """Everything at once: stack, worker, producer, the API and dashboard, a live summary.

    \b
    Examples:
      rtba demo               # then open the dashboard address it prints
      rtba demo --customers 100 --duration 60
    """
    from streams.cli.demo import run_demo

    return run_demo(settings(), customers=customers, events=events, rate=rate, duration=duration,
                    api_port=api_port)  # fmt: skip


@click.command(
    context_settings={
        "ignore_unknown_options": True,
        "allow_extra_args": True,
        "help_option_names": [],
    }
)
@click.pass_context
def bench(ctx) -> int:
    """The benchmark harness on the real stack.

    benchmarks/pipeline.py; its own options: `rtba bench --help`.

    \b
    Examples:
      rtba bench --events 30000 --customers 3000 --runs 3
    """
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "benchmarks" / "pipeline.py").exists():  # an editable install
        sys.path.insert(0, str(checkout))
    try:
        from benchmarks import pipeline
    except ImportError:
        raise ConfigError(
            "run it from an rtba checkout (the benchmarks are not installed)"
        ) from None
    return pipeline.main(ctx.args)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8000,
    show_default=True,
    help="port to listen on",
)
def api(host, port) -> None:
    """Serve the read API and the dashboard.

    The dashboard is at /, the OpenAPI document at /openapi.json, Prometheus
    metrics at /metrics. Reads Redis (and the output topics, for the live feed): run as
    many as you like, apart from the workers. Beyond loopback it needs RTBA_API_TOKEN (or
    RTBA_API_TOKEN_FILE); with one, clients send Authorization: Bearer <token> and the
    dashboard is opened once as /#token=<token>. It answers only to loopback names, --host
    and RTBA_API_ALLOWED_HOSTS in the Host header; erasing needs RTBA_API_ADMIN_TOKEN.

    \b
    Examples:
      rtba api                # then open http://127.0.0.1:8000/
      rtba api --port 8080    # then: curl localhost:8080/customers/c000001
      RTBA_API_TOKEN_FILE=/run/secrets/token rtba api --host 0.0.0.0
    """
    require_free_port(host, port, f"--port {port}", "is another `rtba api` running?")
    chosen = settings()
    if host not in LOOPBACK and chosen.api_secret() is None:
        raise ConfigError(
            f"--host {host}: beyond loopback the API needs a bearer token; set "
            "RTBA_API_TOKEN (16+ characters) or RTBA_API_TOKEN_FILE"
        )
    require_stack(chosen, kafka=False)
    import uvicorn

    from streams.api.app import create_api

    guard = "bearer token required" if chosen.api_secret() else "no token: loopback only"
    log(f"rtba api: dashboard at http://{host}:{port}/, API at /openapi.json (namespace "
        f"{chosen.namespace}, {redacted(chosen.redis_url)}; {guard})")  # fmt: skip
    from streams.api.guard import allowed_hosts

    names = allowed_hosts(chosen.api_allowed_hosts or (), host)
    log(f"rtba api: answers to Host {', '.join(names)} (more: RTBA_API_ALLOWED_HOSTS); "
        + ("erase on (admin token)" if chosen.secret("api_admin_token")
           else "erase off (set RTBA_API_ADMIN_TOKEN)"))  # fmt: skip
    app = create_api(chosen, bind_host=host)  # --host joins the Host allow-list
    uvicorn.run(app, host=host, port=port, log_level="warning")


COMMANDS = [worker, produce, replay, demo, bench, api]

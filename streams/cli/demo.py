"""`rtba demo`: the stack, one worker, the synthetic producer, and a live summary a person
can follow: segment sizes, the example holiday audiences, event rate, the latest changes
and alerts with readable cluster labels. Each run has a namespace of its own; Ctrl-C or
SIGTERM stops everything it started and prints a closing summary."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter, deque
from pathlib import Path

from streams.cli.topic_commands import output_line
from streams.read.outputs import decoded, event_kind
from streams.settings import Settings, redacted

REDRAW_S = 1.0
LATEST = 6  # changes and alerts shown


def _spawn(env: dict, log: Path, *args: str) -> subprocess.Popen:
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _say(text: str, **kwargs) -> None:
    """Print, unless the terminal is gone (a hangup): the cleanup matters, not the words."""
    try:
        print(text, **kwargs)
    except OSError:
        pass


def _hung_up(signum, frame):
    """The terminal is gone: writes to it would fail half-way through the cleanup."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        os.dup2(devnull, fd)
    raise KeyboardInterrupt


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Feed:
    """The output topics from now on: counts by kind, the latest few of each."""

    def __init__(self, settings: Settings):
        from streams.read.outputs import output_consumer

        self.consumer = output_consumer(settings, settings.output_topics, from_start=False)
        self.counts: Counter[str] = Counter()
        self.changes: deque[dict] = deque(maxlen=LATEST)
        self.alerts: deque[dict] = deque(maxlen=LATEST)

    def poll(self, timeout_ms: int) -> None:
        for records in self.consumer.poll(timeout_ms=timeout_ms).values():
            for record in records:
                event = decoded(record.value)
                if event is None:  # a tombstone
                    continue
                kind = event_kind(event)
                self.counts[kind] += 1
                (self.alerts if kind == "churn" else self.changes).append(event)

    def close(self) -> None:
        self.consumer.close()


def snapshot(reader) -> dict:
    """What the screen shows from Redis: counters, segment, cluster and audience sizes."""
    from streams.read.audiences import audience_rows
    from streams.state.store import read_marks, read_stats

    watermark = read_marks(reader.client, reader.keys).watermark()
    summary = reader.summary(reader.as_of(watermark))
    audiences = audience_rows(reader.client, reader.keys)["audiences"]
    # the summary first: its "watermark" is ISO text, the screen's is epoch ms
    return {**summary, "stats": read_stats(reader.client, reader.keys), "watermark": watermark,
            "audiences": audiences}  # fmt: skip


def render(view: dict, feed_counts: dict, changes, alerts, header: str, rate: float) -> str:
    """The screen as text (pure: the demo test and a person read the same thing).

    >>> print(render({"stats": {"records": 1200, "dlq": 2}, "watermark": 0, "customers": 3,
    ...     "without_purchase": 1, "rfm": [{"segment": "Champions", "customers": 2},
    ...     {"segment": "Lost", "customers": 0}], "clusters": [{"id": 1, "label": "big baskets",
    ...     "customers": 2}], "audiences": [{"id": "gift-browsers", "members": 7}]},
    ...     {"rfm": 4, "audience": 9}, [], [], "rtba demo", 40.0))
    rtba demo
    events 1,200 (40/s)   DLQ 2   customers 3   event time 1970-01-01 00:00 UTC
    <BLANKLINE>
    RFM segment            customers
      Champions                    2  ##############################
    <BLANKLINE>
    cluster                                    customers
      1 big baskets                                    2
    <BLANKLINE>
    audience                                   customers
      gift-browsers                                    7
    <BLANKLINE>
    segment changes 4 (rfm 4, cluster 0), churn alerts 0, audience changes 9; the latest:
      (none yet)
    """
    from streams.cli.common import when

    stats = view.get("stats", {})
    clock = when(view.get("watermark"))[:16]
    lines = [
        header,
        f"events {stats.get('records', 0):,} ({rate:,.0f}/s)   DLQ {stats.get('dlq', 0):,}   "
        f"customers {view.get('customers', 0):,}   event time {clock} UTC",
        "",
        f"{'RFM segment':22} {'customers':>9}",
    ]
    rows = [r for r in view.get("rfm", []) if r["customers"]]
    biggest = max((r["customers"] for r in rows), default=1)
    for row in rows:
        bar = "#" * max(1, round(30 * row["customers"] / biggest))
        lines.append(f"  {row['segment']:20} {row['customers']:>9,}  {bar}")
    clusters = view.get("clusters") or []
    lines += ["", f"{'cluster':42} {'customers':>9}"]
    for c in clusters:
        name = f"{c['id']} {c['label'] or '(gone)'}"
        lines.append(f"  {name[:40]:40} {c['customers']:>9,}")
    if not clusters:
        lines.append("  none yet: the first snapshot comes after the warm-up")
    audiences = view.get("audiences") or []
    if audiences:
        lines += ["", f"{'audience':42} {'customers':>9}"]
        lines += [f"  {a['id'][:40]:40} {a['members']:>9,}" for a in audiences]
    changes_total = feed_counts.get("rfm", 0) + feed_counts.get("cluster", 0)
    lines += [
        "",
        f"segment changes {changes_total:,} (rfm {feed_counts.get('rfm', 0):,}, "
        f"cluster {feed_counts.get('cluster', 0):,}), churn alerts "
        f"{feed_counts.get('churn', 0):,}, audience changes {feed_counts.get('audience', 0):,}; "
        "the latest:",
    ]
    labels = {str(c["id"]): c["label"] for c in clusters if c.get("label")}
    latest = sorted([*changes, *alerts], key=lambda e: e["at"])[-LATEST:]
    for event in latest:
        if event.get("kind") == "cluster":  # ids into labels a person can read
            event = {
                **event,
                "from": _label(event["from"], labels),
                "to": _label(event["to"], labels),
            }
        lines.append("  " + output_line(event))
    if not latest:
        lines.append("  (none yet)")
    return "\n".join(lines)


def _apply_example_audiences(reader) -> None:
    """The holiday-promotion audiences, in force before the first event (the same as
    `rtba audience apply --example`)."""
    from streams.audiences.definitions import EXAMPLE, load
    from streams.state.store import publish_audiences

    publish_audiences(reader.client, reader.keys, load(EXAMPLE))


def _label(cluster_id, labels: dict) -> str | None:
    if cluster_id is None:
        return None
    return (
        f"{cluster_id} {labels[str(cluster_id)]!r}"
        if str(cluster_id) in labels
        else str(cluster_id)
    )


def _port_or_free(port: int) -> int:
    """``port`` if nothing listens on it on loopback, else a free one."""
    import socket

    from launcher.stack import free_port

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


def run_demo(settings: Settings, customers: int, events: int, rate: float, duration: float,
             api_port: int = 8000) -> int:  # fmt: skip
    from launcher import stack
    from streams.read.reader import StateReader

    namespace = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"  # a fresh state for every run
    settings = settings.model_copy(update={"namespace": namespace})
    was = stack.status(settings)
    started_stack = not stack.external(settings) and "down" in (was["kafka"], was["redis"])
    try:
        info = stack.up(settings)
    except stack.StackError as exc:
        from streams.errors import StackDown

        raise StackDown(str(exc)) from None
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": info["kafka_bootstrap"],
        "REDIS_URL": info["redis_url"],
        "RTBA_NAMESPACE": namespace,
    }
    # A demo compresses a year into minutes: refit and refresh often enough to be seen.
    env.setdefault("RTBA_CHURN_REFIT_S", "20")
    env.setdefault("RTBA_RFM_REFRESH_S", "10")
    env.setdefault("RTBA_DASHBOARD_SAMPLE_S", "2")  # a few hundred customers: cheap
    live = Settings.from_env(env)
    logs = live.home / "demo" / namespace
    logs.mkdir(parents=True, exist_ok=True)
    # Stop everything on `kill`, or when the terminal closes (SIGHUP), as on Ctrl-C: a
    # closed terminal window used to leave the demo's Kafka and Redis running.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _hung_up)
    tty = sys.stdout.isatty()
    api_port = _port_or_free(api_port)
    header = (
        f"rtba demo · namespace {namespace} · dashboard http://127.0.0.1:{api_port}/ · "
        f"Kafka {info['kafka_bootstrap']} · Redis {redacted(info['redis_url'])} · Ctrl-C stops"
    )
    started = time.monotonic()
    view: dict = {}
    last_count, last_at, shown_rate, failed = 0, started, 0.0, None
    feed = worker = producer = api = client = None
    if not tty:
        print(header, flush=True)
    try:
        feed = Feed(live)
        client = StateReader(live)  # closed with the feed
        _apply_example_audiences(client)
        worker = _spawn(env, logs / "worker.log", "worker")
        api = _spawn(env, logs / "api.log", "api", "--port", str(api_port))
        producer = _spawn(
            env,
            logs / "producer.log",
            "produce",
            "synthetic",
            "--customers",
            str(customers),
            "--events",
            str(events),
            "--rate",
            str(rate),
        )
        while not duration or time.monotonic() - started < duration:
            feed.poll(int(REDRAW_S * 1000))
            view = snapshot(client)
            now, count = time.monotonic(), view["stats"].get("records", 0)
            shown_rate = (count - last_count) / max(now - last_at, 1e-3)
            last_count, last_at = count, now
            screen = render(view, feed.counts, feed.changes, feed.alerts, header, shown_rate)
            if tty:
                sys.stdout.write("\x1b[H\x1b[J" + screen + "\n")  # redraw in place
                sys.stdout.flush()
            if worker.poll() is not None:
                failed = f"the worker exited (code {worker.returncode}); see {logs / 'worker.log'}"
                break
    except KeyboardInterrupt:
        pass
    finally:
        # Ctrl-C usually reaches the whole process group: one signal is enough.
        for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(stop_signal, signal.SIG_IGN)
        for proc in (producer, api, worker):
            if proc is not None:
                _stop(proc)
        for resource in (feed, client):
            if resource is not None:
                resource.close()
        if started_stack:
            stack.down(settings)
    took = time.monotonic() - started
    stats = view.get("stats", {})
    counts = feed.counts if feed is not None else Counter()
    _say(
        f"rtba demo: {took:.0f} s, {stats.get('records', 0):,} events, "
        f"{counts['rfm'] + counts['cluster']:,} segment changes, "
        f"{counts['churn']:,} churn alerts, {counts['audience']:,} audience changes, "
        f"{view.get('customers', 0):,} customers; "
        f"logs in {logs}. Look again with RTBA_NAMESPACE={namespace} rtba segments, or wipe "
        f"it with RTBA_NAMESPACE={namespace} rtba reset",
        flush=True,
    )
    if failed:
        _say(f"rtba demo: {failed}", file=sys.stderr)
        return 1
    return 0

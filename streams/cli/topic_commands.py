"""Commands over the namespace's Kafka topics: tail (the outputs, live), dlq (rejected
events, and re-driving them), reset (wipe a namespace)."""

from __future__ import annotations

import shutil
import time

import click

from streams.cli.common import json_option, log, print_json, require_kafka, require_stack, settings
from streams.read.outputs import decoded, event_kind, output_consumer
from streams.settings import redacted

KINDS = ("rfm", "cluster", "churn", "audience")


def _stored_ids(chosen, given) -> set[str]:
    """The ids --customer names, as the outputs carry them (NFC, pseudonyms if on). With
    pseudonyms, Redis keeps the key's fingerprint: another key would show nothing."""
    if not given:
        return set()
    from streams.privacy import customer_refs
    from streams.state.store import connect

    require_stack(chosen, kafka=False)
    client = connect(chosen.redis_url, **chosen.redis_options())
    try:
        ref = customer_refs(chosen, client)
        return {ref(c) for c in given}
    finally:
        client.close()


def output_line(event: dict) -> str:
    """One output event for a person.

    >>> output_line({"at": "2026-12-03T10:00:00+00:00", "customer_id": "c1", "kind": "rfm",
    ...              "from": "Loyal", "to": "At Risk", "reason": "time"})
    '2026-12-03 10:00:00  c1  rfm      Loyal -> At Risk  (time)'
    >>> output_line({"at": "2026-12-03T10:00:00+00:00", "customer_id": "c1", "churn_risk": 0.81,
    ...              "p_alive": 0.19, "recency_days": 96.2})
    '2026-12-03 10:00:00  c1  churn    risk 0.81 (alive 0.19), 96 days quiet'
    >>> output_line({"at": "2026-12-03T10:00:00+00:00", "customer_id": "c1", "change": "exit",
    ...              "audience": "gift-browsers", "reason": "time"})
    '2026-12-03 10:00:00  c1  audience exit gift-browsers  (time)'
    """
    when = event["at"][:19].replace("T", " ")
    if "audience" in event:
        return (f"{when}  {event['customer_id']}  audience {event['change']} "
                f"{event['audience']}  ({event['reason']})")  # fmt: skip
    if "churn_risk" in event:
        return (
            f"{when}  {event['customer_id']}  churn    risk {event['churn_risk']:.2f} "
            f"(alive {event['p_alive']:.2f}), {event['recency_days']:.0f} days quiet"
        )
    return (
        f"{when}  {event['customer_id']}  {event['kind']:8} {event['from'] or '(new)'} -> "
        f"{event['to'] or '(none)'}  ({event['reason']})"
    )


@click.command()
@click.option(
    "--kind",
    "kinds",
    type=click.Choice(KINDS),
    multiple=True,
    help="only these kinds (repeatable; default: all)",
)
@click.option("--customer", "customers", multiple=True, help="only this customer (repeatable)")
@click.option("--from-start", is_flag=True, help="from the oldest kept event, not from now")
@click.option("--count", type=click.IntRange(min=1), help="stop after this many events")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0),
    help="stop after this many seconds without a new event",
)
@json_option
def tail(kinds, customers, from_start, count, timeout_s, as_json) -> None:
    """Follow segment changes, churn alerts and audience changes live.

    \b
    Examples:
      rtba tail
      rtba tail --kind churn --json
      rtba tail --customer c000042 --from-start --timeout 2
    """
    chosen = settings()
    require_kafka(chosen)
    customers = _stored_ids(chosen, customers)
    consumer = output_consumer(chosen, chosen.output_topics, from_start)
    shown, last = 0, time.monotonic()
    try:
        while count is None or shown < count:
            batch = consumer.poll(timeout_ms=200)
            if not batch and timeout_s is not None and time.monotonic() - last > timeout_s:
                break
            for record in (r for records in batch.values() for r in records):
                last = time.monotonic()
                event = decoded(record.value)
                if event is None:  # a tombstone: an erased customer, no event to show
                    continue
                if (kinds and event_kind(event) not in kinds) or (
                    customers and event.get("customer_id") not in customers
                ):
                    continue
                print_json(event) if as_json else click.echo(output_line(event))
                shown += 1
                if count is not None and shown >= count:
                    break
    finally:
        consumer.close()


def _dlq_row(record) -> dict:
    headers = {k: v.decode("utf-8", "replace") for k, v in record.headers or []}
    return {
        "offset": f"{record.partition}/{record.offset}",
        "reason": headers.get("rtba.dlq.reason"),
        "detail": headers.get("rtba.dlq.detail"),
        "source": headers.get("rtba.dlq.source"),
        "key": record.key.decode("utf-8", "replace") if record.key else None,
        "payload": (record.value or b"").decode("utf-8", "replace"),
    }


@click.command()
@click.option("--reason", "reasons", multiple=True, help="only this reason (repeatable)")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="at most this many records",
)
@click.option(
    "--redrive",
    is_flag=True,
    help="send the records not re-driven before back to the events topic (after a fix)",
)
@json_option
def dlq(reasons, limit, redrive, as_json) -> None:
    """Refused events and their reasons; re-drive them.

    --redrive sends them to the events topic again. Re-driving is safe to repeat: it remembers
    how far it got (a consumer group of its
    own), and the workers de-duplicate by event id. A record of a customer erased after it
    was refused is skipped, never sent again (docs/privacy.md).

    \b
    Examples:
      rtba dlq
      rtba dlq --reason invalid --json
      RTBA_MAX_AMOUNT=5000000 rtba dlq --redrive --reason absurd_amount
    """
    chosen = settings()
    require_kafka(chosen)
    group = f"{chosen.app_id}-dlq-redrive" if redrive else None
    consumer = output_consumer(chosen, [chosen.dlq_topic], from_start=True, group=group)
    producer = None
    if redrive:
        from kafka import KafkaProducer

        from streams.erasure import erased_before_refused

        erased_since = _erased_customers(chosen)  # erased customers are not sent again
        producer = KafkaProducer(
            bootstrap_servers=chosen.kafka_bootstrap.split(","),
            acks="all",
            **chosen.kafka_options(),
        )
    shown = sent = skipped = 0
    # A re-drive takes the records there when it starts: one refused again comes back as a
    # new record, for the next re-drive (else it would loop on it up to --limit). It
    # commits exactly the records it went through, not the rest of a fetched batch.
    parts = list(consumer.assignment())
    ends = consumer.end_offsets(parts) if redrive else {}
    done = {tp: consumer.position(tp) for tp in parts} if redrive else {}
    try:
        while shown < limit and not (ends and all(done[tp] >= ends[tp] for tp in parts)):
            batch = consumer.poll(timeout_ms=1000)
            if not batch:
                break
            for tp, record in ((tp, r) for tp, records in batch.items() for r in records):
                if ends and record.offset >= ends[tp]:
                    continue
                if redrive:
                    done[tp] = record.offset + 1
                row = _dlq_row(record)
                if reasons and row["reason"] not in reasons:
                    continue
                if producer is not None and erased_before_refused(record, *erased_since):
                    skipped += 1  # committed with the rest: never re-driven
                    continue
                if producer is not None:
                    producer.send(chosen.events_topic, key=record.key, value=record.value)
                    sent += 1
                print_json(row) if as_json else click.echo(
                    f"{row['offset']:>10}  {row['reason'] or '?':16} {row['detail'] or ''}\n"
                    f"{'':12}{row['payload'][:200]}"
                )
                shown += 1
                if shown >= limit:
                    break
        if producer is not None:
            producer.flush()
            for tp in parts:
                consumer.seek(tp, done[tp])
            consumer.commit()  # only after every re-sent record is acknowledged
            log(f"rtba dlq: re-drove {sent} records to {chosen.events_topic}"
                + (f"; skipped {skipped} of erased customers" if skipped else ""))  # fmt: skip
    finally:
        if producer is not None:
            producer.close()
        consumer.close()
    if not shown and not as_json:
        log(f"rtba dlq: nothing in {chosen.dlq_topic}" + (" to re-drive" if redrive else ""))


def _erased_customers(chosen):
    """(id lookup, erased customers) for a re-drive: from Redis, read once."""
    from streams.privacy import customer_refs
    from streams.state.erase import ErasedIds
    from streams.state.keys import Keys
    from streams.state.store import connect

    require_stack(chosen, kafka=False)
    client = connect(chosen.redis_url, **chosen.redis_options())
    try:
        return customer_refs(chosen, client), ErasedIds.read(client, Keys(chosen.namespace))
    finally:
        client.close()


@click.command()
@click.option("--yes", is_flag=True, help="do not ask")
def reset(yes) -> None:
    """Wipe a namespace.

    Its Redis keys, its topics, its consumer groups and the worker data under RTBA_HOME. Refused
    while a worker of the namespace is running.

    \b
    Examples:
      RTBA_NAMESPACE=trial rtba reset --yes
    """
    from streams.state.namespace import wipe

    chosen = settings()
    require_stack(chosen)
    if not yes:
        click.confirm(
            f"Delete every event, customer and model of namespace {chosen.namespace!r} "
            f"on {chosen.kafka_bootstrap} and {redacted(chosen.redis_url)}?",
            abort=True,
        )
    gone = wipe(chosen)
    shutil.rmtree(chosen.home / "faust" / chosen.namespace, ignore_errors=True)
    log(
        f"rtba reset: namespace {chosen.namespace!r}: {gone['keys']} Redis keys, "
        f"{len(gone['topics'])} topics and {len(gone['groups'])} consumer groups deleted"
    )


COMMANDS = [tail, dlq, reset]

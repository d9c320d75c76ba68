"""`rtba erase` and `DELETE /customers/{id}` on the real stack: afterwards no key and no
index entry in the namespace mentions the customer (Redis scanned key by key, value by
value, the stored cluster learner whose sample held it included), the histograms no
longer count it, each output topic and the features topic carry its tombstone and no
record after it names the customer, a DLQ re-drive skips its refused payload, the AOF is
rewritten without it, the other customers are untouched, and a later event for the id
starts a fresh profile."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zlib
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition

from producers.kafka import make_producer, send_all, send_watermark
from streams.api.app import create_api
from streams.settings import Settings
from streams.state.keys import Keys
from streams.state.store import connect, read_stat
from tests.conftest import (
    assert_states_match_batch,
    consume_all,
    json_lines,
    run_rtba,
    wait_for_records,
)
from tests.integration.test_end_to_end import known_events

pytestmark = pytest.mark.integration

# Braces and '%' are escaped inside Redis key names (streams/state/keys.py): the scan
# looks for the raw id and for that form.
TARGET = "gdpr{7}%erase-me"
ESCAPED = "gdpr%7B7%7D%25erase-me"
OTHER = "gdpr-api-erase-me"


def customer_events(cid: str) -> list[dict]:
    def at(day: int) -> str:
        return datetime(2024, 3, day, 12, tzinfo=UTC).isoformat()

    return [
        {"event_id": f"{cid}-p1", "customer_id": cid, "type": "purchase", "order_id": f"{cid}-o1",
         "amount": "120.00", "ts": at(1), "items": [{"product_id": "g1", "category": "gifts",
                                                     "quantity": 1, "price": "120.00"}]},
        {"event_id": f"{cid}-p2", "customer_id": cid, "type": "purchase", "order_id": f"{cid}-o2",
         "amount": "80.00", "ts": at(9)},
        {"event_id": f"{cid}-r1", "customer_id": cid, "type": "refund", "order_id": f"{cid}-o2",
         "amount": "20.00", "ts": at(10)},
        {"event_id": f"{cid}-c1", "customer_id": cid, "type": "click", "action": "wishlist",
         "category": "gifts", "ts": at(11)},
    ]  # fmt: skip


def mentions(client, namespace: str, needles: tuple[str, ...]) -> list[str]:
    """Every key of the namespace whose name or content holds one of ``needles``."""
    found = []
    raw = tuple(n.encode() for n in needles)
    for key in client.scan_iter(match=f"{namespace}:*", count=1000):
        kind = client.type(key).decode()
        if kind == "none":  # gone since the scan listed it (an outbox the relay emptied)
            continue
        if kind == "string":
            parts = [client.get(key) or b""]
        elif kind == "hash":
            parts = [b for pair in client.hgetall(key).items() for b in pair]
        elif kind == "zset":
            parts = client.zrange(key, 0, -1)
        elif kind == "list":
            parts = client.lrange(key, 0, -1)
        elif kind == "set":
            parts = list(client.smembers(key))
        elif kind == "stream":
            parts = [b for eid, fields in client.xrange(key)
                     for b in (eid, *fields.keys(), *fields.values())]  # fmt: skip
        else:
            raise AssertionError(f"{key!r}: a {kind} the scan does not read")
        if any(n in part for part in [key, *parts] for n in raw):
            found.append(key.decode())
    return found


def histogram_totals(client, namespace: str) -> dict[str, int]:
    """Customers counted in each population histogram: the ``hist:<name>:<bucket>`` fields
    of every population-facts shard (found by a scan here, not by rtba's key list)."""
    totals = dict.fromkeys(("lp", "f", "m"), 0)
    for key in client.scan_iter(match=f"{namespace}:facts:*", count=10_000):
        for field, n in client.hgetall(key).items():
            parts = (field.decode() if isinstance(field, bytes) else field).split(":")
            if parts[0] == "hist":
                totals[parts[1]] += int(n)
    return totals


def tombstones(settings: Settings, key: str) -> dict[str, list[int]]:
    """Per output topic: the partitions of records keyed ``key`` with a null value."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    found: dict[str, list[int]] = {}
    for topic in settings.output_topics:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        while any(consumer.position(p) < ends[p] for p in parts):
            for records in consumer.poll(timeout_ms=1000).values():
                found.setdefault(topic, []).extend(
                    r.partition for r in records if r.key == key.encode() and r.value is None
                )
    consumer.close()
    return found


def records_naming(settings: Settings, topics: list[str], needle: str):
    """Per topic: when the tombstone keyed ``needle`` was written (ms, None if none),
    and every non-tombstone record whose key or value holds ``needle``, as (timestamp ms,
    partition, offset)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    raw, out = needle.encode(), {}
    for topic in topics:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        tomb, named = None, []
        while any(consumer.position(p) < ends[p] for p in parts):
            for records in consumer.poll(timeout_ms=1000).values():
                for r in records:
                    if r.value is None and r.key == raw:
                        tomb = r.timestamp
                    elif raw in (r.key or b"") + (r.value or b""):
                        named.append((r.timestamp, r.partition, r.offset))
        out[topic] = (tomb, named)
    consumer.close()
    return out


def bad_event(cid: str) -> dict:
    """An event the workers refuse (a negative amount): it waits in the DLQ."""
    return {"event_id": f"{cid}-bad", "customer_id": cid, "type": "purchase",
            "order_id": f"{cid}-bad", "amount": "-5.00",
            "ts": "2024-03-12T12:00:00+00:00"}  # fmt: skip


def aof_files_hold(client, needle: bytes) -> bool | None:
    """Whether Redis's append-only files hold ``needle`` (None: CONFIG is not allowed, or
    the files are elsewhere)."""
    import pathlib

    try:  # a single server (a Cluster's nodes answer per node: not looked at)
        folder = pathlib.Path(client.config_get("dir")["dir"])
        folder /= client.config_get("appenddirname").get("appenddirname", "")
    except Exception:
        return None
    files = [f for f in folder.glob("*") if f.is_file()] if folder.is_dir() else []
    return any(needle in f.read_bytes() for f in files) if files else None


def aof_rewrites(client) -> tuple[int, bool]:
    """Rewrites done, and whether one runs, over every server (a Cluster answers INFO
    per node)."""
    info = client.info("persistence")
    infos = [info] if "aof_rewrites" in info else list(info.values())
    return (sum(int(i["aof_rewrites"]) for i in infos),
            any(int(i["aof_rewrite_in_progress"]) for i in infos))  # fmt: skip


def wait_until(check, what: str, worker, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}:\n{worker.log_tail()}"
        time.sleep(0.2)


def test_erase_leaves_no_trace_and_a_later_event_starts_afresh(rtba_env, settings, worker,
                                                              monkeypatch):  # fmt: skip
    env = {**rtba_env, "RTBA_OUTBOX_RELAY_S": "3600",  # the injected entry stays unsent
           # a cluster snapshot, with the learner stored, at every training call
           "RTBA_CLUSTER_WARMUP": "0", "RTBA_CLUSTER_SNAPSHOT_EVERY": "1",
           "RTBA_CLUSTER_SNAPSHOT_MIN_S": "0"}  # fmt: skip
    others = known_events(seed=5, customers=10)
    refused = [bad_event(TARGET), bad_event("dlq-keeper")]
    events = others + customer_events(TARGET) + customer_events(OTHER) + refused
    worker.env = env
    worker.start()
    producer = make_producer(settings.kafka_bootstrap)
    send_all(producer, settings.events_topic, events)
    client = connect(settings.redis_url)
    wait_for_records(client, settings, len(events), worker)
    ns = settings.namespace
    learner = f"{ns}:model:clusters"

    def learner_holds(cid: str) -> bool:
        return cid.encode() in (client.hget(learner, "learner") or b"")

    wait_until(lambda: learner_holds(TARGET) and learner_holds(OTHER),
               "the learner's sample never held the customers", worker)  # fmt: skip
    assert mentions(client, ns, (TARGET, ESCAPED)), "the scan must see the customer first"
    rewrites = aof_rewrites(client)[0]
    # an output event left unsent by a crashed writer, as the worker writes them
    client.hset(f"{ns}:c:{{{ESCAPED}}}:outbox", "ev-unsent", f"churn_risk|0|9|1|"
                f'{{"customer_id": "{TARGET}"}}')  # fmt: skip
    shard = zlib.crc32(TARGET.encode()) % 16_384 % 64  # its due-index bucket's shard
    client.zadd(f"{ns}:outbox:{{{ns}:outbox:{shard}}}", {TARGET: 9})
    before = histogram_totals(client, ns)

    erased = run_rtba(env, "erase", TARGET, "--yes", "--json")
    assert json_lines(erased.stdout) == [{
        "customer_id": TARGET, "had_state": True, "unsent_events": 1,
        "tombstones": settings.output_topics, "features_tombstone": settings.features_topic,
        "aof_rewrite": "started"}]  # fmt: skip
    assert mentions(client, ns, (TARGET, ESCAPED)) == []
    # the trainer drops it from its own copy at the features tombstone, and stores that
    time.sleep(1)
    assert mentions(client, ns, (TARGET, ESCAPED)) == []
    assert histogram_totals(client, ns) == {name: n - 1 for name, n in before.items()}
    marks = tombstones(settings, TARGET)
    assert set(marks) == set(settings.output_topics) and all(len(p) == 1 for p in marks.values())
    topics = [*settings.output_topics, settings.features_topic]
    for topic, (tomb, named) in records_naming(settings, topics, TARGET).items():
        assert tomb is not None, f"no tombstone on {topic}"
        assert [r for r in named if r[0] >= tomb] == [], f"{topic} names it after its tombstone"
    # the AOF is rewritten: the erased values leave Redis's files too
    wait_until(lambda: aof_rewrites(client)[0] > rewrites and not aof_rewrites(client)[1],
               "no AOF rewrite after the erase", worker)  # fmt: skip
    # (the namespace's key name: other test runs share this Redis, and the same id)
    assert aof_files_hold(client, f"{ns}:c:{{{ESCAPED}}}".encode()) in (False, None)

    # a re-drive skips the erased customer's refused payload and sends the other one
    redriven = run_rtba(env, "dlq", "--redrive", "--json")
    assert [row["key"] for row in json_lines(redriven.stdout)] == ["dlq-keeper"]
    assert "skipped 1 of erased customers" in redriven.stderr

    # the API's erase, with the same effect; an unknown id is a 404 (and exit code 1)
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from streams.api.app import create_api

    admin = "admin-token-0123456789abcdef"  # erasing over the API needs the admin token
    chosen = settings.model_copy(update={"api_admin_token": SecretStr(admin)})
    with TestClient(create_api(chosen), base_url="http://127.0.0.1",
                    headers={"Authorization": f"Bearer {admin}"}) as api:  # fmt: skip
        answer = api.delete(f"/customers/{OTHER}")
        assert answer.status_code == 200 and answer.json()["had_state"] is True
        assert api.get(f"/customers/{OTHER}").status_code == 404
        assert api.delete("/customers/nobody-at-all").status_code == 404
    # Kafka unreachable: the erase answers 503, and this API's feed forgets at once (it
    # will not see the tombstones that were not sent)
    import kafka

    def kafka_down(*args, **kwargs):  # at once, not after a 30 s bootstrap timeout
        raise kafka.errors.KafkaTimeoutError("Unable to bootstrap (the test)")

    with monkeypatch.context() as patched, TestClient(
        create_api(chosen), base_url="http://127.0.0.1",
        headers={"Authorization": f"Bearer {admin}"}) as api:  # fmt: skip
        patched.setattr(kafka, "KafkaProducer", kafka_down)
        feed = api.app.state.feed
        feed.add({"customer_id": "feed-503", "kind": "rfm", "from": None, "to": "New"})
        assert api.delete("/customers/feed-503").status_code == 503
        assert feed.recent(customer="feed-503") == []
    assert mentions(client, ns, (OTHER,)) == []
    time.sleep(1)  # the trainer's copy too
    assert mentions(client, ns, (OTHER,)) == []
    assert histogram_totals(client, ns) == {name: n - 2 for name, n in before.items()}
    unknown = run_rtba(env, "erase", "nobody-at-all", "--yes", check=False)
    assert unknown.returncode == 1 and "had no state" in unknown.stderr

    # everyone else exactly as before
    assert_states_match_batch(settings, others)

    # a later event for the id: a profile of that event alone (the re-driven payload
    # came back refused again: counted)
    fresh = {"event_id": "after-erase", "customer_id": TARGET, "type": "purchase",
             "order_id": "after-o1", "amount": "15.00",
             "ts": "2024-04-01T08:00:00+00:00"}  # fmt: skip
    send_all(producer, settings.events_topic, [fresh])
    producer.close()
    wait_for_records(client, settings, len(events) + 2, worker)
    deadline = time.monotonic() + 30
    while not client.exists(f"{ns}:c:{{{ESCAPED}}}") and time.monotonic() < deadline:
        time.sleep(0.2)
    profile = json.loads(run_rtba(env, "profile", TARGET, "--json").stdout)
    assert (profile["purchases"], profile["monetary"]) == (1, 15.0)
    assert profile["first_purchase"].startswith("2024-04-01T08:00:00")
    client.close()


def rtba_here(monkeypatch, capsys, env: dict, *args: str) -> tuple[int, str, str]:
    """rtba's exit code, stdout and stderr, run in this process under ``env`` (a second
    less than a subprocess: the imports are done)."""
    from streams.cli.main import main

    with monkeypatch.context() as patch:
        for name in ("RTBA_PSEUDONYM_KEY", "RTBA_PSEUDONYM_KEY_FILE"):
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        capsys.readouterr()
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err


def test_with_a_pseudonym_key_redis_and_the_outputs_hold_no_real_id(
    rtba_env, settings, worker, monkeypatch, capsys
):
    import hashlib
    import hmac

    key = "pseudonym-key-0123456789"

    def hidden(value: str) -> str:  # the test's own HMAC, not streams.privacy's
        return "p_" + hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()[:32]

    env = {**rtba_env, "RTBA_PSEUDONYM_KEY": key}
    looks_hidden = "p_" + "5e" * 16  # a raw id that looks like a pseudonym
    events = known_events(seed=8, customers=8) + customer_events(looks_hidden)
    worker.env = env
    worker.start()
    producer = make_producer(settings.kafka_bootstrap)
    send_all(producer, settings.events_topic, events)
    producer.close()
    client = connect(settings.redis_url)
    wait_for_records(client, settings, len(events), worker)
    real = {e["customer_id"] for e in events}
    orders = {e["order_id"] for e in events if "order_id" in e}
    real_ids = tuple(real | {e["event_id"] for e in events} | orders)
    assert mentions(client, settings.namespace, real_ids) == []
    assert_states_match_batch(settings, [
        {**e, "customer_id": hidden(e["customer_id"]), "event_id": hidden(e["event_id"]),
         **({"order_id": hidden(e["order_id"])} if "order_id" in e else {})}
        for e in events
    ])  # fmt: skip
    changes = consume_all(settings.kafka_bootstrap, settings.segment_changes_topic, 1)
    assert changes and {json.loads(r.value)["customer_id"] for r in changes} <= {
        hidden(c) for c in real
    }
    one, two = sorted(real - {looks_hidden})[:2]
    profile = json.loads(run_rtba(env, "profile", one, "--json").stdout)  # the real id works
    assert profile["customer_id"] == hidden(one)
    assert json_lines(run_rtba(env, "erase", one, "--yes", "--json").stdout)[0]["had_state"]
    assert not client.exists(f"{settings.namespace}:c:{{{hidden(one)}}}")
    # a raw id of the pseudonym form is pseudonymised on lookup as at ingestion
    code, out, _ = rtba_here(monkeypatch, capsys, env, "profile", looks_hidden, "--json")
    assert code == 0 and json.loads(out)["customer_id"] == hidden(looks_hidden)
    code, out, _ = rtba_here(monkeypatch, capsys, env, "erase", looks_hidden, "--yes", "--json")
    assert code == 0 and json_lines(out)[0]["had_state"]
    assert not client.exists(f"{settings.namespace}:c:{{{hidden(looks_hidden)}}}")
    # a stored pseudonym, as read off an output event, is named explicitly
    code, out, _ = rtba_here(monkeypatch, capsys, env, "profile", f"pseudonym:{hidden(two)}",
                             "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["customer_id"] == hidden(two)
    # another key, or none: one line and exit code 2, never "not found", and nothing erased
    other_key = "another-key-0123456789"
    for wrong in ({**env, "RTBA_PSEUDONYM_KEY": other_key}, rtba_env):
        for args in (("profile", two), ("erase", two, "--yes")):
            code, _, stderr = rtba_here(monkeypatch, capsys, wrong, *args)
            assert code == 2 and stderr.count("\n") == 1 and "pseudonymised" in stderr, stderr
        assert client.exists(f"{settings.namespace}:c:{{{hidden(two)}}}")
    stopped = subprocess.run([sys.executable, "-m", "streams.cli", "worker"], capture_output=True,
                             text=True, env={**env, "RTBA_PSEUDONYM_KEY": other_key},
                             timeout=60)  # fmt: skip
    assert stopped.returncode == 2 and "with another key" in stopped.stderr, stopped.stderr
    api = TestClient(create_api(Settings.from_env({**env, "RTBA_PSEUDONYM_KEY": other_key})),
                     base_url="http://127.0.0.1")  # a loopback Host  # fmt: skip
    for path in (f"/customers/{two}", f"/events?customer={two}"):
        answer = api.get(path)
        assert answer.status_code == 503 and "another key" in answer.json()["detail"], path
    client.close()


def test_retention_erases_customers_silent_that_long_in_event_time(rtba_env, settings, worker):
    env = {**rtba_env, "RTBA_RETENTION_DAYS": "30", "RTBA_CLUSTER_WARMUP": "0",
           "RTBA_CLUSTER_SNAPSHOT_EVERY": "1", "RTBA_CLUSTER_SNAPSHOT_MIN_S": "0"}  # fmt: skip

    def at(day: int) -> str:
        return (datetime(2024, 1, 1, 12, tzinfo=UTC) + timedelta(days=day)).isoformat()

    events = [
        {"event_id": "f1", "customer_id": "forget-me", "type": "purchase", "order_id": "fo1",
         "amount": "40.00", "ts": at(0)},
        {"event_id": "f2", "customer_id": "forget-me", "type": "click", "action": "view",
         "ts": at(5)},  # its last event: erased at day 35
        {"event_id": "b1", "customer_id": "browser", "type": "click", "action": "search",
         "ts": at(1)},  # clicks only, no purchase: erased at day 31
        {"event_id": "k1", "customer_id": "keep-me", "type": "purchase", "order_id": "ko1",
         "amount": "25.00", "ts": at(20)},
        {"event_id": "k2", "customer_id": "keep-me", "type": "purchase", "order_id": "ko2",
         "amount": "30.00", "ts": at(50)},  # moves event time to day 50, and stays
    ]  # fmt: skip
    worker.env = env
    worker.start()
    producer = make_producer(settings.kafka_bootstrap)
    send_all(producer, settings.events_topic, events)
    marks = send_watermark(producer, settings.events_topic, at(50))  # every partition
    producer.close()
    client = connect(settings.redis_url)
    wait_for_records(client, settings, len(events) + marks, worker)
    deadline = time.monotonic() + 60
    while read_stat(client, Keys(settings.namespace), "retention_erased") < 2:
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.3)
    ns = settings.namespace
    assert mentions(client, ns, ("forget-me", "browser")) == []
    time.sleep(1)  # the stored cluster learner too, once the trainer read the tombstones
    assert mentions(client, ns, ("forget-me", "browser")) == []
    assert histogram_totals(client, ns) == {"lp": 1, "f": 1, "m": 1}  # keep-me alone
    for cid in ("forget-me", "browser"):
        marks = tombstones(settings, cid)
        assert set(marks) == set(settings.output_topics), (cid, marks)
    profile = json.loads(run_rtba(env, "profile", "keep-me", "--json").stdout)
    assert (profile["purchases"], profile["monetary"]) == (2, 55.0)
    assert read_stat(client, Keys(ns), "retention_erased") == 2
    client.close()

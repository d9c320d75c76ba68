"""Hostile input through the real Kafka and a real worker: over 10,000 payloads made by
hypothesis to be invalid in every way a producer gets wrong (broken JSON, wrong types,
huge strings and numbers, NaN and infinities, negative and absurd amounts, far-future and
ancient times, broken unicode, missing keys, oversize, deep nesting, tombstones), mixed
with valid events whose ids are unicode oddities. Every valid event must be applied
exactly once, every bad one must be on the DLQ byte for byte with a reason and counted,
and the worker's agent must never crash or restart."""

from __future__ import annotations

import json
import random
import unicodedata
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from producers.kafka import make_producer, send_watermark
from streams.processing.topics import ensure_topics
from tests.conftest import consume_all, json_lines, run_rtba, wait_for_records
from tests.reference import batch_state, epoch_ms

pytestmark = pytest.mark.integration

HOSTILE = 10_000
BASE = datetime(2024, 6, 1, tzinfo=UTC)
REASONS = {"invalid_json", "invalid_schema", "absurd_amount", "ts_in_future", "oversize",
           "empty"}  # fmt: skip
GOOD = {"event_id": "e", "customer_id": "c", "type": "purchase", "order_id": "o",
        "amount": "10.00", "ts": "2024-06-01T12:00:00Z"}  # fmt: skip


def dumps(obj) -> bytes:
    return json.dumps(obj).encode()  # ASCII: a lone surrogate travels as a \ud800 escape


def future_iso(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


def with_field(key, value_strategy, reason="invalid_schema"):
    return value_strategy.map(lambda v: (dumps({**GOOD, key: v}), reason))


def literal(key: str, text: str, reason="invalid_schema"):
    """A field set to a raw JSON token json.dumps would not write (NaN, Infinity, ...)."""
    raw = dumps({**GOOD, key: "@@"}).replace(b'"@@"', text.encode())
    return st.just((raw, reason))


not_a_string = st.one_of(
    st.integers(), st.floats(allow_nan=False), st.booleans(), st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)  # fmt: skip
ACTIONS = ("view", "add_to_cart", "remove_from_cart", "search", "wishlist")
hostile = st.one_of(
    # broken JSON: an object that never closes, bytes that are not UTF-8, deep nesting
    st.text(alphabet=st.characters(blacklist_characters="}"), max_size=200).map(
        lambda t: (b'{"event_id": ' + t.encode("utf-8", "surrogatepass"), "invalid_json")
    ),
    st.binary(max_size=200).map(lambda b: (b"\xff" + b, "invalid_json")),
    st.integers(5_000, 30_000).map(lambda n: (b"[" * n + b"]" * n, "invalid_json")),
    # JSON that is not an event object
    st.one_of(
        st.integers(), st.text(max_size=50), st.lists(st.integers(), max_size=5), st.none()
    ).map(lambda v: (dumps(v), "invalid_schema")),  # fmt: skip
    # wrong types, missing keys, unknown types and actions
    with_field("customer_id", not_a_string | st.just("")),
    with_field(
        "amount",
        st.lists(st.integers(), max_size=2)
        | st.booleans()
        | st.none()
        | st.text(alphabet="abcxyz", min_size=1, max_size=8),
    ),  # fmt: skip
    with_field(
        "ts",
        st.booleans()
        | st.lists(st.integers(), max_size=2)
        | st.none()
        | st.text(alphabet="abc :-", max_size=20),
    ),  # fmt: skip
    with_field(
        "type",
        st.text(max_size=10).filter(
            lambda t: t.strip() not in ("purchase", "click", "refund", "watermark")
        ),
    ),
    st.sampled_from(sorted(GOOD)).map(
        lambda k: (dumps({f: v for f, v in GOOD.items() if f != k}), "invalid_schema")
    ),
    st.text(max_size=12)
    .filter(
        lambda a: a.strip() not in ("view", "add_to_cart", "remove_from_cart", "search", "wishlist")
    )
    .map(lambda a: (dumps({**GOOD, "type": "click", "action": a}), "invalid_schema")),
    # huge strings and numbers, NaN and infinities
    with_field("customer_id", st.integers(257, 5000).map(lambda n: "x" * n)),
    with_field(
        "ts",
        st.floats(min_value=2.6e14, allow_infinity=False)
        | st.integers(min_value=2**53, max_value=2**200),
    ),  # fmt: skip
    with_field("amount", st.integers(1, 300).map(lambda n: "9" * 7 + "9" * n), "absurd_amount"),
    literal("ts", "NaN"),
    literal("ts", "Infinity"),
    literal("ts", "-Infinity"),
    literal("amount", "NaN"),
    literal("amount", "Infinity"),
    literal("amount", "1e999"),
    # negative and absurd amounts, a refund of nothing
    with_field("amount", st.decimals(min_value="-1e9", max_value="-0.01", places=2).map(str)),
    with_field(
        "amount",
        st.decimals(min_value="1000001", max_value="1e12", places=2).map(str),
        "absurd_amount",
    ),  # fmt: skip
    st.just((dumps({**GOOD, "type": "refund", "amount": "0"}), "invalid_schema")),
    # far-future and ancient times
    with_field("ts", st.floats(min_value=2, max_value=3000).map(future_iso), "ts_in_future"),
    with_field("ts", st.integers(max_value=-1)),
    with_field("ts", st.integers(1, 1969).map(lambda y: f"{y:04d}-06-01T00:00:00Z")),
    # broken unicode in ids: lone surrogates, control, format (U+202E, U+200B) and separators
    with_field("customer_id", st.integers(0xD800, 0xDFFF).map(lambda c: f"id{chr(c)}")),
    with_field("customer_id", st.characters(whitelist_categories=("Cc",)).map(lambda c: f"a{c}b")),
    with_field(
        "order_id", st.characters(whitelist_categories=("Cf", "Zl", "Zp")).map(lambda c: f"a{c}b")
    ),
    # oversize, and a Kafka tombstone
    st.integers(65_600, 80_000).map(lambda n: (dumps({**GOOD, "pad": "x" * n}), "oversize")),
    st.just((None, "empty")),
)


def hostile_payloads(n: int) -> list[tuple[bytes | None, str]]:
    out: list[tuple[bytes | None, str]] = []

    @settings(max_examples=n, database=None, phases=[Phase.generate], deadline=None,
              derandomize=True, suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(hostile)
    def collect(payload):
        out.append(payload)

    collect()
    return out


# Valid odd ids: any text but control, format and separator characters (refused), already
# in NFC (validation normalises, so an NFD id would be stored under another spelling).
odd_id = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp")),
    min_size=1,
    max_size=40,
).filter(lambda s: s == s.strip() and s.strip() and s == unicodedata.normalize("NFC", s))


def valid_events(seed: int = 5) -> list[dict]:
    """Unique purchases, refunds and clicks for customers with unicode-odd ids."""
    ids: list[str] = []

    @settings(max_examples=300, database=None, phases=[Phase.generate], deadline=None,
              derandomize=True, suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(odd_id)
    def collect(cid):
        if cid not in ids:
            ids.append(cid)

    collect()
    rng = random.Random(seed)
    events = []
    for c, cid in enumerate(ids):
        for k in range(rng.randint(1, 5)):
            oid = f"{c}-o{k}"
            when = BASE + timedelta(days=rng.uniform(0, 150))
            amount = rng.choice(["0", f"{rng.uniform(1, 900):.2f}"])
            events.append({"event_id": f"{c}-p{k}", "customer_id": cid, "type": "purchase",
                           "order_id": oid, "amount": amount, "ts": when.isoformat()})  # fmt: skip
            if rng.random() < 0.25:
                events.append({"event_id": f"{c}-r{k}", "customer_id": cid, "type": "refund",
                               "order_id": oid, "amount": "3.00",
                               "ts": int(when.timestamp() * 1000) + 3_600_000})  # fmt: skip
        events.append({"event_id": f"{c}-c", "customer_id": cid, "type": "click",
                       "action": "view", "ts": (BASE + timedelta(days=1)).isoformat()})  # fmt: skip
    return events


def test_hostile_payloads_cost_nothing_but_their_own_dlq_record(rtba_env, settings, worker,
                                                                redis_client):  # fmt: skip
    rtba_env.update(RTBA_TICK_S="3600", RTBA_RFM_ADAPTIVE="0", RTBA_BATCH_SIZE="100")
    bad = hostile_payloads(HOSTILE)
    good = valid_events()
    assert len(bad) >= HOSTILE and len(good) > 500
    ensure_topics(settings)
    worker.start()
    producer = make_producer(settings.kafka_bootstrap)
    rng = random.Random(1)
    queue = [("bad", b) for b in bad] + [("good", g) for g in good]
    rng.shuffle(queue)
    # keep each customer's good events in their order (refunds after their orders)
    goods = iter(good)
    queue = [(kind, next(goods) if kind == "good" else item) for kind, item in queue]
    for kind, item in queue:
        if kind == "good":
            producer.send(settings.events_topic, key=item["customer_id"], value=item)
        else:
            key = f"hostile-{rng.randrange(50)}".encode()  # spread over the partitions
            producer.send(settings.events_topic, key=key, value=item[0])
    sent = len(queue) + send_watermark(producer, settings.events_topic, "2024-12-31T00:00:00Z")
    producer.flush()
    wait_for_records(redis_client, settings, sent, worker, timeout=300)

    # every bad record is on the DLQ, byte for byte, with its reason, and counted
    dlq = consume_all(settings.kafka_bootstrap, settings.dlq_topic, len(bad), timeout=120)
    got = Counter((r.value, dict(r.headers)["rtba.dlq.reason"].decode()) for r in dlq)
    assert sum(got.values()) == len(bad)
    assert Counter(v for v, _ in got.elements()) == Counter(v for v, _ in bad)
    assert got == Counter(bad)  # and each for the reason it was made to have
    assert all(dict(r.headers)["rtba.dlq.detail"] for r in dlq)
    stats = json_lines(run_rtba(rtba_env, "stats", "--json").stdout)[0]["counters"]
    assert stats["dlq"] == len(bad)
    for reason in REASONS:
        assert stats.get(f"dlq:{reason}", 0) == sum(1 for _, r in bad if r == reason), reason

    # every valid event applied exactly once: counted once, and the state is the batch one
    assert stats["applied"] == len(good) and stats.get("duplicates", 0) == 0
    expected = batch_state(good)
    profiles = json_lines(run_rtba(rtba_env, "profile", "--all", "--json").stdout)
    got_profiles = {p["customer_id"]: p for p in profiles}
    assert set(got_profiles) == set(expected)
    for cid, want in expected.items():
        p = got_profiles[cid]
        assert (p["purchases"], p["purchase_days"]) == (want["purchases"], want["purchase_days"]), (
            cid
        )
        assert p["monetary"] == pytest.approx(float(want["monetary"]), abs=1e-9), cid
        if want["last_purchase_ms"] is not None:
            assert epoch_ms(p["last_purchase"]) == want["last_purchase_ms"], cid

    # the agent never crashed or restarted, and nothing needed isolating
    log = worker.log_path.read_text(errors="replace")
    for sign in ("Traceback", "crashed", "Restarting", "cannot be folded", "failed; retrying"):
        assert sign not in log, sign
    assert worker.proc.poll() is None

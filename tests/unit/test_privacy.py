"""Pseudonymisation at ingestion, without a broker: which ids are replaced, that the
replacement is keyed (the test computes HMAC-SHA256 itself), and that a customer's
figures come out the same under its pseudonym, duplicates and refunds included."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from online_models.customer import CustomerState
from online_models.rfm import RFMScorer
from streams.errors import RtbaError
from streams.privacy import Pseudonyms, claim_key, customer_ref, customer_refs
from streams.processing.pipeline import Models, Record, decode_batch, fold_batch, lookups
from streams.processing.schemas import Limits
from streams.settings import Settings

NOW = 1_800_000_000_000
KEY = "pseudonym-key-0123456789"


def expected(value: str, key: str = KEY) -> str:
    return "p_" + hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()[:32]


def records() -> list[Record]:
    events = [
        {"event_id": "alice-p1", "customer_id": "alice@example.com", "type": "purchase",
         "order_id": "alice-o1", "amount": "30.00", "ts": 1_700_000_000_000},
        {"event_id": "alice-p1-again", "customer_id": "alice@example.com", "type": "purchase",
         "order_id": "alice-o1", "amount": "99.00", "ts": 1_700_000_100_000},  # same order
        {"event_id": "alice-r1", "customer_id": "alice@example.com", "type": "refund",
         "order_id": "alice-o1", "amount": "5.00", "ts": 1_700_000_200_000},
        {"event_id": "alice-r1", "customer_id": "alice@example.com", "type": "refund",
         "order_id": "alice-o1", "amount": "5.00", "ts": 1_700_000_200_000},  # redelivered
        {"event_id": "bob-c1", "customer_id": "bob", "type": "click", "action": "view",
         "ts": 1_700_000_300_000},
        {"type": "watermark", "ts": 1_700_000_400_000},
    ]  # fmt: skip
    return [Record(0, i, b"k", json.dumps(e).encode()) for i, e in enumerate(events)]


def fold(pseudonyms=None) -> dict[str, CustomerState]:
    valid, rejected = decode_batch(records(), NOW, Limits(), pseudonyms)
    assert not rejected
    states = {cid: CustomerState(cid) for cid in lookups(valid)}
    return fold_batch(valid, states, Models(RFMScorer())).states


def test_the_kept_ids_are_replaced_by_their_keyed_pseudonyms():
    valid, _ = decode_batch(records(), NOW, Limits(), Pseudonyms(KEY))
    events = [event for _, event in valid]
    assert [e.customer_id for e in events[:5]] == [expected("alice@example.com")] * 4 + [
        expected("bob")
    ]
    assert [e.order_id for e in events[:4]] == [expected("alice-o1")] * 4
    assert events[0].event_id == expected("alice-p1") and events[4].event_id == expected("bob-c1")
    assert events[5].type == "watermark" and events[5].ts == 1_700_000_400_000
    assert expected("alice@example.com", "another-key-0123456789") != events[0].customer_id


def test_a_customers_figures_are_the_same_under_its_pseudonym():
    plain, hidden = fold(), fold(Pseudonyms(KEY))
    assert set(hidden) == {expected("alice@example.com"), expected("bob")}
    for cid, state in plain.items():
        twin = hidden[expected(cid)]
        assert (twin.purchases, twin.monetary, twin.gross, twin.refunds, twin.clicks) == (
            state.purchases, state.monetary, state.gross, state.refunds, state.clicks
        )  # fmt: skip
    assert plain["alice@example.com"].monetary == 25  # one order of 30, one refund of 5


class Namespace:
    """The Redis calls the key check makes, on a dict (a unit test has no Redis)."""

    def __init__(self):
        self.values: dict[str, bytes] = {}

    def get(self, name):
        return self.values.get(name)

    def hget(self, name, field):  # the claim's "applied events?": never, in these tests
        return None

    def set(self, name, value, nx=False):
        if nx and name in self.values:
            return None
        self.values[name] = value.encode()
        return True


def settings_with(tmp_path, key: str | None = KEY, namespace: str = "shop") -> Settings:
    env = {"RTBA_HOME": str(tmp_path), "RTBA_NAMESPACE": namespace}
    return Settings.from_env({**env, "RTBA_PSEUDONYM_KEY": key} if key else env)


def test_a_given_id_is_looked_up_by_its_pseudonym_only_when_the_key_is_set(tmp_path):
    on, off, redis = settings_with(tmp_path), settings_with(tmp_path, None), Namespace()
    assert customer_ref(on, redis, "bob") == expected("bob")
    assert customer_ref(on, redis, "pseudonym:" + expected("bob")) == expected("bob")  # named
    assert customer_ref(off, redis, "bob") == "bob"
    assert KEY not in repr(on)


def test_a_raw_id_that_looks_like_a_pseudonym_is_looked_up_as_ingestion_stores_it(tmp_path):
    """Ingestion pseudonymises every id; a lookup of the same raw id must land on it."""
    raw = "p_" + "ab" * 16
    event = {"event_id": "e1", "customer_id": raw, "type": "purchase", "order_id": "o1",
             "amount": "10", "ts": 1_700_000_000_000}  # fmt: skip
    valid, _ = decode_batch([Record(0, 0, b"k", json.dumps(event).encode())], NOW, Limits(),
                            Pseudonyms(KEY))  # fmt: skip
    stored = valid[0][1].customer_id
    assert stored == expected(raw) != raw
    assert customer_ref(settings_with(tmp_path), Namespace(), raw) == stored


def test_lookups_spell_ids_as_validation_does(tmp_path):
    nfd, nfc = " Jose\u0301 ", "Jos\u00e9"
    assert customer_ref(settings_with(tmp_path, None), Namespace(), nfd) == nfc
    assert customer_ref(settings_with(tmp_path), Namespace(), nfd) == expected(nfc)


def fingerprint_of(key: str) -> bytes:
    return ("k_" + hmac.new(key.encode(), b"rtba-key-fingerprint", hashlib.sha256)
            .hexdigest()[:16]).encode()  # fmt: skip


OTHER_KEY = ("this namespace's ids are pseudonymised with another key: set RTBA_PSEUDONYM_KEY "
             "to the key the workers use")  # fmt: skip


def test_the_first_worker_stores_the_keys_fingerprint_never_the_key(tmp_path):
    redis = Namespace()
    claim_key(settings_with(tmp_path), redis)
    assert redis.values == {"shop:pseudonym": fingerprint_of(KEY)}
    assert KEY.encode() not in redis.values["shop:pseudonym"]
    claim_key(settings_with(tmp_path), redis)  # the next worker with the same key starts
    assert redis.values == {"shop:pseudonym": fingerprint_of(KEY)}
    keyless = Namespace()
    claim_key(settings_with(tmp_path, None), keyless)  # no key: the namespace's ids are raw
    assert keyless.values == {"shop:pseudonym": b"none"}


@pytest.mark.parametrize("other", [None, "another-key-0123456789"])
def test_another_key_or_none_is_a_one_line_error_not_not_found(tmp_path, other):
    redis = Namespace()
    claim_key(settings_with(tmp_path), redis)
    wrong = settings_with(tmp_path, other)
    for attempt in (lambda: claim_key(wrong, redis), lambda: customer_refs(wrong, redis),
                    lambda: customer_ref(wrong, redis, "bob")):  # fmt: skip
        with pytest.raises(RtbaError) as raised:
            attempt()
        message = str(raised.value)
        assert raised.value.exit_code == 2 and "\n" not in message
        assert "pseudonymised" in message and "RTBA_PSEUDONYM_KEY" in message
        if other:
            assert message == OTHER_KEY
    assert redis.values == {"shop:pseudonym": fingerprint_of(KEY)}  # the first key stays


def test_a_namespace_without_a_fingerprint_takes_any_key(tmp_path):
    """A namespace no worker has claimed and no event reached: the first worker's key
    becomes its own."""
    redis = Namespace()
    assert customer_ref(settings_with(tmp_path, "another-key-0123456789"), redis, "a")
    claim_key(settings_with(tmp_path), redis)
    with pytest.raises(RtbaError):
        claim_key(settings_with(tmp_path, "another-key-0123456789"), redis)


def test_ingestion_and_lookup_agree_on_every_id(tmp_path):
    """Whatever id a producer sends (NFD, blanks around it, the pseudonym form), the id a
    lookup of it computes is the one ingestion stored, with the key and without."""
    import unicodedata

    from hypothesis import given
    from hypothesis import settings as hypothesis_settings
    from hypothesis import strategies as st

    pieces = st.characters(exclude_categories=("Cs", "Cc", "Cf", "Zl", "Zp")) | st.sampled_from(
        ["e\u0301", "A\u030a", " ", "p_" + "ab" * 16]
    )
    # Ids the schema takes: some text, at most 256 characters as sent (longer is refused
    # at decode: tests/unit/test_schemas.py sends 300).
    ids = st.lists(pieces, min_size=1, max_size=12).map("".join)
    ids = ids.filter(lambda raw: raw.strip() and len(raw) <= 256)
    on, off = settings_with(tmp_path), settings_with(tmp_path, None)

    @hypothesis_settings(max_examples=300, deadline=None)
    @given(ids, st.sampled_from(["NFC", "NFD"]))
    def check(raw, form):
        event = {"event_id": "e", "customer_id": raw, "type": "click", "action": "view",
                 "ts": 1_700_000_000_000}  # fmt: skip
        record = [Record(0, 0, b"k", json.dumps(event).encode())]
        given_id = unicodedata.normalize(form, raw)
        for chosen, pseudonyms in ((on, Pseudonyms(KEY)), (off, None)):
            valid, _ = decode_batch(record, NOW, Limits(), pseudonyms)
            assert customer_ref(chosen, Namespace(), given_id) == valid[0][1].customer_id

    check()

"""Pseudonymisation at ingestion, without a broker: which ids are replaced, that the
replacement is keyed (the test computes HMAC-SHA256 itself), and that a customer's
figures come out the same under its pseudonym, duplicates and refunds included."""

from __future__ import annotations

import hashlib
import hmac
import json

from online_models.customer import CustomerState
from online_models.rfm import RFMScorer
from streams.privacy import Pseudonyms, customer_ref
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


def test_a_given_id_is_looked_up_by_its_pseudonym_only_when_the_key_is_set(tmp_path):
    on = Settings.from_env({"RTBA_PSEUDONYM_KEY": KEY, "RTBA_HOME": str(tmp_path)})
    off = Settings.from_env({"RTBA_HOME": str(tmp_path)})
    assert customer_ref(on, "bob") == expected("bob")
    assert customer_ref(on, expected("bob")) == expected("bob")  # a pseudonym as read off
    assert customer_ref(off, "bob") == "bob"
    assert KEY not in repr(on)

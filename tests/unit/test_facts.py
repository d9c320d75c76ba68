"""The population facts' definition (streams.state.facts): what one stored state adds,
the deltas a writer applies, and the shard a customer's contribution lives in.

The expected fields are written out here from the state's attributes (the read side's
contract: docs/population.md, "Population facts"); nothing of facts.py computes them.
"""

from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from online_models.clusters import ClusterSnapshot
from online_models.customer import CustomerState
from online_models.days import days_in
from online_models.features import FEATURES
from online_models.rfm import RFMScorer
from streams.processing.pipeline import (
    Models,
    Record,
    decode_batch,
    fold_batch,
    lookups,
    reassign_clusters,
    rescore_due,
)
from streams.processing.schemas import Limits
from streams.state import facts
from streams.state.keys import Keys
from tests.reference_facts import add as added
from tests.reference_facts import contribution as expected
from tests.reference_facts import written_population as facts_of

T0 = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
DAY = 86_400_000


def bought(*amounts: str, refunds: tuple[str, ...] = ()) -> CustomerState:
    state = CustomerState("c1")
    for i, amount in enumerate(amounts):
        assert state.apply_purchase(T0 + i * DAY, Decimal(amount), f"o{i}")
    for i, amount in enumerate(refunds):
        assert state.apply_refund(T0 + (len(amounts) + i) * DAY, Decimal(amount), f"o{i}",
                                  f"r{i}")  # fmt: skip
    return state


def test_a_customer_with_no_purchase_counts_once_and_in_no_segment():
    state = CustomerState("c1")
    state.apply_click(T0, "view")
    assert facts.contribution(state) == {"customers": 1, "without_purchase": 1}


def test_a_free_order_is_a_purchase_with_no_cents():
    state = bought("0")
    state.segment = "New"
    got = facts.contribution(state)
    assert got == expected(state)
    assert got["seg:New:purchases"] == 1 and "seg:New:cents" not in got  # 0: left out
    assert got["hist:m:-2147483648"] == 1 and "without_purchase" not in got


def test_refunded_to_nothing_leaves_no_purchase_and_no_segment_sums():
    state = bought("40.00", refunds=("40.00",))
    assert state.purchases == 0 and state.last_purchase_ms is None
    state.segment = None  # as the evaluation after that refund stores it
    assert facts.contribution(state) == {"customers": 1, "without_purchase": 1}


def test_segment_cluster_and_audiences_each_add_their_fields():
    state = bought("19.99", "0.005", "12.34")  # 32.335: 3233.5 cents, half to even
    state.segment, state.cluster_id = "Champions", 3
    state.audiences = {"gift-browsers": T0, "holiday-big-spenders": T0 + DAY}
    got = facts.contribution(state)
    assert got == expected(state)
    assert got["seg:Champions:cents"] == 3234
    assert got["seg:Champions:lp_ms"] == T0 + 2 * DAY
    assert got["cluster:3"] == got["audience:gift-browsers"] == 1


def test_cents_round_half_to_even_and_are_capped():
    assert facts.cents(Decimal("0.125")) == 12 and facts.cents(Decimal("0.135")) == 14
    assert facts.cents(Decimal("123456789012.34")) == 10**10  # capped (docs/population.md)


def test_the_last_purchase_day_is_the_namespaces_calendar_day():
    state = bought("10")  # 22:13 UTC: the next day in Tokyo (UTC+9)
    tokyo = facts.contribution(state, days_in("Asia/Tokyo"))
    assert tokyo == expected(state, utc_offset_ms=9 * 3_600_000)
    assert tokyo != facts.contribution(state)


# -- deltas -------------------------------------------------------------------

SEGMENTS = ["Champions", "Loyal", "At Risk", "Lost", "New"]


@st.composite
def states(draw) -> CustomerState:
    state = CustomerState("c1")
    if draw(st.booleans()):
        state.last_purchase_ms = T0 + draw(st.integers(0, 900)) * DAY
        state.purchases = draw(st.integers(1, 60))
        state.gross = Decimal(draw(st.integers(0, 10**9))) / 100
        state.refunds = min(state.gross, Decimal(draw(st.integers(0, 10**6))) / 100)
    state.segment = draw(st.none() | st.sampled_from(SEGMENTS))
    state.cluster_id = draw(st.none() | st.integers(0, 9))
    chosen = draw(st.sets(st.sampled_from(["a1", "a2", "a3"])))
    state.audiences = dict.fromkeys(chosen, T0)
    return state


@settings(max_examples=200, deadline=None)
@given(st.lists(states(), min_size=1, max_size=8))
def test_a_customers_deltas_add_up_to_its_last_contribution(history):
    total, before = {}, None
    for state in history:
        after = facts.contribution(state)
        total = added(total, facts.delta(before, after))
        before = after
        assert total == expected(state)  # written so far: the last state's contribution
    assert added(total, facts.delta(before, None)) == {}  # erased: nothing left
    assert facts.delta(before, before) == {}


# -- shards -------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=40), st.sampled_from(["behavior", "t1", "shop.eu-2"]))
@example("a{b}c", "behavior")
@example("}{", "behavior")
@example("{}", "t1")
@example("50%{off}", "t1")
def test_a_customers_facts_shard_is_in_its_own_cluster_slot(customer_id, namespace):
    keys = Keys(namespace)
    slot = key_slot(keys.customer(customer_id).encode())
    shard = facts.shard_of(customer_id, clustered=True)
    assert shard == slot and key_slot(keys.facts(shard).encode()) == slot
    assert facts.shard_of(customer_id, clustered=False) == slot % 16


def test_every_slot_has_a_shard_key_of_its_own():
    keys = Keys("ns")
    names = facts.shard_keys(keys, clustered=True)
    assert len(set(names)) == 16_384
    assert [key_slot(n.encode()) for n in names] == list(range(16_384))
    assert facts.shard_keys(keys, clustered=False) == names[:16]


# -- writers: every written state carries its delta --------------------------


def purchase(i: int, cid: str, ts: int, amount: str = "25.00") -> Record:
    body = {"event_id": f"e{i}", "customer_id": cid, "type": "purchase", "order_id": f"o{i}",
            "amount": amount, "ts": ts}  # fmt: skip
    return Record(0, i, cid.encode(), json.dumps(body).encode())


def test_fold_tick_and_sweep_deltas_keep_the_facts_equal_to_the_stored_states():
    """A store's life in memory: each write bumps the version and adds its delta; the sum
    of the deltas stays the sum of the stored states' contributions, written out here."""
    stored: dict[str, CustomerState] = {}
    total: dict[str, int] = {}
    models = Models(RFMScorer())

    def write(out):
        for cid, state in out.states.items():
            state.version += 1
            stored[cid] = state
        for delta in out.fact_deltas.values():
            summed = added(total, delta)
            total.clear()
            total.update(summed)
        assert set(out.fact_deltas) <= set(out.states)

    def population() -> dict[str, int]:
        return facts_of(stored.values())

    records = [purchase(i, f"c{i % 7}", T0 + i * 3 * DAY, f"{10 + i}.50") for i in range(30)]
    for at in range(0, 30, 6):  # batches over overlapping customers
        valid, _ = decode_batch(records[at : at + 6], T0 + 400 * DAY, Limits())
        loaded = {cid: stored.get(cid, CustomerState(cid)) for cid in lookups(valid)}
        write(fold_batch(valid, loaded, models))
        assert total == population()
    segments = {k for k in total if k.startswith("seg:")}
    write(rescore_due(list(stored.values()), T0 + 3000 * DAY, models))  # years of silence
    assert total == population() and {k for k in total if k.startswith("seg:")} != segments
    width = len(FEATURES)
    snapshot = ClusterSnapshot(1, [4], np.zeros((1, width)), np.zeros(width), np.ones(width))
    write(reassign_clusters(list(stored.values()), Models(RFMScorer(), clusters=snapshot)))
    assert total == population() and total["cluster:4"] == len(stored) == 7

"""Audience definitions and membership as pure functions: the grammar refuses what it
cannot evaluate with a message that says where; customers enter when a condition holds
and leave at the exact millisecond a window expires; logs stay bounded; the ids are
deterministic; a redelivered record counts once."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from online_models.churn import ModifiedBGNBD
from online_models.churn_risk import ChurnScorer
from online_models.customer import MS_PER_DAY, CustomerState
from online_models.rfm import RFMScorer
from streams.audiences.definitions import EXAMPLE, MAX_AT_LEAST, DefinitionError, load, parse
from streams.processing.pipeline import (
    Models,
    Record,
    fold_batch,
    next_due_ms,
    reevaluate_audiences,
    rescore_due,
)
from streams.processing.schemas import Click, Purchase

T0 = 1_733_000_000_000
HOUR = 3_600_000


def definitions(*audiences: dict) -> str:
    return json.dumps({"audiences": list(audiences)})


def audience(when: dict, id: str = "a") -> dict:
    return {"id": id, "name": id.upper(), "when": when}


GIFTS_TWICE = audience({"count": "view", "category": "gifts", "within_days": 7, "at_least": 2},
                       "gifts")  # fmt: skip


def models(*audiences: dict, version: int = 1, churn: ChurnScorer | None = None) -> Models:
    return Models(RFMScorer(), churn, audiences=parse(definitions(*audiences)),
                  audiences_version=version)  # fmt: skip


class Feed:
    """Records of one partition, offsets counted."""

    def __init__(self):
        self.offset = -1

    def __call__(self, *events) -> list:
        out = []
        for event in events:
            self.offset += 1
            out.append((Record(0, self.offset, b"k", b"{}"), event))
        return out


def view(cid: str, ts: int, category: str = "gifts", n: int = 0) -> Click:
    return Click(event_id=f"{cid}-v{ts}-{n}", customer_id=cid, type="click", action="view",
                 category=category, ts=ts)  # fmt: skip


def buy(cid: str, ts: int, amount: str, order: str, category: str | None = None) -> Purchase:
    items = [{"product_id": "p", "category": category, "quantity": 1, "price": amount}]
    return Purchase(event_id=f"{cid}-{order}", customer_id=cid, type="purchase", order_id=order,
                    amount=amount, ts=ts, items=items if category else [])  # fmt: skip


def changes(out) -> list[tuple]:
    return [(c.customer_id, c.audience, c.change, c.at_ms) for c in out.audience_changes]


# -- the grammar -----------------------------------------------------------------------


def test_the_example_set_parses_and_names_the_logs_it_needs():
    example = load(EXAMPLE)
    assert [a.id for a in example.audiences] == ["gift-browsers", "holiday-big-spenders",
                                                 "cart-abandoners", "lapsed-loyals",
                                                 "champions-at-risk"]  # fmt: skip
    assert example.logs == {"view:toys": (7 * MS_PER_DAY, 2),
                            "purchase:*": (30 * MS_PER_DAY, 2),
                            "add_to_cart:*": (2 * MS_PER_DAY, 1)}  # fmt: skip
    assert load(EXAMPLE).digest == example.digest  # the same definitions, the same name


@pytest.mark.parametrize("when, words", [
    ({"field": "segmnet", "in": ["Lost"]}, ["field", "segment"]),
    ({"field": "monetary", "gte": 1, "lt": 5}, ["exactly one"]),
    ({"field": "monetary", "in": [1]}, ["is a number"]),
    ({"field": "segment", "gte": 3}, ["takes a list"]),
    ({"field": "segment", "in": ["Champs"]}, ["unknown segment 'Champs'"]),
    ({"field": "cluster", "in": ["three"]}, ["cluster ids are integers"]),
    ({"count": "view", "within_days": 7, "at_least": MAX_AT_LEAST + 1}, ["at_least"]),
    ({"count": "view", "within_days": 0, "at_least": 1}, ["within_days"]),
    ({"count": "refund", "within_days": 7, "at_least": 1}, ["refunds are not counted"]),
    ({"count": "view", "category": "*", "within_days": 7, "at_least": 1}, ["leave category out"]),
    ({"count": "tap", "within_days": 7, "at_least": 1}, ["cannot count 'tap'", "wishlist"]),
    ({"every": []}, ["a condition is an object with one of"]),
    ({"all": []}, ["all"]),
    ({"not": {"field": "monetary", "gte": float("inf")}}, ["finite"]),
])  # fmt: skip
def test_a_condition_it_cannot_evaluate_is_refused_saying_where(when, words):
    with pytest.raises(DefinitionError) as caught:
        parse(definitions(audience(when)), "my.json")
    message = str(caught.value)
    assert message.startswith("my.json: audiences.0") and "\n" not in message
    assert all(w in message for w in words), message


def test_ids_must_be_unique_slugs_and_the_file_json():
    with pytest.raises(DefinitionError, match="defined twice"):
        parse(definitions(GIFTS_TWICE, GIFTS_TWICE))
    with pytest.raises(DefinitionError, match="id"):
        parse(definitions({**GIFTS_TWICE, "id": "Gifts Twice!"}))
    with pytest.raises(DefinitionError, match="not JSON"):
        parse("audiences: []")
    with pytest.raises(DefinitionError, match="cannot read"):
        load("/nonexistent/audiences.json")
    with pytest.raises(DefinitionError, match="at most 50|50"):
        parse(definitions(*[{**GIFTS_TWICE, "id": f"a{i}"} for i in range(51)]))


# -- membership in event time ------------------------------------------------------------


def test_enters_on_the_second_view_and_leaves_the_millisecond_the_first_expires():
    m, feed = models(GIFTS_TWICE), Feed()
    state = CustomerState("c")
    out = fold_batch(feed(view("c", T0), view("c", T0 + 2 * HOUR)), {"c": state}, m)
    assert changes(out) == [("c", "gifts", "enter", T0 + 2 * HOUR)]
    expiry = T0 + 7 * MS_PER_DAY
    assert out.due["c"] == expiry
    assert not rescore_due([state], expiry - 1, m).audience_changes  # not a ms early
    left = rescore_due([state], expiry + 10 * MS_PER_DAY, m)
    assert changes(left) == [("c", "gifts", "exit", expiry)]
    assert [c.cause.reason for c in left.audience_changes] == ["time"]
    assert state.audiences == {} and state.recent == {}  # nothing left any count reads


def test_a_new_event_before_the_expiry_keeps_the_customer_in():
    m, feed = models(GIFTS_TWICE), Feed()
    state = CustomerState("c")
    fold_batch(feed(view("c", T0), view("c", T0 + HOUR)), {"c": state}, m)
    out = fold_batch(feed(view("c", T0 + 6 * MS_PER_DAY)), {"c": state}, m)
    assert not out.audience_changes and out.due["c"] == T0 + HOUR + 7 * MS_PER_DAY


def test_not_of_a_value_the_customer_lacks_holds():
    m = models(audience({"not": {"field": "churn_risk", "gte": 0.5}}, "safe"),
               audience({"field": "churn_risk", "lt": 0.5}, "safe-known"))  # fmt: skip
    out = fold_batch(Feed()(view("c", T0)), {"c": CustomerState("c")}, m)
    assert changes(out) == [("c", "safe", "enter", T0)]  # no churn model: no risk to compare


def test_monetary_is_compared_exactly():
    m = models(audience({"field": "monetary", "gte": 100.1}, "rich"))
    state = CustomerState("c")
    out = fold_batch(Feed()(buy("c", T0, "100.10", "o1")), {"c": state}, m)
    assert changes(out) == [("c", "rich", "enter", T0)]


def test_logs_stay_bounded_and_late_events_out_of_the_window_do_not_count():
    m, feed = models(GIFTS_TWICE), Feed()
    state = CustomerState("c")
    fold_batch(feed(*[view("c", T0 + i, n=i) for i in range(500)]), {"c": state}, m)
    assert state.recent == {"view:gifts": [T0 + 498, T0 + 499]}  # the two newest: all it needs
    fold_batch(feed(view("c", T0 + 30 * MS_PER_DAY, n=1)), {"c": state}, m)
    out = fold_batch(feed(view("c", T0 + 20 * MS_PER_DAY, n=2)), {"c": state}, m)  # late
    assert state.recent == {"view:gifts": [T0 + 30 * MS_PER_DAY]}
    assert not out.audience_changes and state.audiences == {}


def test_a_purchase_counts_once_per_category_and_once_in_all_purchases():
    m = models(audience({"count": "purchase", "category": "toys", "within_days": 1,
                         "at_least": 1}, "toys"),
               audience({"count": "purchase", "within_days": 1, "at_least": 2}, "two"))  # fmt: skip
    state = CustomerState("c")
    out = fold_batch(Feed()(buy("c", T0, "5", "o1", "toys"), buy("c", T0 + 1, "5", "o2")),
                     {"c": state}, m)  # fmt: skip
    assert changes(out) == [("c", "toys", "enter", T0), ("c", "two", "enter", T0 + 1)]


def test_a_redelivered_record_is_logged_once_and_ids_are_deterministic():
    m = models(GIFTS_TWICE)
    records = Feed()(view("c", T0), view("c", T0 + HOUR))
    first, again = CustomerState("c"), CustomerState("c")
    one = fold_batch(records, {"c": first}, m)
    fold_batch(records, {"c": first}, m)  # redelivered after a crash: already applied
    assert first.recent == {"view:gifts": [T0, T0 + HOUR]}
    two = fold_batch(records, {"c": again}, m)
    assert [c.event_id for c in one.audience_changes] == [c.event_id for c in two.audience_changes]
    assert one.audience_changes[0].to_json()["definitions"] == 1


def test_the_churn_risk_crossing_is_a_due_time_and_the_customer_enters_then():
    model = ModifiedBGNBD()
    model.params = {"r": 0.8, "alpha": 3.0, "a": 0.9, "b": 2.2}
    churn = ChurnScorer(model, threshold=0.9, rearm_below=0.5)  # the alert's: not 0.5
    m = models(audience({"field": "churn_risk", "gte": 0.5}, "risky"), churn=churn)
    state = CustomerState("c")
    feed = Feed()
    fold_batch(feed(*[buy("c", T0 + i * 7 * MS_PER_DAY, "20", f"o{i}") for i in range(4)]),
               {"c": state}, m)  # fmt: skip
    crossing = churn.risk_crossing_ms(state, 0.5)
    assert next_due_ms(state, m) <= crossing
    out = rescore_due([state], crossing + 400 * MS_PER_DAY, m)
    entered = [c for c in out.audience_changes if c.change == "enter"]
    assert [(c.audience, c.at_ms) for c in entered] == [("risky", crossing)]
    assert churn.risk(state, crossing) >= 0.5 > churn.risk(state, crossing - 1)


def test_a_clv_condition_turns_at_the_millisecond_it_is_crossed():
    from online_models.churn import GammaGamma

    model = ModifiedBGNBD()
    model.params = {"r": 0.8, "alpha": 3.0, "a": 0.9, "b": 2.2}
    spend = GammaGamma()
    spend.params = {"p": 6.0, "q": 4.0, "gamma": 15.0}
    churn = ChurnScorer(model, spend)
    m = models(audience({"field": "clv", "gte": 50}, "valuable"), churn=churn)
    state = CustomerState("c")
    fold_batch(Feed()(*[buy("c", T0 + i * 7 * MS_PER_DAY, "40", f"o{i}") for i in range(6)]),
               {"c": state}, m)  # fmt: skip
    assert state.audiences  # in while it keeps buying
    out = rescore_due([state], T0 + 3000 * MS_PER_DAY, m)
    (left,) = [c for c in out.audience_changes if c.change == "exit"]
    clv = lambda t: churn.score(state, t)["predicted_clv_365d"]  # noqa: E731
    assert clv(left.at_ms) < 50 <= clv(left.at_ms - 1)


def test_new_definitions_move_customers_and_drop_audiences_no_longer_defined():
    old, feed = models(GIFTS_TWICE), Feed()
    state = CustomerState("c")
    fold_batch(feed(view("c", T0), view("c", T0 + HOUR), buy("c", T0 + HOUR, "300", "o")),
               {"c": state}, old)  # fmt: skip
    assert set(state.audiences) == {"gifts"}
    new = models(audience({"field": "monetary", "gte": 250}, "big"), version=2)
    out = reevaluate_audiences([state], new)
    assert changes(out) == [("c", "gifts", "exit", T0 + HOUR), ("c", "big", "enter", T0 + HOUR)]
    assert {c.cause.reason for c in out.audience_changes} == {"definitions"}
    assert out.states == {"c": state} and state.recent == {}  # the gifts log is not read now
    assert not reevaluate_audiences([replace(state)], new).states  # nothing more to write

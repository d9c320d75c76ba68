import json
from decimal import Decimal

import pytest

from online_models.churn import ModifiedBGNBD
from online_models.churn_risk import ChurnScorer
from online_models.customer import CustomerState
from online_models.rfm import RFMScorer
from streams.processing.outbox import Entry, entries_for
from streams.processing.pipeline import (
    Cause,
    Models,
    Record,
    decode_batch,
    fold_batch,
    lookups,
    next_due_ms,
    reassign_clusters,
    rescore_due,
)
from streams.processing.schemas import Limits
from streams.state import state_codec

NOW = 1_800_000_000_000
DAY = 86_400_000


def rec(offset, obj, partition=0):
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return Record(partition, offset, b"k", raw)


def purchase(i, cid="c1", amount="20", ts=1_700_000_000_000, order=None):
    return {"event_id": f"e{i}", "customer_id": cid, "type": "purchase",
            "order_id": order or f"o{i}", "amount": amount, "ts": ts}  # fmt: skip


def as_stored(state: CustomerState, with_orders: bool = False) -> CustomerState:
    """The state as the store hands it back after writing it (its orders parsed only
    ``with_orders``)."""
    raw = f"{state.version}|".encode() + state_codec.encode(state)
    return state_codec.decode(state.customer_id, raw, with_orders)


def run(records, states=None):
    valid, rejected = decode_batch(records, NOW, Limits())
    if states is None:
        states = {cid: CustomerState(cid) for cid in lookups(valid)}
    return fold_batch(valid, states, Models(RFMScorer())), rejected


def test_first_assignment_then_only_real_changes():
    out, _ = run([
        rec(0, purchase(0, amount="20")),
        rec(1, purchase(1, amount="20", ts=1_700_000_000_000 + DAY)),  # 2 orders: F=2
        rec(2, purchase(2, amount="20", ts=1_700_000_000_000 + DAY, order="o1")),  # duplicate
    ])  # fmt: skip
    pairs = [(c.from_segment, c.to_segment) for c in out.changes]
    assert pairs == [(None, "New"), ("New", "Potential Loyalists")]
    assert (out.applied, out.duplicates) == (2, 1)
    assert out.changes[1].at_ms == 1_700_000_000_000 + DAY


def test_event_ids_are_deterministic_and_distinct():
    a, _ = run([rec(0, purchase(0)), rec(1, purchase(1, cid="c2"))])
    b, _ = run([rec(0, purchase(0)), rec(1, purchase(1, cid="c2"))])
    assert [c.event_id for c in a.changes] == [c.event_id for c in b.changes]
    assert len({c.event_id for c in a.changes}) == 2
    assert a.changes[0].to_json()["from"] is None


def test_redelivered_records_change_nothing():
    first, _ = run([rec(0, purchase(0)), rec(1, purchase(1, ts=1_700_000_000_000 + DAY))])
    # What the store would hand back after writing the first batch:
    stored = as_stored(first.states["c1"], with_orders=True)
    again, _ = run([rec(0, purchase(0)), rec(1, purchase(1))], {"c1": stored})
    assert again.redelivered == 2 and again.applied == 0 and not again.changes
    assert again.samples == {}  # nothing new for the cluster trainer either
    assert stored.purchases == 2


def test_bad_records_are_set_aside_and_the_rest_applies():
    out, rejected = run([rec(0, b"{oops"), rec(1, purchase(1)), rec(2, {"type": "nope"})])
    assert [r.offset for r, _ in rejected] == [0, 2]
    assert out.applied == 1


def test_marks_are_kept_per_partition_with_lateness_applied():
    out, _ = run([
        rec(0, {"type": "watermark", "ts": 10_000}, partition=0),
        rec(1, purchase(1, ts=5_000), partition=0),
        rec(0, purchase(2, ts=90_000), partition=1),
    ])  # fmt: skip
    assert out.explicit_watermark == {0: 10_000}
    assert out.max_event_ts == {0: 10_000, 1: 90_000}
    # partition 0: its producer watermark; partition 1: its max event time less lateness
    assert out.partition_marks(allowed_lateness_ms=1_000) == {0: 10_000, 1: 89_000}
    assert set(out.states) == {"c1"}


def test_the_watermark_is_the_least_partition_mark():
    from streams.state.store import Marks

    marks = Marks.parse({b"p:0": b"500", b"p:1": b"200", b"max_event_ts": b"900"})
    assert marks.watermark() == 200 and marks.max_event_ts == 900
    assert Marks.parse({}).watermark() is None


def test_state_round_trips_through_the_state_codec():
    out, _ = run([rec(0, purchase(0, amount="12.34")),
                  rec(1, {"event_id": "x", "customer_id": "c1", "type": "click",
                          "action": "view", "category": "a:b", "ts": 1})])  # fmt: skip
    state = out.states["c1"]
    back = as_stored(state)
    for attr in ("first_purchase_ms", "purchases", "gross", "clicks", "categories", "segment",
                 "applied_offset", "first_day_amount", "version"):  # fmt: skip
        assert getattr(back, attr) == getattr(state, attr)


T0 = 1_700_000_000_000


def champion() -> CustomerState:
    """Ten purchases a week apart, 3,000 in total: R=5, F=5, M=5."""
    state = CustomerState("champ")
    for week in range(10):
        state.apply_purchase(T0 + week * 7 * DAY, Decimal("300"), f"o{week}")
    state.segment = "Champions"
    return state


def test_silent_champion_decays_through_each_segment_at_its_exact_time():
    rfm = RFMScorer()  # recency edges 30, 90, 180, 365 days
    state = champion()
    last = state.last_purchase_ms
    out = rescore_due([state], last + 400 * DAY, Models(rfm))
    steps = [(c.from_segment, c.to_segment, c.at_ms, c.cause.reason) for c in out.changes]
    assert steps == [
        ("Champions", "Loyal", last + 30 * DAY + 1, "time"),  # R 5 -> 4
        (
            "Loyal",
            "Can't Lose Them",
            last + 180 * DAY + 1,
            "time",
        ),  # R 3 -> 2 (R 4 -> 3 stays Loyal)
    ]
    assert out.due["champ"] is None  # past the last edge: nothing left to wake up for
    assert state.evaluated_ms == last + 365 * DAY + 1


def test_rescoring_stops_at_the_watermark_and_schedules_the_next_edge():
    state = champion()
    last = state.last_purchase_ms
    out = rescore_due([state], last + 100 * DAY, Models(RFMScorer()))
    assert [c.to_segment for c in out.changes] == ["Loyal"]
    assert out.due["champ"] == last + 180 * DAY + 1
    again = rescore_due([state], last + 100 * DAY, Models(RFMScorer()))
    assert again.changes == []  # ticking twice at the same watermark emits nothing new


def test_retention_makes_a_silent_customer_due_and_then_expired_not_rescored():
    retention = 400 * DAY
    state = champion()
    last = state.last_event_ms
    models = Models(RFMScorer(), retention_ms=retention)
    out = rescore_due([state], last + 399 * DAY, models)  # walks every edge, as without
    assert [c.to_segment for c in out.changes] == ["Loyal", "Can't Lose Them"]
    assert out.due["champ"] == last + retention and not out.expired  # due for its end
    gone = rescore_due([state], last + retention, models)
    assert gone.expired == {"champ": state.version} and not gone.states and not gone.changes
    browser = CustomerState("window-shopper", last_event_ms=last)  # clicks, no purchase
    assert next_due_ms(browser, models) == last + retention
    assert next_due_ms(browser, Models(RFMScorer())) is None  # without retention: never


def scorer_with_churn() -> Models:
    model = ModifiedBGNBD()
    model.params = {"r": 0.8, "alpha": 3.0, "a": 0.9, "b": 2.2}
    return Models(RFMScorer(), ChurnScorer(model, threshold=0.7, rearm_below=0.5))


def test_churn_alert_fires_once_at_the_crossing_and_rearms_after_a_purchase():
    models = scorer_with_churn()
    state = champion()
    crossing = models.churn.risk_crossing_ms(state)
    assert next_due_ms(state, models) <= crossing
    out = rescore_due([state], crossing + 500 * DAY, models)
    assert [a.at_ms for a in out.alerts] == [crossing]
    assert out.alerts[0].to_json()["churn_risk"] == pytest.approx(0.7, abs=1e-6)
    assert not state.churn_armed
    # A new purchase brings risk back down: armed again, and due at the new crossing.
    later = crossing + 600 * DAY
    fresh = rec(99, purchase(99, cid="champ", ts=later))
    valid, _ = decode_batch([fresh], later + DAY, Limits())
    again = fold_batch(valid, {"champ": state}, models)
    assert state.churn_armed and again.alerts == []
    assert again.due["champ"] > later


def test_alert_ids_are_deterministic():
    models = scorer_with_churn()
    a = rescore_due([champion()], T0 + 2000 * DAY, models).alerts
    b = rescore_due([champion()], T0 + 2000 * DAY, models).alerts
    assert [x.event_id for x in a] == [x.event_id for x in b] and len(a) == 1


class _ExplodingChurn:
    """A churn scorer that breaks on one customer: stands in for any fold bug."""

    threshold, rearm_below = 0.7, 0.5

    def risk(self, state, now_ms):
        if state.customer_id == "poison":
            raise OverflowError("math range error")
        return 0.0

    def risk_crossing_ms(self, state):
        return None


def test_an_isolating_fold_sets_aside_only_the_record_that_raises():
    later = 1_700_000_000_000 + DAY
    records = [rec(0, purchase(0, cid="a")), rec(1, purchase(1, cid="poison")),
               rec(2, purchase(2, cid="b")), rec(3, purchase(3, cid="a", ts=later))]  # fmt: skip
    valid, _ = decode_batch(records, NOW, Limits())
    models = Models(RFMScorer(), _ExplodingChurn())
    with pytest.raises(OverflowError):
        fold_batch(valid, {c: CustomerState(c) for c in lookups(valid)}, models)
    states = {c: CustomerState(c) for c in lookups(valid)}
    out = fold_batch(valid, states, models, isolate=True)
    assert [(cid, r.offset, why.reason) for cid, r, why in out.set_aside] == [
        ("poison", 1, "unprocessable")
    ]
    assert "OverflowError" in out.set_aside[0][2].detail
    assert out.states["a"].purchases == 2 and out.states["b"].purchases == 1
    assert out.states["poison"].purchases == 0  # restored: nothing half-applied
    assert out.counts["poison"] == [0, 0, 0] and out.applied == 3
    assert {c.customer_id for c in out.changes} == {"a", "b"}


def test_change_sequence_rises_across_writers_and_is_kept_in_the_state():
    """Event-driven changes, then the tick's time-driven changes and alert on the state the
    event fold left (as the store hands it back): one sequence, no ties, no step back."""
    models = scorer_with_churn()
    first, _ = run([rec(0, purchase(0, cid="s")), rec(1, purchase(1, cid="s", ts=T0))])
    stored = as_stored(first.states["s"])
    later = rescore_due([stored], T0 + 2000 * DAY, models)
    seqs = [c.seq for c in first.outputs] + [x.seq for x in later.outputs]
    assert later.alerts and later.changes  # both kinds share the sequence
    assert seqs == list(range(1, len(seqs) + 1))
    assert stored.change_seq == seqs[-1]
    assert as_stored(stored).change_seq == seqs[-1]


def test_outbox_entries_round_trip_and_keep_the_events_bytes():
    out, _ = run([rec(0, purchase(0, cid="a|b")), rec(1, purchase(1, cid="a|b", ts=T0))])
    entries = entries_for(out.outputs, {"a|b": 7}, written_ms=123)
    assert [e.version for e in entries] == [8, 8] and [e.seq for e in entries] == [1, 2]
    for entry, change in zip(entries, out.outputs, strict=True):
        back = Entry.decode("a|b", entry.event_id, entry.encode())
        assert back == entry
        assert json.loads(back.payload) == change.to_json()
        assert json.loads(back.payload)["event_id"] == entry.event_id


def test_a_recreated_topics_records_are_new_not_redelivered():
    first, _ = run([rec(5, purchase(0)), rec(9, purchase(1, ts=T0))])
    stored = first.states["c1"]
    again = [Record(0, 2, b"k", json.dumps(purchase(7, ts=T0 + DAY)).encode(), epoch=1)]
    out, _ = run(again, {"c1": stored})
    assert (out.applied, out.redelivered) == (1, 0)
    # outputs it causes get ids of their own, not those of offset 2 in the first topic
    assert Cause.record(again[0], "purchase").key == "e1p0o2"
    assert Cause.record(rec(2, b"{}"), "purchase").key == "p0o2"
    stale = [Record(0, 9, b"k", json.dumps(purchase(8, ts=T0 + DAY)).encode(), epoch=0)]
    assert run(stale, {"c1": stored})[0].redelivered == 1


def test_the_trainer_snapshots_every_n_samples_but_not_more_often_than_its_interval():
    """At full speed `every` samples arrive several times a second; each snapshot is a
    k-means fit, so the trainer waits out its interval before the next one."""
    from online_models.clusters import StableClusterer
    from online_models.features import FEATURES
    from streams.processing.worker import ClusterTrainer

    now = [0.0]
    trainer = ClusterTrainer(None, StableClusterer(2, seed=1), every=10, warmup=0,
                             min_interval_s=5.0, clock=lambda: now[0])  # fmt: skip
    batch = [(f"c{i}", {"features": {f: float(i % 2) for f in FEATURES},
                        "last_event_ms": i}) for i in range(10)]  # fmt: skip
    assert trainer.learn(batch).version == 1
    now[0] = 4.9
    assert trainer.learn(batch) is None  # enough samples, too soon
    assert trainer.learn(batch) is None
    now[0] = 5.0
    assert trainer.learn(batch).version == 2  # the samples waiting are not lost
    assert trainer.learn(batch[:5]) is None  # and a new count starts


def test_the_sweep_moves_each_customer_to_its_nearest_centroid_and_announces_only_moves():
    """Forty customers of different habits, a snapshot of three clusters, the sweep's one
    distance computation against a nearest centroid worked out here, customer by
    customer, in plain Python (an unknown feature counts as the mean)."""
    import math

    import numpy as np

    from online_models.clusters import ClusterSnapshot
    from online_models.features import FEATURES, behaviour_features

    states = []
    for c in range(40):
        state = CustomerState(f"c{c}")
        for k in range(1 + c % 5):
            state.apply_purchase(T0 + (k * (c + 1)) * DAY, Decimal(10 + 7 * c), f"o{c}-{k}")
        state.evaluated_ms = T0 + 200 * DAY + (c % 9) * 30 * DAY  # time-driven "now"
        states.append(state)
    rows = [behaviour_features(s, s.clock_ms) for s in states]
    known = [[r[f] for r in rows if r.get(f) is not None and not math.isnan(r[f])]
             for f in FEATURES]  # fmt: skip
    mean = np.array([sum(v) / len(v) if v else 0.0 for v in known])
    scale = np.array([max(float(np.std(v)), 1.0) if v else 1.0 for v in known])

    def z(features: dict, j: int) -> float:
        v = features.get(FEATURES[j])
        return 0.0 if v is None or math.isnan(v) else (v - mean[j]) / scale[j]

    # Three customers' own points, a little off, as the centroids.
    centroids = np.array([[z(rows[i], j) + 0.1 for j in range(len(FEATURES))]
                          for i in (1, 17, 33)])  # fmt: skip
    snapshot = ClusterSnapshot(4, [7, 11, 13], centroids, mean, scale)

    def nearest(features: dict) -> int:
        best = None
        for cid, centre in zip([7, 11, 13], centroids.tolist(), strict=True):
            d2 = sum((z(features, j) - centre[j]) ** 2 for j in range(len(FEATURES)))
            if best is None or d2 < best[0]:
                best = (d2, cid)
        return best[1]

    for c, state in enumerate(states):  # some already sit in their cluster, some elsewhere
        state.cluster_id = {0: nearest(rows[c]), 1: 7}.get(c % 3)

    before = {s.customer_id: s.cluster_id for s in states}
    expected = {s.customer_id: nearest(row) for s, row in zip(states, rows, strict=True)}
    out = reassign_clusters(states, Models(RFMScorer(), None, snapshot))

    assert len(set(expected.values())) == 3  # the snapshot splits them
    assert {s.customer_id: s.cluster_id for s in states} == expected
    moved = {cid for cid in expected if expected[cid] != before[cid]}
    assert set(out.states) == moved and moved
    assert len(expected.keys() - moved) > 0  # some stayed, and are neither written nor sent
    assert {c.customer_id: (c.from_segment, c.to_segment) for c in out.changes} == {
        cid: (None if before[cid] is None else str(before[cid]), str(expected[cid]))
        for cid in moved
    }
    assert {(c.cause.reason, c.cause.key) for c in out.changes} == {("snapshot", "s4")}

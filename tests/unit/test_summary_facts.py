"""`rtba segments`, `GET /segments` and the dashboard sample from the population facts
(streams.read.views.summary_from_facts): sizes and means against the test's own list of
customers. The facts are built here from that list, field by field as the read side's
contract names them (streams/state/facts.py keeps them; nothing of it is used here)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from online_models.clusters import FEATURES, ClusterSnapshot
from online_models.rfm import RFMScorer, segments_of
from streams.read.views import summary_from_facts

DAY = 86_400_000
T0 = 1_750_000_000_000
CLASSIC = segments_of("classic")
CLASSIC_SCORER = RFMScorer(segment_map="classic")


def facts_of(customers: list[dict]) -> dict[str, int]:
    """The facts' fields summed over ``customers`` (zero fields left out, as Redis does)."""
    facts: dict[str, int] = {}

    def add(field: str, value: int) -> None:
        facts[field] = facts.get(field, 0) + value

    for c in customers:
        add("customers", 1)
        if c["last_ms"] is None:
            add("without_purchase", 1)
        if c["segment"] is not None:
            add(f"seg:{c['segment']}", 1)
            add(f"seg:{c['segment']}:lp_ms", c["last_ms"])
            add(f"seg:{c['segment']}:purchases", c["purchases"])
            add(f"seg:{c['segment']}:cents", c["cents"])
        if c["cluster"] is not None:
            add(f"cluster:{c['cluster']}", 1)
    return {k: v for k, v in facts.items() if v}


def expected_rows(customers: list[dict], as_of_ms: int) -> dict[str, dict]:
    """Each segment's size and means, customer by customer (the walk the facts replace;
    recency as of ``as_of_ms``, the mean then clamped at 0)."""
    rows = {}
    for name in CLASSIC:
        inside = [c for c in customers if c["segment"] == name]
        n = len(inside)
        rows[name] = {
            "segment": name,
            "customers": n,
            "mean_recency_days": max(0.0, sum((as_of_ms - c["last_ms"]) / DAY for c in inside) / n)
            if n else None,
            "mean_frequency": sum(c["purchases"] for c in inside) / n if n else None,
            "mean_monetary": sum(c["cents"] for c in inside) / 100 / n if n else None,
        }  # fmt: skip
    return rows


def buyer(segment: str, last_days_ago: float, purchases: int, spent: str, cluster=None) -> dict:
    dollars, _, cents = spent.partition(".")
    return {"segment": segment, "last_ms": T0 - int(last_days_ago * DAY),
            "purchases": purchases, "cents": int(dollars) * 100 + int(cents or 0),
            "cluster": cluster}  # fmt: skip


def clicker(cluster=None) -> dict:
    return {"segment": None, "last_ms": None, "purchases": 0, "cents": 0, "cluster": cluster}


def snapshot(ids: list[int]) -> ClusterSnapshot:
    width = len(FEATURES)
    return ClusterSnapshot(3, ids, np.eye(len(ids), width), np.zeros(width), np.ones(width))


def test_a_small_shop_by_hand():
    shop = [
        buyer("Champions", 2, 9, "2700.00", cluster=1),
        buyer("Champions", 4, 5, "1000.50", cluster=1),
        buyer("Lost", 400, 1, "50.00", cluster=2),
        clicker(cluster=2),
        clicker(),
    ]
    summary = summary_from_facts(facts_of(shop), T0, CLASSIC_SCORER, snapshot([1, 2, 3]))
    rows = {row["segment"]: row for row in summary["rfm"]}
    assert [row["segment"] for row in summary["rfm"]] == list(CLASSIC)  # every name, in order
    assert rows["Champions"] == {"segment": "Champions", "customers": 2, "mean_recency_days": 3.0,
                                 "mean_frequency": 7.0, "mean_monetary": 1850.25}  # fmt: skip
    assert rows["Lost"]["mean_recency_days"] == 400.0 and rows["Lost"]["mean_monetary"] == 50.0
    assert rows["At Risk"] == {"segment": "At Risk", "customers": 0, "mean_recency_days": None,
                               "mean_frequency": None, "mean_monetary": None}  # fmt: skip
    assert summary["customers"] == 5 and summary["without_purchase"] == 2
    sizes = {row["id"]: row["customers"] for row in summary["clusters"]}
    assert sizes == {1: 2, 2: 2, 3: 0}  # a cluster of the snapshot with nobody shows as 0
    assert all(row["label"] for row in summary["clusters"])


def test_as_of_moves_the_mean_recency_only():
    shop = [buyer("Loyal", 10, 3, "90.00"), buyer("Loyal", 30, 4, "10.00")]
    later = summary_from_facts(facts_of(shop), T0 + 5 * DAY, CLASSIC_SCORER)
    now = summary_from_facts(facts_of(shop), T0, CLASSIC_SCORER)
    loyal = {s["segment"]: s for s in later["rfm"]}["Loyal"]
    assert loyal["mean_recency_days"] == 25.0 and loyal["customers"] == 2
    assert {s["segment"]: s for s in now["rfm"]}["Loyal"]["mean_recency_days"] == 20.0
    # before every last purchase: the mean is clamped at 0, never negative
    early = summary_from_facts(facts_of(shop), T0 - 40 * DAY, CLASSIC_SCORER)
    assert {s["segment"]: s for s in early["rfm"]}["Loyal"]["mean_recency_days"] == 0.0


def test_no_facts_yet_and_a_cluster_that_died():
    empty = summary_from_facts({}, T0, CLASSIC_SCORER, None)
    assert empty["customers"] == 0 and empty["clusters"] == []
    assert all(row["customers"] == 0 and row["mean_monetary"] is None for row in empty["rfm"])
    # members of cluster 9 not yet moved after it died: shown, without a label
    rows = summary_from_facts({"customers": 1, "cluster:9": 1}, T0, CLASSIC_SCORER,
                              snapshot([1]))["clusters"]  # fmt: skip
    assert [(r["id"], r["label"], r["customers"]) for r in rows][1] == (9, None, 1)


CUSTOMER = st.one_of(
    st.builds(clicker, st.one_of(st.none(), st.integers(0, 5))),
    st.builds(
        lambda segment, ago_ms, purchases, cents, cluster: {
            "segment": segment,
            "last_ms": T0 - ago_ms,
            "purchases": purchases,
            "cents": cents,
            "cluster": cluster,
        },  # fmt: skip
        st.sampled_from(CLASSIC),
        st.integers(-30 * DAY, 3000 * DAY),  # a purchase past the as-of time too
        st.integers(1, 10_000),
        st.integers(0, 10**10),  # the facts' cap on one customer's cents
        st.one_of(st.none(), st.integers(0, 5)),
    ),
)


@given(st.lists(CUSTOMER, max_size=60), st.integers(-100 * DAY, 100 * DAY))
def test_figures_equal_the_walk_over_the_customers(customers, shift):
    as_of = T0 + shift
    summary = summary_from_facts(facts_of(customers), as_of, CLASSIC_SCORER, snapshot([0, 1, 2]))
    want = expected_rows(customers, as_of)
    for row in summary["rfm"]:
        expected = want[row["segment"]]
        assert row["customers"] == expected["customers"]
        for key in ("mean_recency_days", "mean_frequency", "mean_monetary"):
            if expected[key] is None:
                assert row[key] is None
            else:  # finite by construction, and the walk's figure
                assert math.isfinite(row[key]) and row[key] >= 0
                assert math.isclose(row[key], expected[key], rel_tol=1e-9, abs_tol=1e-6), key
    assert summary["customers"] == len(customers)
    assert summary["without_purchase"] == sum(c["last_ms"] is None for c in customers)
    sizes = {row["id"]: row["customers"] for row in summary["clusters"]}
    for cluster_id in range(6):
        assert sizes.get(cluster_id, 0) == sum(c["cluster"] == cluster_id for c in customers)

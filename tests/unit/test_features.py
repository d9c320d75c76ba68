"""Behaviour features: what is unknown stays unknown, and it does not decide a cluster."""

import json
import math
from decimal import Decimal

import numpy as np

from online_models.clusters import ClusterSnapshot, StableClusterer
from online_models.customer import CustomerState
from online_models.features import FEATURES, as_row, behaviour_features

DAY = 86_400_000


def browser(clicks: int) -> CustomerState:
    s = CustomerState("b")
    for i in range(clicks):
        s.apply_click(i * DAY, "view", "toys")
    return s


def test_a_customer_without_orders_has_no_per_order_figures():
    f = behaviour_features(browser(3), 3 * DAY)
    assert {k for k, v in f.items() if v is None} == {
        "basket_size", "discount_share", "rhythm", "order_value"}  # fmt: skip
    assert f["frequency"] == 0.0 and f["monetary"] == 0.0  # known zeros stay zeros


def test_order_value_is_net_of_refunds_per_counted_order():
    s = CustomerState("c")
    s.apply_purchase(0, Decimal("30"), "o1")
    s.apply_purchase(2 * DAY, Decimal("10"), "o2")
    s.apply_refund(3 * DAY, Decimal("10"), "o1", "r1")
    # (30 - 10 + 10) over two orders, computed by hand
    assert math.isclose(behaviour_features(s, 3 * DAY)["order_value"], math.log(1 + 15.0))


def test_an_unknown_feature_does_not_pull_towards_a_cluster():
    """Two centroids alike but for basket size: a non-buyer (basket unknown) sits at the
    mean, halfway, so the known features decide; with 0 for unknown, the small-basket
    cluster would take every non-buyer."""
    width = len(FEATURES)
    b = FEATURES.index("basket_size")
    r = FEATURES.index("recency")
    centroids = np.zeros((2, width))
    centroids[0, b], centroids[1, b] = -1.0, 1.0
    centroids[0, r], centroids[1, r] = 0.2, -0.2  # cluster 10 a little more lapsed
    snap = ClusterSnapshot(1, [10, 20], centroids, np.full(width, 1.0), np.ones(width))
    x = {f: 1.0 for f in FEATURES} | {"basket_size": None, "recency": 0.9}
    assert snap.assign(x) == 20  # recency below the mean: the more recent cluster
    x["recency"] = 1.1
    assert snap.assign(x) == 10


def test_a_snapshot_over_another_feature_set_is_not_used():
    model = StableClusterer(n_clusters=1, seed=1)
    for i in range(3):
        model.learn_one({"frequency": float(i)}, customer_id=str(i))
    stored = json.loads(json.dumps(model.snapshot().to_dict()))
    assert ClusterSnapshot.from_dict(stored) is not None
    older = {k: v for k, v in stored.items() if k != "features"}  # before S3's features
    older["centroids"] = [row[:10] for row in older["centroids"]]
    assert ClusterSnapshot.from_dict(older) is None


def test_as_row_marks_unknowns_nan():
    row = as_row({"recency": 2.0, "rhythm": None})
    assert row[FEATURES.index("recency")] == 2.0
    assert np.isnan(row[FEATURES.index("rhythm")]) and np.isnan(row[FEATURES.index("tenure")])

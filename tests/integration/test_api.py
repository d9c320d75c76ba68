"""The read API over a real Redis filled by the real pipeline (the CLI tests' shop):
answers checked against the independent batch computation, every list paginated, clear
4xx for bad or unknown input, and no 5xx for any operation and parameter (hypothesis)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from streams.api.app import create_api
from streams.api.history import sizes_sample
from streams.processing.schemas import iso
from streams.read.reader import StateReader
from streams.settings import Settings
from streams.state.keys import Keys
from streams.state.store import read_stat
from tests.integration import test_cli
from tests.reference import DAY, batch_state, epoch_ms

shop = test_cli.shop  # the fixture: a worker has taken the shop's events
expected_segments = test_cli.expected_segments
stored_segments = test_cli.stored_segments

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(shop):
    # a loopback Host: the API answers no other (DNS rebinding; test_api_security.py)
    with TestClient(create_api(shop.settings), base_url="http://127.0.0.1:8000") as client:
        yield client


def test_profiles_and_members_match_the_batch_computation(api, shop):
    want = expected_segments(shop.events)
    state = batch_state(shop.events)["champ"]
    champ = api.get("/customers/champ").json()
    assert champ["segment"] == want["champ"]
    assert champ["purchases"] == state["purchases"] and champ["monetary"] == float(
        state["monetary"]
    )
    # as of a time (a walk): the segments of that time
    segment, as_of = want["f000"], test_cli.END
    members = {c for c, s in want.items() if s == segment}
    seen, offset = [], 0
    while True:  # page through, 7 at a time
        page = api.get(f"/segments/{segment}/members",
                       params={"limit": 7, "offset": offset, "as_of": as_of}).json()  # fmt: skip
        assert page["total"] == len(members)
        seen += [m["customer_id"] for m in page["members"]]
        if not page["members"]:
            break
        offset += 7
    assert len(seen) == len(set(seen)) and set(seen) == members


@pytest.mark.parametrize("limit", [1, 50, 250])
def test_members_pages_are_the_stored_segments_in_id_order(api, shop, limit):
    """Without as_of: each customer's segment as stored (what /segments counts), from the
    index, in customer-id order, by cursor and by offset alike: a one-member segment a
    member a page, the ~600-member one 50 or 250 a page (on a Cluster each page reads
    16,384 shards: not 600 pages of one)."""
    stored = stored_segments(shop.events)
    sizes = {r["segment"]: r["customers"] for r in api.get("/segments").json()["rfm"]}
    by_size = sorted(set(stored.values()), key=lambda s: list(stored.values()).count(s))
    for segment in by_size[:1] if limit == 1 else by_size[-1:]:
        members = sorted(c for c, s in stored.items() if s == segment)
        by_cursor, after = [], None
        while True:
            params = {"limit": limit} | ({"after": after} if after else {})
            page = api.get(f"/segments/{segment}/members", params=params).json()
            assert page["total"] == len(members) == sizes[segment]
            assert all(m["customer_id"] for m in page["members"])
            by_cursor += [m["customer_id"] for m in page["members"]]
            after = page["next"]
            if after is None:
                break
        assert by_cursor == members
        assert len(by_cursor) > limit or limit == 1  # several pages, or a page of one
        offset = min(limit, len(members) - 1)
        page = api.get(f"/segments/{segment}/members",
                       params={"limit": limit, "offset": offset}).json()  # fmt: skip
        assert [m["customer_id"] for m in page["members"]] == members[offset : offset + limit]


def test_the_money_ranking_pages_through_everyone(api, shop):
    # most spent first (exact decimals), ties in customer-id order
    spent = sorted((-s["monetary"], c) for c, s in batch_state(shop.events).items())
    seen, after = [], None
    while True:
        params = {"order_by": "monetary", "limit": 97} | ({"after": after} if after else {})
        page = api.get("/customers", params=params).json()
        assert page["total"] == len(spent)
        seen += [(-row["monetary"], row["customer_id"]) for row in page["customers"]]
        after = page["next"]
        if after is None:
            break
    assert [c for _, c in seen] == [c for _, c in spent]
    assert [m for m, _ in seen] == [float(m) for m, _ in spent]
    walked = api.get("/customers", params={"order_by": "predicted_clv_365d", "after": "x"})
    assert walked.status_code == 422 and "offset" in walked.json()["detail"]
    # a cursor no page gave, an offset that would read the index wholesale: said, not served
    made_up = api.get("/customers", params={"order_by": "monetary", "after": "c001"})
    assert made_up.status_code == 422 and "next" in made_up.json()["detail"]
    for path, extra in (("/customers", {"order_by": "monetary"}), ("/segments/New/members", {})):
        deep = api.get(path, params={**extra, "offset": 10_001})
        assert deep.status_code == 422 and "after=" in deep.json()["detail"]
        assert api.get(path, params={**extra, "offset": 10_000}).status_code == 200


def expected_summary(events: list[dict], as_of_ms: int) -> dict[str, dict]:
    """Size and mean R/F/M of each stored segment, customer by customer."""
    state, stored, rows = batch_state(events), stored_segments(events), {}
    for name in set(stored.values()):
        inside = [state[c] for c, s in stored.items() if s == name]
        n = len(inside)
        rows[name] = {
            "segment": name, "customers": n,
            "mean_recency_days": pytest.approx(
                sum((as_of_ms - s["last_purchase_ms"]) / DAY for s in inside) / n, rel=1e-12),
            "mean_frequency": pytest.approx(sum(s["purchases"] for s in inside) / n, rel=1e-12),
            "mean_monetary": pytest.approx(
                float(sum(s["monetary"] for s in inside) / n), rel=1e-12),
        }  # fmt: skip
    return rows


def test_segments_and_the_dashboard_sample_equal_the_stored_segments(api, shop):
    """From the population facts (no walk): each customer counted in its stored segment,
    means as of the watermark, against the test's own fold of the shop's events."""
    want = expected_summary(shop.events, epoch_ms(test_cli.END))
    summary = api.get("/segments").json()
    assert {r["segment"]: r for r in summary["rfm"] if r["customers"]} == want
    assert summary["customers"] == len(batch_state(shop.events))
    assert summary["without_purchase"] == 0 and summary["watermark"] == iso(
        epoch_ms(test_cli.END))  # fmt: skip
    reader = StateReader(shop.settings)
    try:
        sample = sizes_sample(reader, 0, None)
    finally:
        reader.close()
    assert {s: n for s, n in sample["segments"].items() if n} == {
        s: row["customers"] for s, row in want.items()}  # fmt: skip
    assert sample["customers"] == summary["customers"]


def test_rankings_dlq_models_health(api, shop):
    top = api.get("/customers", params={"order_by": "monetary", "limit": 3}).json()
    # most spent first, ties in customer-id order (f249 and f499 both spent 259.50)
    spent = sorted((-float(s["monetary"]), c) for c, s in batch_state(shop.events).items())
    assert [c["customer_id"] for c in top["customers"]] == [c for _, c in spent[:3]]
    assert top["total"] == len(spent)
    assert api.get("/dlq").json() == {
        "total": 2,
        "by_reason": {"absurd_amount": 1, "invalid_json": 1},
    }
    assert api.get("/models").json()["rfm"]["edges"]["recency_days"] == [30, 90, 180, 365]
    assert api.get("/health").json()["status"] == "ok" and api.get("/ready").status_code == 200


def test_unknown_or_bad_input_is_a_clear_4xx(api, shop):
    assert api.get("/customers/nobody").status_code == 404
    assert "nobody" in api.get("/customers/nobody").json()["detail"]
    assert api.get("/segments/Whales/members").status_code == 404
    assert api.get("/clusters/999/members").status_code == 404
    assert api.get("/customers/champ", params={"as_of": "yesterday"}).status_code == 422
    assert api.get("/customers", params={"limit": 0}).status_code == 422
    assert api.get("/customers", params={"limit": 10_001}).status_code == 422
    assert api.get("/customers", params={"order_by": "height"}).status_code == 422


TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)
NUMBER = st.one_of(st.integers(-(10**12), 10**12), TEXT)


# Every operation of the OpenAPI document but the live feed, which never ends (its own
# test: tests/integration/test_dashboard.py).
def operations(api) -> list[str]:
    paths = api.get("/openapi.json").json()["paths"]
    return sorted(re.sub(r"\{[a-z_]+\}", "{x}", p) for p in paths if p != "/events/stream")


@hypothesis_settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pick=st.integers(0, 10_000),
    x=TEXT,
    limit=NUMBER,
    offset=NUMBER,
    as_of=st.one_of(st.none(), TEXT),
    order_by=TEXT,
    kind=st.one_of(st.none(), TEXT, st.sampled_from(["rfm", "cluster", "churn"])),
    customer=st.one_of(st.none(), TEXT),
)
def test_no_operation_and_parameter_gives_a_5xx(
    api, shop, pick, x, limit, offset, as_of, order_by, kind, customer
):
    from urllib.parse import quote

    paths = operations(api)
    path = paths[pick % len(paths)]
    url = path.replace("{x}", quote(x, safe="") or "x")
    params = {"limit": limit, "offset": offset, "order_by": order_by}
    for name, value in (("as_of", as_of), ("kind", kind), ("customer", customer)):
        if value is not None:
            params[name] = value
    answer = api.get(url, params=params)
    assert answer.status_code < 500, (url, params, answer.text[:300])


def test_openapi_lists_every_operation_and_the_property_test_covers_them(api):
    assert "/events/stream" in api.get("/openapi.json").json()["paths"]
    assert {
        "/customers/{x}", "/customers", "/segments", "/segments/{x}/members",
        "/clusters", "/clusters/{x}/members", "/models", "/dlq", "/health", "/ready", "/events",
        "/dashboard/history", "/metrics", "/audiences", "/audiences/{x}",
        "/audiences/{x}/members", "/audit",
    } == set(operations(api))  # fmt: skip


def test_audiences_their_members_and_unknown_ones(api, shop):
    # The shop's one customer with two orders within 30 days and $300 or more: champ.
    listed = api.get("/audiences").json()
    sizes = {row["id"]: row["members"] for row in listed["audiences"]}
    assert sizes["holiday-big-spenders"] == 1 and listed["version"] == 1
    detail = api.get("/audiences/holiday-big-spenders").json()
    assert detail["members"] == 1 and detail["when"]["all"][1] == {"field": "monetary", "gte": 300}
    page = api.get("/audiences/holiday-big-spenders/members", params={"limit": 5}).json()
    assert [m["customer_id"] for m in page["members"]] == ["champ"] and page["total"] == 1
    assert api.get("/customers/champ").json()["audiences"].keys() == {"holiday-big-spenders"}
    missing = api.get("/audiences/no-such-audience")
    assert missing.status_code == 404 and "holiday-big-spenders" in missing.json()["detail"]
    assert api.get("/audiences/no-such-audience/members").status_code == 404
    assert api.get("/audiences/Bad Id!").status_code == 422


def test_an_id_with_a_slash_is_addressable_as_is_or_percent_encoded(api, shop):
    """The audit: "a/b" was a 404, which automation reads as "no data". One purchase for
    it through the real pipeline (last in this module: the shop has one customer more)."""
    from producers.kafka import make_producer, send_all
    from tests.conftest import wait_for_records

    event = {"event_id": "slash-1", "customer_id": "a/b", "type": "purchase",
             "order_id": "slash-o1", "amount": "42.00", "ts": "2026-06-01T10:00:00Z"}  # fmt: skip
    producer = make_producer(shop.settings.kafka_bootstrap)
    send_all(producer, shop.settings.events_topic, [event])
    producer.close()
    counted = read_stat(shop.client, Keys(shop.settings.namespace), "records")
    wait_for_records(shop.client, shop.settings, int(counted) + 1, shop.worker)
    for path in ("/customers/a%2Fb", "/customers/a/b"):
        answer = api.get(path)
        assert answer.status_code == 200, (path, answer.text)
        assert (answer.json()["customer_id"], answer.json()["monetary"]) == ("a/b", 42.0)
    assert api.get("/customers/a%2Fc").status_code == 404
    # erased through the API with the admin token, and then gone
    admin = "admin-token-0123456789abcdef"
    chosen = Settings.from_env({**shop.env, "RTBA_API_ADMIN_TOKEN": admin})
    erasing = TestClient(create_api(chosen), base_url="http://127.0.0.1:8000")
    erased = erasing.delete("/customers/a%2Fb", headers={"Authorization": f"Bearer {admin}"})
    assert erased.status_code == 200 and erased.json()["customer_id"] == "a/b"
    assert api.get("/customers/a%2Fb").status_code == 404

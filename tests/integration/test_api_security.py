"""The API's doors, as the audit (issue #26) tried them, over a real Redis: a foreign Host
header is refused before any route runs (DNS rebinding), erasing needs the admin token
always and leaves an audit entry that holds the id's hash only (API and `rtba erase`),
no /docs page loads a CDN's scripts, every answer carries the security headers, the
live feed refuses stream N+1, and N calls of a population walk cost one walk per TTL.

Cheap: an empty namespace of its own, no worker; the erasure itself is replaced where
only the door is under test (tests/integration/test_erase.py erases for real).
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

import streams.erasure
from streams.api.app import create_api
from streams.read.reader import StateReader
from streams.settings import Settings
from streams.state.store import connect
from tests.conftest import json_lines, run_rtba

pytestmark = pytest.mark.integration

READ = "read-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"
FOREIGN = "rebind.attacker.example"


@pytest.fixture
def erasures(monkeypatch):
    """Replaces the erasure (Redis and Kafka) with a record of who was erased."""
    erased = []

    def fake(settings, client, customer_ids):
        erased.extend(customer_ids)
        return [{"customer_id": c, "had_state": True, "unsent_events": 0,
                 "tombstones": settings.output_topics} for c in customer_ids]  # fmt: skip

    monkeypatch.setattr(streams.erasure, "erase_customers", fake)
    return erased


def client_for(rtba_env, bind_host=None, **env) -> TestClient:
    """A client of an API with ``env`` added to the settings; requests go to localhost
    unless they say otherwise. No lifespan: the feed and the sampler stay off. Its
    ``walks`` list the API's walks over the population (each call of the reader's)."""
    settings = Settings.from_env({**rtba_env, **env})
    reader, walks = StateReader(settings), []
    everyone = reader.everyone

    def counted():
        walks.append(time.monotonic())
        return everyone()

    reader.everyone = counted
    app = (
        create_api(settings, reader)
        if bind_host is None
        else create_api(settings, reader, bind_host=bind_host)
    )
    client = TestClient(app, base_url="http://localhost:8000")
    client.walks = walks
    return client


def test_a_foreign_host_is_refused_before_any_route_runs(rtba_env, erasures):
    api = client_for(rtba_env, RTBA_API_ADMIN_TOKEN=ADMIN)
    walks = api.walks
    ranked = api.get("/customers", headers={"Host": FOREIGN})
    assert ranked.status_code == 400 and walks == []
    assert ranked.json() == {"detail": f"host {FOREIGN!r} is not one this API answers to: "
                                       "add it to RTBA_API_ALLOWED_HOSTS"}  # fmt: skip
    admin = {"Authorization": f"Bearer {ADMIN}"}
    erase = api.delete("/customers/bob", headers={"Host": f"{FOREIGN}:8000", **admin})
    assert erase.status_code == 400 and erasures == []
    # loopback names with any port, IPv6 in brackets, upper case and a final dot
    for host in ("localhost", "localhost:8000", "127.0.0.1:1234", "[::1]:8000", "[::1]",
                 "LOCALHOST.:80"):  # fmt: skip
        assert api.get("/health", headers={"Host": host}).status_code == 200, host
    for host in ("", "localhost.attacker.example", "127.0.0.1.nip.io:8000", "[::2]:8000"):
        assert api.get("/health", headers={"Host": host}).status_code == 400, host


def test_the_bind_address_and_the_setting_add_hosts_a_wildcard_does_not(rtba_env):
    bound = client_for(rtba_env, bind_host="10.1.2.3")
    assert bound.get("/health", headers={"Host": "10.1.2.3:8000"}).status_code == 200
    assert bound.get("/health", headers={"Host": "10.1.2.4:8000"}).status_code == 400
    everywhere = client_for(rtba_env, bind_host="0.0.0.0")
    assert everywhere.get("/health", headers={"Host": "0.0.0.0:8000"}).status_code == 400
    v6 = client_for(rtba_env, bind_host="fd00::5")
    assert v6.get("/health", headers={"Host": "[fd00::5]:8000"}).status_code == 200
    named = client_for(rtba_env, RTBA_API_ALLOWED_HOSTS="dash.example.com, *.shop.example")
    for host in ("dash.example.com:443", "eu.shop.example", "localhost:8000"):
        assert named.get("/health", headers={"Host": host}).status_code == 200, host
    assert named.get("/health", headers={"Host": "shop.example.evil"}).status_code == 400
    # any host only behind a token: without one, any page could read everything
    with pytest.raises(Exception, match="RTBA_API_ALLOWED_HOSTS='\\*' needs a token"):
        Settings.from_env({**rtba_env, "RTBA_API_ALLOWED_HOSTS": "*"})
    anywhere = client_for(rtba_env, RTBA_API_ALLOWED_HOSTS="*", RTBA_API_TOKEN=READ)
    assert anywhere.get("/health", headers={"Host": FOREIGN}).status_code == 200
    assert anywhere.get("/customers", headers={"Host": FOREIGN}).status_code == 401


def test_erase_needs_the_admin_token_always(rtba_env, erasures):
    # loopback, no token at all: reads are open, erasing is not
    open_api = client_for(rtba_env)
    assert open_api.get("/customers").status_code == 200
    refused = open_api.delete("/customers/bob")
    assert refused.status_code == 403 and erasures == []
    assert "RTBA_API_ADMIN_TOKEN" in refused.json()["detail"]
    assert "rtba erase" in refused.json()["detail"]
    # a read token and an admin token: the read token reads but does not erase
    api = client_for(rtba_env, RTBA_API_TOKEN=READ, RTBA_API_ADMIN_TOKEN=ADMIN)
    read, admin = ({"Authorization": f"Bearer {t}"} for t in (READ, ADMIN))
    assert api.get("/customers", headers=read).status_code == 200
    assert api.get("/customers", headers=admin).status_code == 200  # admin reads too
    assert api.delete("/customers/bob").status_code == 401
    assert api.delete("/customers/bob", headers=read).status_code == 403
    assert api.get("/audit", headers=read).status_code == 403
    assert erasures == []
    assert api.delete("/customers/bob", headers=admin).status_code == 200
    assert erasures == ["bob"]
    # the same token for both scopes would make the read token erase: refused
    with pytest.raises(Exception, match="must differ"):
        Settings.from_env({**rtba_env, "RTBA_API_TOKEN": READ, "RTBA_API_ADMIN_TOKEN": READ})


def expected_hash(settings: Settings, customer_id: str) -> str:
    """The documented rule (docs/security.md), written out: HMAC-SHA256 of the id under
    the namespace's salt, the ``salt`` field of ``<namespace>:erased``."""
    client = connect(settings.redis_url)
    try:
        salt = client.hget(f"{settings.namespace}:erased", "salt")
    finally:
        client.close()
    salt = salt if isinstance(salt, bytes) else salt.encode()
    return hmac.new(salt, customer_id.encode(), hashlib.sha256).hexdigest()


def test_erasures_are_audited_by_hash_from_the_api_and_the_cli(rtba_env, erasures):
    from streams.processing.topics import ensure_topics

    settings = Settings.from_env(rtba_env)
    ensure_topics(settings)  # `rtba erase` sends its tombstones there
    api = client_for(rtba_env, RTBA_API_ADMIN_TOKEN=ADMIN)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    before = int(time.time() * 1000)
    assert api.delete("/customers/carol@example.com", headers=admin).status_code == 200
    ran = run_rtba(rtba_env, "erase", "dave@example.com", "--yes", "--json", check=False)
    assert ran.returncode == 1, ran.stderr  # no state: tombstones sent, exit code 1
    assert json_lines(ran.stdout)[0]["had_state"] is False
    dave = expected_hash(settings, "dave@example.com")
    assert f"rtba audit: erase {dave[:16]} by cli" in ran.stderr  # and a log line

    entries = api.get("/audit", headers=admin).json()["entries"]
    assert [e["id_hmac"] for e in entries] == [
        expected_hash(settings, "dave@example.com"),
        expected_hash(settings, "carol@example.com"),
    ]
    cli, web = entries
    fingerprint = hashlib.sha256(ADMIN.encode()).hexdigest()[:12]
    assert (web["actor"], web["address"], web["outcome"]) == (
        f"api:admin:{fingerprint}", "testclient", "erased")  # fmt: skip
    assert cli["actor"].startswith("cli") and cli["outcome"] == "no-state"
    assert all(before <= e["at_ms"] <= time.time() * 1000 for e in entries)
    only = api.get("/audit", params={"customer_id": "carol@example.com"}, headers=admin).json()
    assert [e["entry"] for e in only["entries"]] == [web["entry"]]
    nobody = api.get("/audit", params={"customer_id": "erin@example.com"}, headers=admin)
    assert nobody.json()["entries"] == []
    # the stream holds no id, nor the token
    client = connect(settings.redis_url)
    try:
        raw = client.xrange(f"{settings.namespace}:audit")
        text = repr(raw)
        assert len(raw) == 2 and "carol" not in text and "dave" not in text
        assert ADMIN not in text
    finally:
        client.close()


def test_no_docs_page_loads_a_cdn_and_every_answer_has_the_security_headers(rtba_env):
    api = client_for(rtba_env, RTBA_API_TOKEN=READ)
    assert api.get("/docs").status_code in (401, 404) and api.get("/redoc").status_code in (
        401, 404)  # fmt: skip
    assert "cdn" not in api.get("/docs").text and "/customers" in api.get("/openapi.json").text
    answers = [api.get("/"), api.get("/health"), api.get("/customers"),  # a page, 200, 401
               api.get("/customers/x", headers={"Host": FOREIGN}),  # the host refusal
               api.get("/static/dashboard.js"), api.get("/nowhere")]  # fmt: skip
    assert [a.status_code for a in answers] == [200, 200, 401, 400, 200, 404]
    for answer in answers:
        headers = answer.headers
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "script-src 'self';" in csp  # no inline script, no other origin
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
    page = answers[0].text
    assert "<script>" not in page and "cdn" not in page.lower()


def test_a_population_walk_is_done_once_per_ttl_however_often_it_is_asked(rtba_env):
    api = client_for(rtba_env, RTBA_API_WALK_CACHE_S="600")  # no expiry during the test
    walks = api.walks
    clv = {"order_by": "predicted_clv_365d"}  # the ranking that still walks (S10)
    for offset in range(20):
        page = api.get("/customers", params={**clv, "offset": offset, "limit": 5})
        assert page.status_code == 200
    assert len(walks) == 1, walks
    # 16 clients at once on another endpoint: one walks, the others wait for its result
    then = {"as_of": "2026-01-01T00:00:00Z"}  # members as of a time: a walk (S10)
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda _: api.get("/segments/Champions/members",
                                                params=then).status_code, range(32)))  # fmt: skip
    assert codes == [200] * 32 and len(walks) == 2
    # sizes come from the population facts, members and the money ranking from the index:
    # no walk at all, however often (S10)
    for path in (
        "/segments",
        "/segments/Champions/members",
        "/customers?order_by=monetary",
        "/customers",
    ):  # the ranking by churn risk: from the day cells
        assert all(api.get(path).status_code == 200 for _ in range(5)) and len(walks) == 2
    # a short TTL: once it is over, the next call walks again
    brief = client_for(rtba_env, RTBA_API_WALK_CACHE_S="0.2")
    assert brief.get("/customers", params=clv).status_code == 200 and len(brief.walks) == 1
    time.sleep(0.3)
    assert brief.get("/customers", params=clv).status_code == 200 and len(brief.walks) == 2


def put_customers(settings: Settings, customer_ids: list[str], at_ms: int) -> None:
    """Customers with one 10.00 purchase each, written straight to Redis (no worker)."""
    from decimal import Decimal

    from online_models.customer import CustomerState
    from streams.state import state_codec
    from streams.state.keys import Keys
    from streams.state.store import write_due

    keys, client = Keys(settings.namespace), connect(settings.redis_url)
    try:
        for cid in customer_ids:
            state = CustomerState(cid, first_purchase_ms=at_ms, last_purchase_ms=at_ms,
                                  purchases=1, purchase_days=1, gross=Decimal("10.00"),
                                  first_day_amount=Decimal("10.00"), first_event_ms=at_ms,
                                  last_event_ms=at_ms)  # fmt: skip
            client.set(keys.customer(cid), b"1|" + state_codec.encode(state))
        write_due(client, keys, dict.fromkeys(customer_ids, at_ms))
    finally:
        client.close()


def test_an_erased_customer_leaves_the_cached_walks_at_once(rtba_env):
    """The review of S9: the erase emptied no walk cache, so /customers listed the erased
    id for up to RTBA_API_WALK_CACHE_S."""
    from streams.processing.topics import ensure_topics

    settings = Settings.from_env(rtba_env)
    ensure_topics(settings)  # the erase sends its tombstones there
    put_customers(settings, ["stays", "goes"], 1_700_000_000_000)
    api = client_for(rtba_env, RTBA_API_WALK_CACHE_S="600", RTBA_API_ADMIN_TOKEN=ADMIN)

    # members as of a time walk (and are cached); the index pages hold no cache (S10)
    then = {"as_of": "2023-11-16T00:00:00Z"}
    segment = api.get("/customers/stays", params=then).json()["segment"]

    def listed():
        answer = api.get(f"/segments/{segment}/members", params=then)
        return sorted(row["customer_id"] for row in answer.json()["members"])

    assert listed() == ["goes", "stays"]  # the walk is cached now, for 600 s
    erase = api.delete("/customers/goes", headers={"Authorization": f"Bearer {ADMIN}"})
    assert erase.status_code == 200 and erase.json()["had_state"] is True
    assert listed() == ["stays"]


def test_an_api_erase_that_redis_fails_is_audited_as_failed(rtba_env, monkeypatch):
    """The review of S9: only a Kafka failure was audited; `rtba erase` records any."""
    import redis

    def redis_fails(settings, client, customer_ids):
        raise redis.exceptions.ConnectionError("Redis went away (the test)")

    monkeypatch.setattr(streams.erasure, "erase_customers", redis_fails)
    settings = Settings.from_env(rtba_env)
    api = client_for(rtba_env, RTBA_API_ADMIN_TOKEN=ADMIN)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    assert api.delete("/customers/frank@example.com", headers=admin).status_code == 503
    [entry] = api.get("/audit", headers=admin).json()["entries"]
    assert entry["id_hmac"] == expected_hash(settings, "frank@example.com")
    assert entry["outcome"] == "failed: ConnectionError: Redis went away (the test)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_live_feed_refuses_stream_n_plus_one(rtba_env):
    import uvicorn

    settings = Settings.from_env({**rtba_env, "RTBA_API_MAX_STREAMS": "2"})
    port = free_port()
    app = create_api(settings)  # a loopback address: its Host is allowed anyway
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.05)
        with httpx.Client(base_url=url, timeout=10) as http:
            opened = [http.stream("GET", "/events/stream") for _ in range(2)]
            answers = [stream.__enter__() for stream in opened]
            assert [a.status_code for a in answers] == [200, 200]
            third = http.get("/events/stream")
            assert third.status_code == 503 and third.headers["retry-after"]
            assert "RTBA_API_MAX_STREAMS" in third.json()["detail"]
            assert http.get("/health").status_code == 200  # other requests still served
            opened[0].__exit__(None, None, None)
            deadline = time.monotonic() + 10  # the server sees the close, then a slot is free
            while (again := http.stream("GET", "/events/stream")).__enter__().status_code != 200:
                again.__exit__(None, None, None)
                assert time.monotonic() < deadline
                time.sleep(0.1)
            again.__exit__(None, None, None)
            opened[1].__exit__(None, None, None)
    finally:
        server.should_exit = True
        thread.join(15)

"""The API's outer doors without a server: Host headers as browsers send them, the limit
on requests served at once (plain ASGI, a stand-in app that holds each request until
told), and the walk cache under many threads (tests/integration/test_api_security.py
tries the same doors on the real app)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from streams.api.guard import Limits, TrustedHosts, allowed_hosts, host_name
from streams.api.walks import WalkCache


@pytest.mark.parametrize(
    ("header", "name"),
    [("localhost", "localhost"), ("LocalHost:8000", "localhost"), ("127.0.0.1:80", "127.0.0.1"),
     ("[::1]:8000", "[::1]"), ("[::1]", "[::1]"), ("::1", "[::1]"),
     ("shop.example.", "shop.example"), ("[fe80::1%25eth0]:80", "[fe80::1%25eth0]"), ("", "")],
)  # fmt: skip
def test_the_name_in_a_host_header(header, name):
    assert host_name(header) == name


def test_the_default_list_is_loopback_and_a_non_wildcard_bind_address():
    assert allowed_hosts((), None) == ("localhost", "127.0.0.1", "[::1]")
    assert allowed_hosts((), "0.0.0.0") == allowed_hosts((), "::") == allowed_hosts((), None)
    assert allowed_hosts(("api",), "::1") == ("localhost", "127.0.0.1", "[::1]", "api")
    assert allowed_hosts((), "192.168.1.5")[-1] == "192.168.1.5"


class Held:
    """A stand-in ASGI app: each request waits until ``release`` is set, then answers 200."""

    def __init__(self):
        self.release = asyncio.Event()
        self.entered = 0

    async def __call__(self, scope, receive, send):
        self.entered += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def call(app, path: str, host: bytes = b"localhost") -> tuple[int, dict, bytes]:
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "path": path, "method": "GET", "headers": [(b"host", host)]}
    await app(scope, receive, send)
    start, body = sent[0], sent[1]["body"]
    return start["status"], dict(start["headers"]), body


def test_past_the_limit_a_request_is_a_503_with_retry_after_at_once():
    async def scenario():
        held = Held()
        limits = Limits(held, max_requests=3, max_streams=2)
        busy = [asyncio.create_task(call(limits, "/customers")) for _ in range(3)]
        streams = [asyncio.create_task(call(limits, "/events/stream")) for _ in range(2)]
        await asyncio.sleep(0.01)
        assert held.entered == 5
        status, headers, body = await call(limits, "/segments")  # request 4: refused
        assert status == 503 and headers[b"retry-after"] == b"1"
        assert "RTBA_API_MAX_CONCURRENT" in json.loads(body)["detail"]
        status, headers, body = await call(limits, "/events/stream")  # stream 3: refused
        assert status == 503 and headers[b"retry-after"] == b"5"
        assert "RTBA_API_MAX_STREAMS" in json.loads(body)["detail"]
        health = asyncio.create_task(call(limits, "/health"))  # liveness: never limited
        await asyncio.sleep(0.01)
        assert held.entered == 6
        held.release.set()  # the slots free with the answers
        assert [s for s, _, _ in await asyncio.gather(*busy, *streams, health)] == [200] * 6
        assert (await call(limits, "/segments"))[0] == 200
        assert limits.requests == limits.streams == 0

    asyncio.run(scenario())


def test_a_foreign_host_never_reaches_the_app():
    async def scenario():
        held = Held()
        held.release.set()
        guarded = TrustedHosts(held, allowed_hosts((), None))
        status, headers, body = await call(guarded, "/customers", b"rebind.attacker.example")
        assert status == 400 and held.entered == 0
        assert json.loads(body)["detail"].startswith("host 'rebind.attacker.example' is not")
        assert (await call(guarded, "/customers", b"[::1]:8000"))[0] == 200

    asyncio.run(scenario())


def test_many_threads_asking_one_walk_get_one_walk_per_ttl():
    now = [0.0]
    cache = WalkCache(ttl_s=5, clock=lambda: now[0])
    walked = []

    def walk():
        walked.append(threading.get_ident())
        time.sleep(0.05)  # long enough for every thread to arrive during it
        return {"answer": len(walked)}

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: cache.get(("customers", None), walk), range(64)))
    assert len(walked) == 1 and all(a == {"answer": 1} for a in answers)
    now[0] = 4.9
    assert cache.get(("customers", None), walk) == {"answer": 1} and len(walked) == 1
    now[0] = 5.1  # the TTL is over
    assert cache.get(("customers", None), walk) == {"answer": 2} and len(walked) == 2
    for n in range(20):  # varied queries: each walks, but the cache stays bounded
        cache.get(("customers", n), walk)
    assert len(cache.results) == cache.entries

"""The API's outer doors, as plain ASGI middleware that runs before any route: the
Host-header allow-list (DNS rebinding), the security headers on every answer, and the
limits on requests served at once and on live feed streams open (docs/security.md).

Plain ASGI rather than starlette's BaseHTTPMiddleware: a streamed answer (the live feed)
passes through untouched, and a refusal costs no thread.
"""

from __future__ import annotations

import ipaddress
import json

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
WILDCARDS = ("", "0.0.0.0", "::", "[::]")
STREAM_PATHS = ("/events/stream",)
# Probes must answer while the API is busy: a liveness probe failing under load would
# restart a process that is merely working.
UNLIMITED_PATHS = ("/health",)

# The dashboard needs no inline script and no other origin: plotly.js, its own script and
# stylesheet come from /static/. plotly sets style attributes on the elements it draws,
# hence 'unsafe-inline' for styles (styles cannot run code); images it exports are data:.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


def host_name(header: str) -> str:
    """The name in a Host header, without its port, lower case, without a final dot.

    >>> host_name("LocalHost:8000"), host_name("[::1]:8000"), host_name("[::1]")
    ('localhost', '[::1]', '[::1]')
    >>> host_name("example.com."), host_name("::1")
    ('example.com', '[::1]')
    """
    header = header.strip().lower()
    if header.startswith("["):  # [v6] or [v6]:port
        name = header[: header.find("]") + 1] if "]" in header else header
    elif header.count(":") == 1:
        name = header.split(":", 1)[0]
    elif header.count(":") > 1:  # a bare IPv6 address (no port can follow it)
        name = f"[{header}]"
    else:
        name = header
    return name.rstrip(".")


def bracketed(address: str) -> str:
    """An address as it appears in a Host header: IPv6 in brackets."""
    address = address.strip().lower()
    try:
        if ipaddress.ip_address(address.strip("[]")).version == 6:
            return f"[{address.strip('[]')}]"
    except ValueError:
        pass
    return address


def allowed_hosts(extra: tuple[str, ...], bind_host: str | None) -> tuple[str, ...]:
    """Loopback names, the address the API listens on when it is not a wildcard, and the
    names the operator added (RTBA_API_ALLOWED_HOSTS)."""
    names = list(LOOPBACK_NAMES)
    if bind_host is not None and bracketed(bind_host) not in WILDCARDS:
        names.append(bracketed(bind_host))
    names += [bracketed(n) for n in extra]
    return tuple(dict.fromkeys(names))


def host_allowed(name: str, allowed: tuple[str, ...]) -> bool:
    for pattern in allowed:
        if pattern == "*" or pattern == name:
            return True
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
    return False


async def _refuse(send, status: int, detail: str, headers: list | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    """CSP, nosniff, DENY framing and no referrer on every answer, refusals included."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in SECURITY_HEADERS if n not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


class TrustedHosts:
    """400 with one line of JSON for a Host header not on the list, before any route.

    Starlette's TrustedHostMiddleware cuts the header at its first ':', which turns
    ``[::1]:8000`` into ``[``; this one reads ports and IPv6 brackets."""

    def __init__(self, app, allowed: tuple[str, ...]):
        self.app, self.allowed = app, allowed

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        name = host_name(headers.get(b"host", b"").decode("latin-1"))
        if host_allowed(name, self.allowed):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        shown = name[:60] or "(none)"
        await _refuse(
            send,
            400,
            f"host {shown!r} is not one this API answers to: add it to RTBA_API_ALLOWED_HOSTS",
        )


class Limits:
    """At most ``max_requests`` requests served at once and ``max_streams`` live feeds
    open; past either, 503 with Retry-After at once rather than a queue that grows.

    Counted here, around the whole answer, so a stream is counted until its connection
    ends whatever happens inside it. The counters need no lock: the event loop runs one
    coroutine at a time and they change only between awaits."""

    def __init__(self, app, max_requests: int, max_streams: int):
        self.app, self.max_requests, self.max_streams = app, max_requests, max_streams
        self.requests = self.streams = 0

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or path in UNLIMITED_PATHS:
            return await self.app(scope, receive, send)
        if path in STREAM_PATHS:
            counter, most, retry_s, refusal = "streams", self.max_streams, 5, (
                "live feeds are open, the most this API serves (RTBA_API_MAX_STREAMS): "
                "try again later")  # fmt: skip
        else:
            counter, most, retry_s, refusal = "requests", self.max_requests, 1, (
                "requests are being served, the most this API takes at once "
                "(RTBA_API_MAX_CONCURRENT): try again in a moment")  # fmt: skip
        served = getattr(self, counter)
        if served >= most:
            retry = [(b"retry-after", str(retry_s).encode())]
            return await _refuse(send, 503, f"{served} {refusal}", retry)
        setattr(self, counter, served + 1)
        try:
            await self.app(scope, receive, send)
        finally:
            setattr(self, counter, getattr(self, counter) - 1)

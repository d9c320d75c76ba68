"""The HTTP JSON read service: profiles, segment and cluster sizes, members, rankings,
audiences, models and the DLQ summary, with an OpenAPI document at /openapi.json.

Every list takes ``limit`` and ``offset``; unknown customers, segments and clusters are
404s with a message, bad parameters 422s. The endpoints are plain ``def``: FastAPI runs
them in its thread pool, so a blocking Redis read never holds the event loop.

With a token configured (RTBA_API_TOKEN or RTBA_API_TOKEN_FILE), every route asks for
``Authorization: Bearer <token>`` but those in ``PUBLIC`` (no customer data): a route
added later is protected unless it is listed there. Erasing (any method but GET, HEAD
and OPTIONS) and the audit log need the admin token (RTBA_API_ADMIN_TOKEN), always, even
on loopback without a read token. In front of every route (streams.api.guard): the
Host-header allow-list, the security headers, the limits on requests and live feeds.

Beside them: the dashboard at ``/`` (streams/api/dashboard/), the recent output events and
their live feed (``/events``, ``/events/stream``, streams.api.feed), the dashboard's
history (streams.api.history) and Prometheus metrics (``/metrics``, streams.api.metrics).
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.util
from contextlib import asynccontextmanager
from importlib.metadata import version
from pathlib import Path as FilePath
from typing import Annotated, Literal

import redis
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from online_models.rfm import SEGMENTS
from streams import audit
from streams.api.feed import FeedItem, OutputFeed
from streams.api.guard import Limits, SecurityHeaders, TrustedHosts, allowed_hosts
from streams.api.history import Sampler, read_history
from streams.api.metrics import api_registry
from streams.api.walks import WalkCache
from streams.errors import NotFound
from streams.privacy import PseudonymKeyError, customer_ref
from streams.processing.schemas import iso, to_epoch_ms
from streams.read import ranking, risk_ranking
from streams.read.audiences import audience_detail, audience_rows, member_rows
from streams.read.reader import StateReader
from streams.read.views import cluster_rows
from streams.settings import Settings, redacted
from streams.state.facts import read_fact, read_facts
from streams.state.store import audience_sizes, model_status, read_stats

MAX_LIMIT = 1000
DASHBOARD = FilePath(__file__).parent / "dashboard"
KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing an idle feed
BACKLOG = 50  # events a new feed subscriber gets first (a reconnecting one: all it missed)
Kind = Literal["rfm", "cluster", "churn", "audience"]
# What anyone may fetch with a token configured: liveness and readiness (for probes that
# cannot send a token), the page and its scripts, the OpenAPI document. No customer data.
# (No /docs or /redoc: their pages load scripts from a CDN, on the origin that holds the
# dashboard's token.)
PUBLIC = {"/health", "/ready", "/", "/openapi.json"}
# Reads; any other method changes something and needs the admin token, as these do.
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
ADMIN_PATHS = {"/audit"}
# The endpoints that read the population, each behind its cache (streams.api.walks).
WALKS = ("customers", "segment_members", "cluster_members")
ADMIN_OFF = (
    "erasing over the API is off: set RTBA_API_ADMIN_TOKEN (or RTBA_API_ADMIN_TOKEN_FILE) "
    "and send it as Authorization: Bearer <admin token>; `rtba erase` works without it"
)

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="at most this many items")]
Offset = Annotated[int, Query(ge=0, le=100_000_000, description="skip this many items")]
AudienceId = Annotated[str, Path(max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
After = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=400,
        description="continue after this cursor (the previous page's `next`): a page's "
        "cost then does not grow with how deep it is, as an offset's does",
    ),
]
AsOf = Annotated[
    str | None,
    Query(
        max_length=40,
        description="ISO-8601 time; default: the watermark",
        examples=["2026-12-24T00:00:00Z"],
    ),
]


def _as_of(reader: StateReader, text: str | None) -> int:
    if text is None:
        return reader.as_of()
    try:
        return to_epoch_ms(text)
    except ValueError as exc:
        raise HTTPException(422, f"as_of: {exc}") from None


def _indexed(reader: StateReader, prefix: str, size_fact: str, moment: int, limit: int,
             after: str | None, offset: int, rows_as: str) -> dict:  # fmt: skip
    """An index page's answer (streams.read.ranking), ``rows_as`` naming its rows, its
    total the population fact ``size_fact``; a bad cursor or too deep an offset a 422."""
    try:
        rows, following = reader.indexed(prefix, moment, limit, after, offset)
    except ranking.BadPage as exc:
        raise HTTPException(422, str(exc)) from None
    total = read_fact(reader.client, reader.keys, size_fact)
    return {"as_of": iso(moment), "total": total, "offset": offset, "limit": limit,
            rows_as: rows, "next": following}  # fmt: skip


def _cursor_moment(after: str) -> int:
    """The moment a churn-risk cursor ranks as of (a 422 for one no page gave)."""
    try:
        return risk_ranking.parse_cursor(after)[0]
    except ranking.BadPage as exc:
        raise HTTPException(422, str(exc)) from None


def _walk_takes_no_cursor(after: str | None) -> None:
    if after is not None:
        raise HTTPException(422, "after= pages the stored memberships; with as_of= "
                            "(a walk) page with offset=")  # fmt: skip


def _page(rows, offset: int, limit: int) -> tuple[list[dict], int]:
    """One page of an iterator, and how many there were in all."""
    page, total = [], 0
    for row in rows:
        if offset <= total < offset + limit:
            page.append(row)
        total += 1
    return page, total


def _plotly_js() -> FilePath:
    """plotly.js as the plotly package ships it (found without importing plotly)."""
    spec = importlib.util.find_spec("plotly")
    return FilePath(spec.submodule_search_locations[0]) / "package_data" / "plotly.min.js"


def _sse(item: FeedItem) -> str:
    import json

    return f"id: {item.seq}\nevent: output\ndata: {json.dumps(item.to_json())}\n\n"


# At module level: FastAPI resolves the check's annotations in this module's globals.
BEARER = HTTPBearer(auto_error=False, description="RTBA_API_TOKEN")


def _same(given: str | None, token: str | None) -> bool:
    """``given`` is ``token`` (compared in constant time); never with no token set."""
    return (
        given is not None
        and token is not None
        and hmac.compare_digest(given.encode(), token.encode())
    )


def _require_admin(admin: str | None, given: str | None) -> None:
    if admin is None:
        raise HTTPException(403, ADMIN_OFF)
    if given is None:
        raise HTTPException(
            401,
            "the admin token is required: Authorization: Bearer <RTBA_API_ADMIN_TOKEN>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not _same(given, admin):
        raise HTTPException(403, "this token does not grant erase: it needs RTBA_API_ADMIN_TOKEN")


def token_check(token: str | None, admin: str | None = None):
    """A dependency: the admin token for a change or an admin route, whatever else is set;
    with ``token`` set, 401 on the other routes unless the request carries it (or the
    admin token, which also reads) or asks for a public route."""

    def check(
        request: Request, given: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
    ):
        path, presented = request.url.path, given.credentials if given else None
        if request.method not in SAFE_METHODS or path in ADMIN_PATHS:
            return _require_admin(admin, presented)
        if token is None or path in PUBLIC or path.startswith("/static/"):
            return
        if not (_same(presented, token) or _same(presented, admin)):
            raise HTTPException(
                401,
                "a bearer token is required: Authorization: Bearer <RTBA_API_TOKEN>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check


def create_api(
    settings: Settings, reader: StateReader | None = None, bind_host: str | None = None
) -> FastAPI:
    """The app; ``bind_host``, the address it will listen on, joins the Host allow-list
    unless it is a wildcard."""
    reader = reader or StateReader(settings)
    walks = {name: WalkCache(settings.api_walk_cache_s, entries=4) for name in WALKS}
    feed = OutputFeed(settings)
    sampler = Sampler(reader, settings.dashboard_sample_s, settings.dashboard_history)
    registry = api_registry(reader)

    @asynccontextmanager
    async def lifespan(app):
        feed.start()
        sampler.start()
        try:
            yield
        finally:
            sampler.stop()
            feed.stop()

    api = FastAPI(
        title="rtba",
        version=version("rtba"),
        description="Live RFM segments, behaviour clusters and churn risk, read from "
        f"namespace {settings.namespace!r}. The dashboard is at /.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        dependencies=[
            Depends(token_check(settings.api_secret(), settings.secret("api_admin_token")))
        ],
    )
    api.state.feed, api.state.sampler = feed, sampler
    api.state.reader, api.state.walks = reader, walks
    # Added innermost first: the headers go on every answer, refusals included.
    api.add_middleware(Limits, max_requests=settings.api_max_concurrent,
                       max_streams=settings.api_max_streams)  # fmt: skip
    api.add_middleware(
        TrustedHosts, allowed=allowed_hosts(settings.api_allowed_hosts or (), bind_host)
    )
    api.add_middleware(SecurityHeaders)

    @api.exception_handler(PseudonymKeyError)
    def other_key(request, exc):  # not a 404: every customer would seem to be missing
        return JSONResponse({"detail": str(exc)}, 503)

    @api.exception_handler(redis.exceptions.NoPermissionError)
    def not_this_login(request, exc):  # the API's read role asked to write: say which login
        return JSONResponse(
            {"detail": "this API's Redis login may not do this (the API role only reads): "
                       "run the API that erases with the admin login (RTBA_REDIS_USERNAME)"},
            403,
        )  # fmt: skip

    @api.exception_handler(redis.exceptions.ConnectionError)
    def redis_down(request, exc):  # the stack is down: say so, not a 500
        return JSONResponse(
            {"detail": f"Redis is not answering at {redacted(settings.redis_url)}"}, 503
        )

    @api.get("/health", summary="the API process is up")
    def health() -> dict:
        return {"status": "ok", "version": version("rtba"), "namespace": settings.namespace}

    @api.get("/ready", summary="Redis answers", responses={503: {"description": "Redis is down"}})
    def ready():
        try:
            reader.client.ping()
        except redis.exceptions.RedisError as exc:
            return JSONResponse({"status": "unavailable", "redis": str(exc)}, 503)
        return {"status": "ready"}

    # {customer_id:path}: an id may hold '/' (sent as is or as %2F, which the server
    # decodes before routing); nothing else lives under /customers/.
    @api.get(
        "/customers/{customer_id:path}",
        summary="one customer's profile",
        responses={404: {"description": "no such customer"}},
    )
    def customer(
        customer_id: Annotated[str, Path(min_length=1, max_length=256)], as_of: AsOf = None
    ):
        moment = _as_of(reader, as_of)
        states = reader.states([customer_ref(settings, reader.client, customer_id)])
        if not states:
            raise HTTPException(
                404, f"no customer {customer_id!r} in namespace {settings.namespace!r}"
            )
        return reader.profile(states[0], moment)

    def forget_walks():
        """Empty every walk cache: an erased customer leaves rankings and lists at once."""
        for cache in walks.values():
            cache.clear()

    @api.delete(
        "/customers/{customer_id:path}",
        summary="erase a customer: every trace in Redis, and a tombstone on each output "
        "topic (the admin token; written to the audit log)",
        responses={404: {"description": "no state for this id (tombstones sent anyway)"},
                   403: {"description": "no admin token configured, or not this one"}},
    )  # fmt: skip
    def erase(
        request: Request,
        customer_id: Annotated[str, Path(min_length=1, max_length=256)],
        given: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ):
        import kafka.errors

        from streams.erasure import erase_customers

        # the check has let only the admin token through
        actor = f"api:admin:{audit.token_fingerprint(given.credentials)}"
        address = request.client.host if request.client else None
        stored = customer_ref(settings, reader.client, customer_id)
        try:
            report = erase_customers(settings, reader.client, [stored])[0]
        except kafka.errors.KafkaError as exc:  # Redis is done; the tombstones are not
            feed.forget(stored)  # nor will this feed see them: it forgets now
            forget_walks()
            audit.record(reader.client, settings.namespace, actor, address, stored,
                         audit.outcome(None, f"tombstones not sent ({exc})"))  # fmt: skip
            raise HTTPException(
                503, f"erased from Redis, but the tombstones were not sent ({exc}): erase again"
            ) from None
        except Exception as exc:  # Redis refused or failed: audited as `rtba erase` does
            forget_walks()  # part of it may be gone
            audit.failed(reader.client, settings.namespace, actor, address, [stored], exc)
            raise
        forget_walks()  # no cached ranking or member list may show the customer again
        audit.record(reader.client, settings.namespace, actor, address, stored,
                     audit.outcome(report))  # fmt: skip
        feed.forget(stored)  # this process at once; the others on the tombstone
        report["customer_id"] = customer_id  # as given
        return JSONResponse(report, 200 if report["had_state"] else 404)

    @api.get(
        "/customers",
        summary="customers ranked by churn risk, CLV or money spent (money spent from the "
        "index, churn risk from the day cells, both paged by cursor; CLV by a walk, cached)",
    )
    def ranked(
        order_by: Literal["churn_risk", "predicted_clv_365d", "monetary"] = "churn_risk",
        limit: Limit = 100,
        offset: Offset = 0,
        as_of: AsOf = None,
        after: After = None,
    ) -> dict:
        if order_by == "monetary":  # money spent does not move with time: the index serves it
            page = _indexed(reader, ranking.MONEY, "customers", _as_of(reader, as_of), limit,
                            after, offset, "customers")  # fmt: skip
            return {"order_by": order_by, **page}
        if order_by == "churn_risk":  # from the day cells where they hold everyone
            moment = _as_of(reader, as_of)
            if after is not None and as_of is None:  # the cursor's moment, not the watermark's
                moment = _cursor_moment(after)
            try:
                served = reader.by_churn_risk(moment, limit, after, offset)
            except ranking.BadPage as exc:
                raise HTTPException(422, str(exc)) from None
            if served is not None:
                rows, following, total = served
                return {"order_by": order_by, "as_of": iso(moment), "total": total,
                        "offset": offset, "limit": limit, "customers": rows,
                        "next": following}  # fmt: skip
        if after is not None and order_by == "churn_risk":
            raise HTTPException(422, "this namespace's index does not hold every day cell's "
                                "members yet (run `rtba verify --repair`): page churn_risk "
                                "with offset=")  # fmt: skip
        if after is not None:
            raise HTTPException(422, "after= pages the monetary and churn_risk rankings; "
                                "predicted_clv_365d takes offset=")  # fmt: skip

        def walk():
            moment = _as_of(reader, as_of)
            rows = [r for r in reader.profiles(moment) if r[order_by] is not None]
            # churn risk as the cells rank it: P(alive) tells apart the risks shown as 1.0
            rows.sort(key=lambda r: (r["p_alive"], r["customer_id"]) if order_by == "churn_risk"
                      else (-r[order_by], r["customer_id"]))  # fmt: skip
            return moment, rows

        moment, rows = walks["customers"].get((order_by, as_of), walk)
        return {
            "order_by": order_by,
            "as_of": iso(moment),
            "total": len(rows),
            "offset": offset,
            "limit": limit,
            "customers": rows[offset : offset + limit],
            "next": None,
        }

    @api.get(
        "/segments",
        summary="RFM segment and cluster sizes and profiles, from the population facts "
        "(sizes as of each customer's last evaluation; as_of moves the mean recency only)",
    )
    def segments(as_of: AsOf = None) -> dict:
        # a few small hashes, no walk: no cache either (docs/api.md)
        return reader.summary(_as_of(reader, as_of))

    @api.get(
        "/segments/{segment}/members",
        summary="the customers in an RFM segment",
        responses={404: {"description": "no such segment"}},
    )
    def segment_members(
        segment: Annotated[str, Path(max_length=64)],
        limit: Limit = 100,
        offset: Offset = 0,
        as_of: AsOf = None,
        after: After = None,
    ) -> dict:
        if segment not in SEGMENTS:
            raise HTTPException(404, f"no segment {segment[:60]!r}; one of: {', '.join(SEGMENTS)}")
        if as_of is None:  # the stored segments (each customer's last evaluation): the index
            page = _indexed(reader, ranking.segment_prefix(segment), f"seg:{segment}",
                            _as_of(reader, None), limit, after, offset, "members")  # fmt: skip
            return {"segment": segment, **page}
        _walk_takes_no_cursor(after)

        def walk():
            moment = _as_of(reader, as_of)
            return moment, list(reader.members(lambda r: r["segment"] == segment, moment))

        moment, everyone = walks["segment_members"].get((segment, as_of), walk)
        rows, total = _page(everyone, offset, limit)
        return {
            "segment": segment,
            "as_of": iso(moment),
            "total": total,
            "offset": offset,
            "limit": limit,
            "members": rows,
            "next": None,
        }

    @api.get(
        "/clusters",
        summary="the behaviour clusters in force: labels, centroids and sizes (each "
        "customer's cluster at its last evaluation)",
    )
    def clusters() -> dict:
        # The snapshot and the facts' sizes: no walk. A cluster that died still shows
        # while members wait to be moved (label and centroid null), as in /segments.
        snapshot = reader.models().clusters
        if snapshot is None:
            return {"version": None, "clusters": []}
        facts = read_facts(reader.client, reader.keys)
        return {"version": snapshot.version, "clusters": cluster_rows(facts, snapshot)}

    @api.get(
        "/clusters/{cluster_id}/members",
        summary="the customers in a behaviour cluster",
        responses={404: {"description": "no such cluster"}},
    )
    def cluster_members(
        cluster_id: Annotated[int, Path(ge=0, le=1_000_000)],
        limit: Limit = 100,
        offset: Offset = 0,
        as_of: AsOf = None,
        after: After = None,
    ) -> dict:
        snapshot = reader.models().clusters
        if snapshot is None or cluster_id not in snapshot.ids:
            raise HTTPException(404, f"no cluster {cluster_id} in the snapshot in force")
        if as_of is None:  # the stored clusters, which /clusters counts: the index
            page = _indexed(reader, ranking.cluster_prefix(cluster_id), f"cluster:{cluster_id}",
                            _as_of(reader, None), limit, after, offset, "members")  # fmt: skip
            return {"cluster": snapshot.profile(cluster_id), **page}
        _walk_takes_no_cursor(after)

        def walk():
            moment = _as_of(reader, as_of)
            keep = lambda r: r["cluster"]["id"] == cluster_id  # noqa: E731
            return moment, list(reader.members(keep, moment))

        key = (cluster_id, snapshot.version, as_of)
        moment, everyone = walks["cluster_members"].get(key, walk)
        rows, total = _page(everyone, offset, limit)
        return {
            "cluster": snapshot.profile(cluster_id),
            "as_of": iso(moment),
            "total": total,
            "offset": offset,
            "limit": limit,
            "members": rows,
            "next": None,
        }

    @api.get("/audiences", summary="the audiences in force: sizes and the backfill's progress")
    def audiences() -> dict:
        return audience_rows(reader.client, reader.keys)

    @api.get(
        "/audiences/{audience_id}",
        summary="one audience's definition and size",
        responses={404: {"description": "no such audience"}},
    )
    def audience(audience_id: AudienceId) -> dict:
        try:
            return audience_detail(reader.client, reader.keys, audience_id)
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None

    @api.get(
        "/audiences/{audience_id}/members",
        summary="an audience's members in the order they entered (then by customer id), "
        "with when each entered",
        responses={404: {"description": "no such audience"}},
    )
    def audience_members(audience_id: AudienceId, limit: Limit = 100,
                         offset: Offset = 0) -> dict:  # fmt: skip
        try:  # a ZRANGE by rank and a ZCARD: no walk, no cache
            rows = member_rows(reader.client, reader.keys, audience_id, offset, limit)
            total = audience_sizes(reader.client, reader.keys, [audience_id])[audience_id]
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        return {"audience": audience_id, "total": total, "offset": offset, "limit": limit,
                "members": rows}  # fmt: skip

    @api.get("/models", summary="the models in force: versions, age, parameters")
    def models() -> dict:
        import time

        status = model_status(reader.client, reader.keys, int(time.time() * 1000))
        in_force = reader.models()
        status["rfm"]["edges"] = {
            "recency_days": in_force.rfm.recency_edges,
            "recency_cut_dates": in_force.rfm.recency_cut_dates,  # adaptive (S10): days is None
            "frequency": in_force.rfm.frequency_edges,
            "monetary": in_force.rfm.monetary_edges,
        }
        if in_force.churn is not None:
            status["churn"]["params"] = in_force.churn.model.to_dict().get("params")
        return status

    @api.get(
        "/audit",
        summary="the audit log of erasures, newest first (the admin token)",
        responses={403: {"description": "no admin token configured, or not this one"}},
    )
    def audit_log(
        limit: Limit = 100,
        customer_id: Annotated[
            str | None, Query(max_length=256, description="only this id's erasures")
        ] = None,
    ) -> dict:
        stored = None if customer_id is None else customer_ref(settings, reader.client,
                                                                customer_id)  # fmt: skip
        rows = audit.read(reader.client, settings.namespace, limit, stored)
        return {"entries": rows, "kept_at_most": audit.MAX_ENTRIES}

    @api.get("/dlq", summary="events refused, by reason")
    def dlq() -> dict:
        counters = read_stats(reader.client, reader.keys)
        reasons = {k.split(":", 1)[1]: v for k, v in counters.items() if k.startswith("dlq:")}
        return {"total": counters.get("dlq", 0), "by_reason": reasons}

    @api.get("/events", summary="recent segment changes and churn alerts, newest first")
    def events(
        kind: Annotated[
            list[Kind] | None, Query(max_length=3, description="only these kinds")
        ] = None,
        customer: Annotated[str | None, Query(max_length=256)] = None,
        limit: Limit = 100,
    ) -> dict:
        if customer is not None:
            customer = customer_ref(settings, reader.client, customer)
        items = feed.recent(set(kind or ()), customer, limit)
        return {
            "kept": feed.size,
            "connected": feed.connected,
            "events": [item.to_json() for item in items],
        }

    @api.get(
        "/events/stream",
        summary="the live feed of segment changes and churn alerts (server-sent events)",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def stream(
        kind: Annotated[
            list[Kind] | None, Query(max_length=3, description="only these kinds")
        ] = None,
        last_event_id: Annotated[str | None, Header(max_length=20)] = None,
    ):
        kinds = set(kind or ())
        after = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0

        async def items():
            queue = feed.subscribe()  # before the backlog: nothing falls between the two
            try:
                if after:
                    backlog = feed.recent(kinds, limit=feed.size, after=after)
                else:  # the latest, and the latest alerts: a tick's hundreds of segment
                    # changes would otherwise hide the few alerts just before them
                    latest = feed.recent(kinds, limit=BACKLOG)
                    wanted = not kinds or "churn" in kinds
                    alerts = feed.recent({"churn"}, limit=BACKLOG) if wanted else []
                    merged = {item.seq: item for item in [*latest, *alerts]}
                    backlog = sorted(merged.values(), key=lambda item: -item.seq)
                sent = after
                for item in reversed(backlog):
                    sent = item.seq
                    yield _sse(item)
                while True:
                    try:
                        item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if item.seq > sent and (not kinds or item.kind in kinds):
                        sent = item.seq
                        yield _sse(item)
            finally:
                feed.unsubscribe(queue)

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(items(), media_type="text/event-stream", headers=headers)

    @api.get("/dashboard/history", summary="segment and cluster sizes, counters, lag over time")
    def history(limit: Annotated[int, Query(ge=1, le=100_000)] = 360) -> dict:
        return {
            "interval_s": settings.dashboard_sample_s,
            "samples": read_history(reader, limit),
        }

    @api.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @api.get("/", include_in_schema=False)
    def dashboard():
        return HTMLResponse((DASHBOARD / "index.html").read_text())

    @api.get("/static/{name}", include_in_schema=False)
    def static(name: str):
        files = {"plotly.min.js": _plotly_js(), "dashboard.js": DASHBOARD / "dashboard.js",
                 "dashboard.css": DASHBOARD / "dashboard.css"}  # fmt: skip
        if name not in files:
            raise HTTPException(404, f"no file {name[:60]!r}")
        return FileResponse(files[name], headers={"Cache-Control": "max-age=3600"})

    return api

"""The audit log of erasures: who erased which customer, when, from where, and how it
went, for `rtba erase` and ``DELETE /customers/{id}`` alike (docs/security.md).

Each erasure is one entry in a capped Redis stream (``<namespace>:audit``, the newest
``MAX_ENTRIES`` kept) and one log line on the ``rtba.audit`` logger. The id is kept as
``id_hmac``, the HMAC-SHA256 of the id as stored (the pseudonym, when ids are
pseudonymised) under the namespace's random salt, the one `rtba dlq --redrive` uses to
skip erased customers (streams.state.erase): the log names nobody, a reader of the log
lines alone cannot test guesses, and ``GET /audit?customer_id=`` (which reads the salt)
answers "was this id erased?". A right-to-be-forgotten request is not undone by its own
record.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from contextlib import contextmanager

from streams.state.erase import SALT, namespace_salt, namespace_salt_async
from streams.state.keys import Keys

MAX_ENTRIES = 100_000  # about 20 MB of Redis: years of erasures for most shops


def _logger() -> logging.Logger:
    """``rtba.audit``: one line per erasure on stderr, whatever logging the process set up
    (uvicorn's, the CLI's none), so that container logs always carry it."""
    log = logging.getLogger("rtba.audit")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s rtba audit: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False  # not twice where the root logger prints too
    return log


LOG = _logger()


def id_hash(salt: bytes, customer_id: str) -> str:
    """The HMAC an audit entry holds for a customer id, under the namespace's salt."""
    return hmac.new(salt, customer_id.encode(), hashlib.sha256).hexdigest()


def token_fingerprint(token: str) -> str:
    """Who erased, for an API call: the first 12 hex digits of the token's SHA-256 (enough
    to tell two tokens apart after a rotation, nothing to log in with)."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def outcome(report: dict | None, error: str | None = None) -> str:
    """``erased`` (there was state), ``no-state`` (tombstones sent all the same), or
    ``failed: <why>``."""
    if error is not None:
        return f"failed: {error}"[:300]
    return "erased" if report and report.get("had_state") else "no-state"


def record(client, namespace: str, actor: str, address: str | None, customer_id: str,
           result: str, now_ms: int | None = None) -> dict:  # fmt: skip
    """Write one erasure to the audit stream and the log; returns the entry.

    ``actor`` is ``cli`` (with the OS user), ``api:admin:<fingerprint>`` or ``retention``;
    ``address`` the client's address for an API call. The log line goes out even when
    Redis refuses the entry (down, or a login that may not write): then with ``?`` for
    the hash, which needs the salt in Redis, and the Redis error is raised."""
    keys = Keys(namespace)
    entry = _entry(actor, address, "", result, now_ms)
    try:
        entry["id_hmac"] = id_hash(_bytes(namespace_salt(client, keys)), customer_id)
        client.xadd(keys.audit, entry, maxlen=MAX_ENTRIES, approximate=True)
    finally:
        _log(entry)
    return entry


async def record_async(client, namespace: str, actor: str, customer_ids: list[str],
                       result: str) -> list[dict]:  # fmt: skip
    """``record`` for a worker's asyncio client (the retention erase, actor ``retention``,
    no address): one entry per id, sent in one pipeline."""
    keys = Keys(namespace)
    salt = _bytes(await namespace_salt_async(client, keys))
    entries = [_entry(actor, None, id_hash(salt, cid), result) for cid in customer_ids]
    async with client.pipeline(transaction=False) as pipe:
        for entry in entries:
            pipe.xadd(keys.audit, entry, maxlen=MAX_ENTRIES, approximate=True)
        await pipe.execute()
    for entry in entries:
        _log(entry)
    return entries


def _entry(actor: str, address: str | None, id_hmac: str, result: str,
           now_ms: int | None = None) -> dict:  # fmt: skip
    return {
        "at_ms": str(now_ms if now_ms is not None else int(time.time() * 1000)),
        "actor": actor,
        "address": address or "",
        "id_hmac": id_hmac,
        "outcome": result,
    }


def _log(entry: dict) -> None:
    LOG.info("erase %s by %s from %s: %s", entry["id_hmac"][:16] or "?", entry["actor"],
             entry["address"] or "-", entry["outcome"])  # fmt: skip


def failed(client, namespace: str, actor: str, address: str | None, customer_ids: list[str],
           exc: BaseException) -> None:  # fmt: skip
    """Record an erasure that raised ``exc`` as ``failed: <error>`` for each id. A failure
    to record (Redis down: likely why the erasure failed) is logged, never raised: the
    caller re-raises the erasure's own error, and each id's log line has gone out."""
    why = outcome(None, f"{type(exc).__name__}: {exc}")
    for customer_id in customer_ids:
        try:
            record(client, namespace, actor, address, customer_id, why)
        except Exception as lost:  # the log line went out; the stream entry did not
            LOG.warning("audit entry not written to Redis: %s: %s", type(lost).__name__, lost)


@contextmanager
def erasing(client, namespace: str, actor: str, address: str | None, customer_ids: list[str]):
    """Around an erasure: yields a list for its reports, then records one entry per id,
    ``failed: <error>`` for each when the block raised (and re-raises its error)."""
    reports: list[dict] = []
    try:
        yield reports
    except Exception as exc:
        failed(client, namespace, actor, address, customer_ids, exc)
        raise
    done = {report["customer_id"]: report for report in reports}
    for customer_id in customer_ids:
        record(client, namespace, actor, address, customer_id, outcome(done.get(customer_id)))


def cli_actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in a bare container
        return "cli"


def read(client, namespace: str, limit: int, customer_id: str | None = None) -> list[dict]:
    """The newest ``limit`` entries, newest first; only one id's with ``customer_id``."""
    keys, wanted = Keys(namespace), None
    if customer_id is not None:
        salt = client.hget(keys.erased, SALT)  # a read: the API may hold a read-only login
        if salt is None:
            return []  # no salt yet: nobody was ever erased here
        wanted = id_hash(_bytes(salt), customer_id)
    rows = []
    count = MAX_ENTRIES if wanted is not None else limit
    for entry_id, fields in client.xrevrange(keys.audit, count=count):
        entry = {_text(k): _text(v) for k, v in fields.items()}
        if wanted is not None and entry.get("id_hmac") != wanted:
            continue
        entry["at_ms"] = int(entry.get("at_ms") or 0)
        rows.append({"entry": _text(entry_id), **entry})
        if len(rows) >= limit:
            break
    return rows


def _bytes(value) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

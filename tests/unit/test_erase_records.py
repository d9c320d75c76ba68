"""How a DLQ re-drive knows a customer was erased (issue #26, item 9): the namespace keeps
``h:`` + HMAC-SHA256(salt, id) -> erase time, never the id; a record refused before the
erase is skipped, one refused after it (the customer came back) is re-driven."""

from __future__ import annotations

import hashlib
import hmac
import json
from types import SimpleNamespace

from streams.erasure import erased_before_refused
from streams.state.erase import ErasedIds

SALT = b"0123456789abcdef0123456789abcdef"
ERASED_AT = 1_700_000_000_000


def stored(*ids: str) -> dict:
    """The hash as Redis returns it, written here by hand (the test's own HMAC)."""
    out = {b"salt": SALT}
    for cid in ids:
        out[b"h:" + hmac.new(SALT, cid.encode(), hashlib.sha256).hexdigest().encode()] = str(
            ERASED_AT
        ).encode()
    return out


def dlq_record(cid: str | None, refused_at: int, key: str | None = None, raw: bytes | None = None):
    value = raw if raw is not None else json.dumps({"customer_id": cid, "amount": "-1"}).encode()
    return SimpleNamespace(
        key=(key or cid or "").encode() or None, value=value, timestamp=refused_at
    )


def same(cid: str) -> str:
    return cid


def test_the_erased_are_known_by_hash_and_skipped_only_for_records_refused_before():
    erased = ErasedIds(stored("gone", "also-gone"))
    assert erased.erased_at_ms("gone") == ERASED_AT
    assert erased.erased_at_ms("kept") is None
    assert erased_before_refused(dlq_record("gone", ERASED_AT - 1), same, erased)
    assert not erased_before_refused(dlq_record("gone", ERASED_AT + 1), same, erased)  # came back
    assert not erased_before_refused(dlq_record("kept", ERASED_AT - 1), same, erased)
    # a payload that is not JSON: the record's key names the customer
    assert erased_before_refused(
        dlq_record(None, 5, key="also-gone", raw=b"{not json"), same, erased
    )
    # ids are looked up as `rtba erase` looks them up (a pseudonym, say)
    assert erased_before_refused(dlq_record("GONE", 5), str.lower, erased)


def test_nothing_erased_nothing_skipped():
    assert not erased_before_refused(dlq_record("gone", 5), same, ErasedIds({}))

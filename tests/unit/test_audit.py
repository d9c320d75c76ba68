"""The audit log is bounded and holds no id (a stand-in Redis client records the calls;
tests/integration/test_api_security.py reads the real stream)."""

from __future__ import annotations

import pytest

from streams import audit


class Recorder:
    """Just the commands streams.audit sends, kept in dicts."""

    def __init__(self):
        self.hashes, self.added = {}, []

    def hsetnx(self, key, field, value):
        self.hashes.setdefault(key, {}).setdefault(field, value)

    def hget(self, key, field):
        return self.hashes.get(key, {}).get(field)

    def xadd(self, key, fields, **options):
        self.added.append((key, fields, options))


def test_each_entry_is_capped_and_names_no_one():
    client = Recorder()
    audit.record(client, "shop", "cli:ops", None, "bob@example.com", "erased", now_ms=5)
    [(key, fields, options)] = client.added
    assert key == "shop:audit"
    assert options == {"maxlen": audit.MAX_ENTRIES, "approximate": True}
    assert audit.MAX_ENTRIES == 100_000  # docs/api.md and docs/security.md say so
    assert "bob" not in repr(fields) and len(fields["id_hmac"]) == 64
    assert (fields["actor"], fields["outcome"], fields["at_ms"]) == ("cli:ops", "erased", "5")


def test_a_failed_erasure_is_recorded_and_raised():
    client = Recorder()
    with pytest.raises(RuntimeError), audit.erasing(client, "shop", "cli", None, ["a", "b"]):
        raise RuntimeError("Kafka went away")
    assert [f["outcome"] for _, f, _ in client.added] == [
        "failed: RuntimeError: Kafka went away"
    ] * 2


class RedisDown(Recorder):
    def hsetnx(self, key, field, value):
        import redis

        raise redis.exceptions.ConnectionError("Redis went away")


def test_a_failed_erasure_with_redis_down_still_logs_and_raises_its_own_error():
    """The audit write fails too (Redis down): each id's log line still goes out, with
    no hash (that needs the salt in Redis), and the erasure's error is the one raised."""
    import logging

    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    audit.LOG.addHandler(handler)
    try:
        with pytest.raises(RuntimeError, match="erase failed"):
            with audit.erasing(RedisDown(), "shop", "api:admin:abc", "10.0.0.9", ["a", "b"]):
                raise RuntimeError("erase failed")
    finally:
        audit.LOG.removeHandler(handler)
    erased = [line for line in lines if line.startswith("erase ")]
    assert (
        erased == ["erase ? by api:admin:abc from 10.0.0.9: failed: RuntimeError: erase failed"] * 2
    )

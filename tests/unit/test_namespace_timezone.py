"""RTBA_TIMEZONE is a fact of the namespace: the first worker stores it, another zone is
refused with one line (exit 2), and a namespace that counted events before zones existed
is taken to count UTC days (streams/state/timezone.py)."""

import pytest

from streams.errors import ConfigError
from streams.settings import Settings
from streams.state.timezone import claim_timezone


class FakeRedis:
    """GET, SET NX and HGET over dicts: all the claim uses."""

    def __init__(self, strings=None, hashes=None):
        self.strings, self.hashes = dict(strings or {}), dict(hashes or {})

    def get(self, key):
        return self.strings.get(key)

    def set(self, key, value, nx=False):
        if nx and key in self.strings:
            return None
        self.strings[key] = value.encode()
        return True

    def hget(self, key, field):
        return self.hashes.get(key, {}).get(field)


def settings(zone: str) -> Settings:
    return Settings(namespace="shop", timezone=zone)


def test_the_first_worker_stores_its_zone_and_a_second_zone_is_refused():
    client = FakeRedis()
    assert claim_timezone(settings("America/New_York"), client) == "America/New_York"
    assert client.strings["shop:timezone"] == b"America/New_York"
    assert claim_timezone(settings("America/New_York"), client) == "America/New_York"
    with pytest.raises(ConfigError) as refused:
        claim_timezone(settings("UTC"), client)
    message = str(refused.value)
    assert "\n" not in message and refused.value.exit_code == 2
    assert "counts purchase days in America/New_York" in message
    assert "RTBA_TIMEZONE=America/New_York" in message


def test_utc_by_either_name_is_one_zone():
    client = FakeRedis()
    claim_timezone(settings("Etc/UTC"), client)
    assert claim_timezone(settings("UTC"), client) == "UTC"


def test_a_namespace_with_events_from_before_zones_counts_utc_days():
    client = FakeRedis(hashes={"shop:stats": {"applied": b"12"}})
    with pytest.raises(ConfigError, match="counts purchase days in UTC"):
        claim_timezone(settings("Europe/Berlin"), client)
    assert client.strings["shop:timezone"] == b"UTC"

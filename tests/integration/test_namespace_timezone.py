"""RTBA_TIMEZONE is a fact of the namespace: the first worker stores it, another zone is
refused with one line (exit 2), and a namespace that counted events before zones existed
is taken to count UTC days (streams/state/timezone.py). On the real Redis of the session,
each test in a namespace of its own."""

import pytest

from streams.errors import ConfigError
from streams.state.timezone import claim_timezone

pytestmark = pytest.mark.integration


@pytest.fixture
def zone_in(settings):
    """Settings of this test's namespace with RTBA_TIMEZONE set to a given zone."""
    return lambda zone: settings.model_copy(update={"timezone": zone})


def test_the_first_worker_stores_its_zone_and_a_second_zone_is_refused(zone_in, redis_client):
    ns = zone_in("UTC").namespace
    assert claim_timezone(zone_in("America/New_York"), redis_client) == "America/New_York"
    assert redis_client.get(f"{ns}:timezone") == b"America/New_York"
    assert claim_timezone(zone_in("America/New_York"), redis_client) == "America/New_York"
    with pytest.raises(ConfigError) as refused:
        claim_timezone(zone_in("UTC"), redis_client)
    message = str(refused.value)
    assert "\n" not in message and refused.value.exit_code == 2
    assert "counts purchase days in America/New_York" in message
    assert "RTBA_TIMEZONE=America/New_York" in message


def test_utc_by_either_name_is_one_zone(zone_in, redis_client):
    claim_timezone(zone_in("Etc/UTC"), redis_client)
    assert claim_timezone(zone_in("UTC"), redis_client) == "UTC"


def test_a_namespace_with_events_from_before_zones_counts_utc_days(zone_in, redis_client):
    ns = zone_in("UTC").namespace
    redis_client.hset(f"{ns}:stats", "applied", 12)
    with pytest.raises(ConfigError, match="counts purchase days in UTC"):
        claim_timezone(zone_in("Europe/Berlin"), redis_client)
    assert redis_client.get(f"{ns}:timezone") == b"UTC"

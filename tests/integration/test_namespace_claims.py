"""Facts of the namespace (streams/state/claims.py): the time zone, the pseudonym key and
the segment map. The first worker stores each, another value is refused with one line
(exit 2), and a namespace that applied events before the fact was kept holds what rtba
did then: UTC days, raw ids, the classic map. On the real Redis of the session, each test
in a namespace of its own, without a worker process."""

import pytest

from streams.errors import ConfigError
from streams.state.timezone import claim_timezone

pytestmark = pytest.mark.integration


def setting_in(name: str):
    """A fixture: this test's namespace's settings with setting ``name`` given a value."""

    @pytest.fixture
    def with_value(settings):
        return lambda value: settings.model_copy(update={name: value})

    return with_value


zone_in = setting_in("timezone")  # RTBA_TIMEZONE
map_in = setting_in("segment_map")  # RTBA_SEGMENT_MAP


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


KEY = "pseudonym-key-0123456789"
RAW_IDS = "holds raw ids: unset RTBA_PSEUDONYM_KEY, or replay into a fresh namespace"


@pytest.fixture
def key_in(settings):
    """Settings of this test's namespace with RTBA_PSEUDONYM_KEY set (or not)."""
    from pydantic import SecretStr

    return lambda key: settings.model_copy(
        update={"pseudonym_key": SecretStr(key) if key else None, "pseudonym_key_file": None}
    )


def one_line_refusal(attempt) -> str:
    with pytest.raises(ConfigError) as refused:
        attempt()
    message = str(refused.value)
    assert "\n" not in message and refused.value.exit_code == 2, message
    return message


def test_a_key_on_a_namespace_of_raw_ids_is_refused(key_in, redis_client):
    """Events applied without a key (no fingerprint): the ids stored are real ones, so a
    worker or a lookup with a key would put pseudonyms beside them."""
    from streams.privacy import claim_key, customer_refs

    ns = key_in(None).namespace
    redis_client.hset(f"{ns}:stats", "applied", 12)
    message = one_line_refusal(lambda: claim_key(key_in(KEY), redis_client))
    assert message == f"namespace {ns!r} {RAW_IDS}"
    assert redis_client.get(f"{ns}:pseudonym") == b"none"
    one_line_refusal(lambda: customer_refs(key_in(KEY), redis_client))
    claim_key(key_in(None), redis_client)  # a worker without a key carries on
    assert customer_refs(key_in(None), redis_client)(" c1 ") == "c1"


def test_the_first_worker_without_a_key_makes_the_namespace_raw(key_in, redis_client):
    from streams.privacy import claim_key

    ns = key_in(None).namespace
    claim_key(key_in(None), redis_client)
    assert redis_client.get(f"{ns}:pseudonym") == b"none"
    assert RAW_IDS in one_line_refusal(lambda: claim_key(key_in(KEY), redis_client))


def test_a_keyed_namespace_keeps_its_fingerprint(key_in, redis_client):
    import hashlib
    import hmac

    from streams.privacy import claim_key

    ns = key_in(None).namespace
    claim_key(key_in(KEY), redis_client)
    mark = "k_" + hmac.new(KEY.encode(), b"rtba-key-fingerprint", hashlib.sha256).hexdigest()
    assert redis_client.get(f"{ns}:pseudonym") == mark[:18].encode()
    redis_client.hset(f"{ns}:stats", "applied", 12)  # events applied since
    claim_key(key_in(KEY), redis_client)
    assert "RTBA_PSEUDONYM_KEY is not set" in one_line_refusal(
        lambda: claim_key(key_in(None), redis_client)
    )


def test_the_first_worker_stores_its_segment_map_and_another_is_refused(map_in, redis_client):
    from streams.state.claims import claim_segment_map

    ns = map_in("classic").namespace
    assert claim_segment_map(map_in("classic"), redis_client) == "classic"
    assert redis_client.get(f"{ns}:segment_map") == b"classic"
    assert claim_segment_map(map_in("classic"), redis_client) == "classic"
    message = one_line_refusal(lambda: claim_segment_map(map_in("repeat-aware"), redis_client))
    assert "names segments under the classic map" in message
    assert "RTBA_SEGMENT_MAP=classic" in message


def test_a_namespace_with_events_from_before_maps_keeps_classic(map_in, redis_client):
    from streams.state.claims import claim_segment_map

    ns = map_in("classic").namespace
    redis_client.hset(f"{ns}:stats", "applied", 12)
    one_line_refusal(lambda: claim_segment_map(map_in("repeat-aware"), redis_client))
    assert redis_client.get(f"{ns}:segment_map") == b"classic"


def test_readers_segment_under_the_namespaces_map_not_their_own(map_in, redis_client):
    """A reader (CLI, API) whose RTBA_SEGMENT_MAP differs from the workers' names the
    customers as the workers do: a one-time buyer 200 days back is Hibernating under
    classic, One-time Lapsed under repeat-aware (tests/reference.py's tables)."""
    from decimal import Decimal

    from streams.read.reader import StateReader
    from tests.reference import reference_segment

    classic = reference_segment(200.0, 1, Decimal(5), "classic")
    assert classic != reference_segment(200.0, 1, Decimal(5), "repeat-aware")

    redis_client.set(f"{map_in('classic').namespace}:segment_map", "classic")  # the workers'
    for own in ("repeat-aware", "classic"):
        rfm = StateReader(map_in(own), client=redis_client).models().rfm
        assert rfm.segment_map == "classic"
        assert rfm.segment(recency_days=200.0, frequency=1, monetary=5.0) == classic


def test_a_reader_of_an_unclaimed_namespace_uses_its_own_map(map_in, redis_client):
    from streams.read.reader import StateReader

    rfm = StateReader(map_in("classic"), client=redis_client).models().rfm
    assert rfm.segment_map == "classic"


@pytest.mark.parametrize("family", ["spend_cells", "cell_members"])
def test_cell_families_are_whole_from_a_fresh_namespace_or_after_a_repair(
    settings, redis_client, family
):
    """A namespace's first worker, before any event, claims its spend cells and cell
    members whole (the refit fits Gamma-Gamma on the one and wakes customers by cell
    through the other); one that applied events before them is missing them until
    `rtba verify --repair` rewrites them, and a second claim changes nothing."""
    from streams.state.claims import claim_whole, is_whole, mark_whole

    fresh, old = settings.namespace, f"{settings.namespace}-old"
    assert not is_whole(redis_client, fresh, family)  # unclaimed: the sample, the walk
    assert claim_whole(redis_client, fresh)[family] and is_whole(redis_client, fresh, family)
    assert redis_client.get(f"{fresh}:{family}") == b"kept"

    redis_client.hset(f"{old}:stats", "applied", 12)  # events applied before the family
    try:
        assert not claim_whole(redis_client, old)[family]
        assert not claim_whole(redis_client, old)[family]  # restarts keep it missing
        assert redis_client.get(f"{old}:{family}") == b"missing"
        mark_whole(redis_client, old)
        assert claim_whole(redis_client, old)[family] and is_whole(redis_client, old, family)
    finally:
        redis_client.delete(f"{old}:stats", f"{old}:spend_cells", f"{old}:cell_members")

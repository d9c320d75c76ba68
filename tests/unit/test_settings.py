"""The README's configuration table against the settings rtba reads: every variable it
lists exists with the default it documents, every setting is listed, and a junk value
for each is refused with one message that names the variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streams.errors import ConfigError
from streams.settings import SECRETS, Settings, env_name

ROOT = Path(__file__).resolve().parents[2]


def readme_table() -> dict[str, str]:
    """{variable: the default column's text} from the README's Configuration table."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Configuration") :]
    rows = re.findall(r"^\| `([A-Z_]+)` \| ([^|]+) \|", section, re.MULTILINE)
    return {name: default.strip() for name, default in rows}


def documented(text: str):
    """The README's default as a value: `x` (first backticked token) or 'unset'."""
    if text == "unset":
        return None
    match = re.match(r"`([^`]+)`", text)
    assert match, f"no default in {text!r}"
    return match.group(1)


def same(documented_value: str | None, actual) -> bool:
    if documented_value is None or actual is None:
        return documented_value is None and actual is None
    if isinstance(actual, bool):
        return documented_value == ("1" if actual else "0")
    if isinstance(actual, tuple):
        return tuple(float(x) for x in documented_value.split(",")) == actual
    if isinstance(actual, int | float):
        return float(documented_value) == actual
    if isinstance(actual, Path):
        if documented_value.startswith("~"):
            return Path(documented_value).expanduser().resolve() == actual
        return actual == ROOT / documented_value  # relative to the checkout
    return documented_value == actual


# A value a person could mistype for each setting (a test fails until a new one is added).
JUNK = {
    "KAFKA_BOOTSTRAP": "nonsense", "REDIS_URL": "nonsense", "RTBA_NAMESPACE": "my shop",
    "RTBA_HOME": "__a file__", "RTBA_CACHE": "__a file__", "RTBA_PARTITIONS": "abc",
    "RTBA_REPLICATION_FACTOR": "0", "RTBA_ALLOWED_LATENESS_S": "-5",
    "RTBA_MAX_FUTURE_S": "soon", "RTBA_MAX_AMOUNT": "0", "RTBA_MAX_EVENT_BYTES": "1.5",
    "RTBA_ORDER_HORIZON_DAYS": "forever", "RTBA_TIMEZONE": "Mars/Olympus",
    "RTBA_BATCH_SIZE": "0", "RTBA_BATCH_WITHIN_S": "x",
    "RTBA_FETCH_WAIT_MS": "-1", "RTBA_RECENCY_EDGES": "365,180,90,30",
    "RTBA_FREQUENCY_EDGES": "1,2,3", "RTBA_MONETARY_EDGES": "a,b,c,d",
    "RTBA_RFM_ADAPTIVE": "maybe", "RTBA_RFM_REFRESH_S": "0", "RTBA_CHURN_MODEL": "foo",
    "RTBA_SEGMENT_MAP": "modern",
    "RTBA_CHURN_THRESHOLD": "1.5", "RTBA_CHURN_REARM_BELOW": "-0.1", "RTBA_CHURN_REFIT_S": "abc",
    "RTBA_CHURN_FIT_SAMPLE": "all",
    "RTBA_TICK_S": "-1", "RTBA_OUTBOX_RELAY_S": "0", "RTBA_SESSION_TIMEOUT_S": "0.1",
    "RTBA_WORKER_ID": "worker one", "RTBA_REDIS_CLUSTER": "yes please",
    "RTBA_REDIS_FSYNC": "never", "RTBA_KAFKA_PORT": "70000",
    "RTBA_KAFKA_CONTROLLER_PORT": "0", "RTBA_REDIS_PORT": "redis", "RTBA_CLUSTERS": "0",
    "RTBA_CLUSTER_SNAPSHOT_EVERY": "0", "RTBA_CLUSTER_WARMUP": "-1",
    "RTBA_CLUSTER_SNAPSHOT_MIN_S": "-2", "RTBA_METRICS_PORT": "0",
    "RTBA_METRICS_HOST": "local host", "RTBA_DASHBOARD_SAMPLE_S": "0",
    "RTBA_DASHBOARD_HISTORY": "1", "RTBA_FEED_SIZE": "lots", "RTBA_API_TOKEN": "short",
    "RTBA_API_TOKEN_FILE": "/no/such/file", "RTBA_REDIS_USERNAME": "two words",
    "RTBA_API_ADMIN_TOKEN": "short", "RTBA_API_ADMIN_TOKEN_FILE": "/no/such/file",
    "RTBA_API_ALLOWED_HOSTS": "good.example, bad host", "RTBA_API_MAX_CONCURRENT": "0",
    "RTBA_API_MAX_STREAMS": "many", "RTBA_API_WALK_CACHE_S": "-1",
    "RTBA_REDIS_PASSWORD": "   ", "RTBA_REDIS_PASSWORD_FILE": "/no/such/file",
    "RTBA_REDIS_WORKER_USERNAME": "two words", "RTBA_REDIS_WORKER_PASSWORD": "   ",
    "RTBA_REDIS_WORKER_PASSWORD_FILE": "/no/such/file", "RTBA_REDIS_API_USERNAME": "a b",
    "RTBA_REDIS_API_PASSWORD": "   ", "RTBA_REDIS_API_PASSWORD_FILE": "/no/such/file",
    "RTBA_REDIS_TLS_CA_FILE": "/no/such/ca.pem", "RTBA_REDIS_TLS_CERT_FILE": "/no/such/file",
    "RTBA_REDIS_TLS_KEY_FILE": "/no/such/file", "RTBA_KAFKA_SECURITY_PROTOCOL": "TLS",
    "RTBA_KAFKA_SASL_MECHANISM": "GSSAPI", "RTBA_KAFKA_SASL_USERNAME": "a b",
    "RTBA_KAFKA_SASL_PASSWORD": "   ", "RTBA_KAFKA_SASL_PASSWORD_FILE": "/no/such/file",
    "RTBA_KAFKA_SSL_CA_FILE": "/no/such/file", "RTBA_KAFKA_SSL_CERT_FILE": "/no/such/file",
    "RTBA_KAFKA_SSL_KEY_FILE": "/no/such/file", "RTBA_PSEUDONYM_KEY": "too-short",
    "RTBA_PSEUDONYM_KEY_FILE": "/no/such/file", "RTBA_RETENTION_DAYS": "0",
}  # fmt: skip


def test_the_readme_lists_every_setting_and_only_settings():
    listed = set(readme_table())
    known = {env_name(field) for field in Settings.model_fields}
    assert listed == known, (listed - known, known - listed)


@pytest.mark.parametrize("name", sorted(readme_table()))
def test_each_setting_has_the_default_the_readme_documents(name, tmp_path):
    field = next(f for f in Settings.model_fields if env_name(f) == name)
    # An empty home: the local stack's state file would override the connection defaults.
    actual = getattr(Settings.from_env({"RTBA_HOME": str(tmp_path)} if name != "RTBA_HOME"
                                       else {}), field)  # fmt: skip
    assert same(documented(readme_table()[name]), actual), (name, actual)


@pytest.mark.parametrize("name", sorted(readme_table()))
def test_a_junk_value_is_refused_with_one_line_naming_the_variable(name, tmp_path):
    assert name in JUNK, f"add a junk value for {name}"
    junk = JUNK[name]
    if junk == "__a file__":
        (tmp_path / "f").write_text("")
        junk = str(tmp_path / "f")
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({name: junk})
    message = str(refused.value)
    assert name in message and "\n" not in message, message
    if name in SECRETS:  # a secret, even a wrong one, is never written out
        assert junk not in message and "***" in message, message
    elif name != "RTBA_CHURN_REARM_BELOW" or junk.startswith("-"):
        assert repr(junk) in message, message  # what was given, to compare with the form


def test_the_api_token_comes_from_the_variable_or_a_file_never_both(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("s3cret-token-0123456789\n")
    assert Settings.from_env({"RTBA_API_TOKEN_FILE": str(secret)}).api_secret() == (
        "s3cret-token-0123456789"
    )
    given = Settings.from_env({"RTBA_API_TOKEN": "another-token-0123456789"})
    assert given.api_secret() == "another-token-0123456789"
    assert "another-token" not in repr(given) and "another-token" not in str(given)
    assert Settings.from_env({}).api_secret() is None
    with pytest.raises(ConfigError, match="not both"):
        Settings.from_env({"RTBA_API_TOKEN_FILE": str(secret), "RTBA_API_TOKEN": "x" * 20})


def test_security_settings_reach_both_clients_and_contradictions_are_refused(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("kafka-pw-0123\n")
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked until a connection is made")
    chosen = Settings.from_env({
        "RTBA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RTBA_KAFKA_SASL_USERNAME": "shop",
        "RTBA_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "RTBA_KAFKA_SASL_PASSWORD_FILE": str(secret),
        "REDIS_URL": "rediss://db.internal:6380/0", "RTBA_REDIS_USERNAME": "rtba",
        "RTBA_REDIS_PASSWORD": "redis-pw-0123", "RTBA_REDIS_TLS_CA_FILE": str(ca),
    })  # fmt: skip
    assert chosen.kafka_options() == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "shop", "sasl_plain_password": "kafka-pw-0123",
    }  # fmt: skip
    assert chosen.redis_options() == {
        "username": "rtba", "password": "redis-pw-0123", "ssl_ca_certs": str(ca),
    }  # fmt: skip
    assert "redis-pw-0123" not in repr(chosen) and "kafka-pw" not in repr(chosen)
    assert Settings.from_env({}).kafka_options() == {"security_protocol": "PLAINTEXT"}
    assert Settings.from_env({}).redis_options() == {}
    refused = {
        "needs RTBA_KAFKA_SASL_USERNAME": {"RTBA_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"},
        "set RTBA_KAFKA_SECURITY_PROTOCOL": {"RTBA_KAFKA_SASL_USERNAME": "shop",
                                             "RTBA_KAFKA_SASL_PASSWORD": "pw"},
        "need RTBA_KAFKA_SECURITY_PROTOCOL=SSL": {"RTBA_KAFKA_SSL_CA_FILE": str(ca)},
        "rediss://": {"RTBA_REDIS_TLS_CA_FILE": str(ca)},
        "not both": {"RTBA_REDIS_PASSWORD": "pw", "RTBA_REDIS_PASSWORD_FILE": str(secret)},
    }  # fmt: skip
    for words, env in refused.items():
        with pytest.raises(ConfigError, match=words.replace("?", "")):
            Settings.from_env(env)


def test_a_password_in_redis_url_is_never_written_out():
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"REDIS_URL": "redis://rtba:hunter2-secret@db:notaport/0"})
    assert "hunter2" not in str(refused.value) and "***" in str(refused.value)
    chosen = Settings.from_env({"REDIS_URL": "redis://rtba:hunter2-secret@db:6379/0"})
    assert "hunter2" not in repr(chosen)


def test_good_values_are_read_in_the_forms_a_person_types(tmp_path):
    settings = Settings.from_env({
        "RTBA_PARTITIONS": "12", "RTBA_RECENCY_EDGES": "7, 30, 90, 365", "RTBA_RFM_ADAPTIVE": "0",
        "RTBA_WORKER_ID": "", "KAFKA_BOOTSTRAP": "k1:9092, k2:9092", "RTBA_HOME": "rel/home",
        "RTBA_CHURN_MODEL": "bgnbd", "RTBA_REDIS_PORT": "7000", "RTBA_TICK_S": "0.5",
    })  # fmt: skip
    assert settings.partitions == 12 and settings.tick_s == 0.5
    assert settings.recency_edges == (7, 30, 90, 365) and settings.rfm_adaptive is False
    assert settings.worker_id is None  # empty is unset
    assert settings.kafka_bootstrap == "k1:9092,k2:9092"
    assert settings.home.is_absolute() and settings.home == Path("rel/home").resolve()
    assert settings.churn_model == "bgnbd" and settings.redis_port == 7000


def test_rearm_must_be_below_the_alert_threshold():
    with pytest.raises(ConfigError, match="RTBA_CHURN_REARM_BELOW must be below"):
        Settings.from_env({"RTBA_CHURN_THRESHOLD": "0.4", "RTBA_CHURN_REARM_BELOW": "0.5"})


def test_the_local_stack_gives_the_addresses_the_environment_does_not(tmp_path):
    (tmp_path / "stack.json").write_text('{"kafka_bootstrap": "127.0.0.1:1234", '
                                         '"redis_url": "redis://127.0.0.1:4321/0"}')  # fmt: skip
    found = Settings.from_env({"RTBA_HOME": str(tmp_path)})
    assert (found.kafka_bootstrap, found.redis_url) == (
        "127.0.0.1:1234",
        "redis://127.0.0.1:4321/0",
    )
    given = Settings.from_env({"RTBA_HOME": str(tmp_path), "REDIS_URL": "redis://elsewhere:6379/0"})
    assert (given.kafka_bootstrap, given.redis_url) == (
        "127.0.0.1:1234",
        "redis://elsewhere:6379/0",
    )


def test_kafka_ssl_settings_become_one_ssl_context_for_faust_and_files_for_kafka_python(tmp_path):
    import subprocess

    from streams.processing.app import broker_credentials

    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem",
         "-out", "ca.pem", "-days", "1", "-subj", "/CN=rtba test CA"],
        cwd=tmp_path, check=True, capture_output=True,
    )  # fmt: skip
    ca, key = str(tmp_path / "ca.pem"), str(tmp_path / "key.pem")
    chosen = Settings.from_env({
        "RTBA_KAFKA_SECURITY_PROTOCOL": "SSL", "RTBA_KAFKA_SSL_CA_FILE": ca,
        "RTBA_KAFKA_SSL_CERT_FILE": ca, "RTBA_KAFKA_SSL_KEY_FILE": key,
    })  # fmt: skip
    assert chosen.kafka_options() == {"security_protocol": "SSL", "ssl_cafile": ca,
                                      "ssl_certfile": ca, "ssl_keyfile": key}  # fmt: skip
    credentials = broker_credentials(chosen)
    assert credentials.protocol.value == "SSL"
    assert [c["subject"] for c in credentials.context.get_ca_certs()] == [
        ((("commonName", "rtba test CA"),),)
    ]
    sasl = Settings.from_env({
        "RTBA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RTBA_KAFKA_SASL_USERNAME": "shop",
        "RTBA_KAFKA_SASL_PASSWORD": "pw-0123", "RTBA_KAFKA_SSL_CA_FILE": ca,
    })  # fmt: skip
    login = broker_credentials(sasl)
    assert (login.protocol.value, login.username, login.mechanism.value) == (
        "SASL_SSL",
        "shop",
        "PLAIN",
    )
    assert broker_credentials(Settings.from_env({})) is None

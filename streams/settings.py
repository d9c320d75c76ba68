"""Every setting in one place: its default, its environment variable and what it accepts.

Each field's variable is ``RTBA_`` and its name in capitals, except ``KAFKA_BOOTSTRAP``
and ``REDIS_URL``. An empty variable counts as unset. A value that does not fit is
refused when the settings are read, with the variable's name and the form it expects
(:class:`streams.errors.ConfigError`), never later in a background job.

Connection addresses resolve in this order: the environment variable, then the local
stack started by ``rtba stack up`` (its state file under ``RTBA_HOME``), then the
conventional localhost ports. ``RTBA_HOME`` defaults to ``~/.rtba``, so every command
finds the stack from any directory.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import unquote_plus, urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict

from online_models.days import Days, days_in
from online_models.rfm import RFMScorer
from streams.errors import ConfigError

PREFIX = "RTBA_"
# Kafka's legal characters for topic names and group.instance.id, and no ':' or braces,
# which Redis key names and Cluster hash tags give a meaning (streams/state/keys.py).
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_HOST = re.compile(r"^[A-Za-z0-9.\-\[\]:]{1,255}$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError("expected 1-100 letters, digits, '.', '_' or '-'")
    return value


def _timezone(value: str) -> str:
    days_in(value)  # ValueError, with the form expected, for a name the zone database lacks
    return value


def _bootstrap(value: str) -> str:
    servers = [part.strip() for part in value.split(",")]
    if not all(_HOST_PORT.match(s) and 0 < int(s.rsplit(":", 1)[1]) < 65536 for s in servers):
        raise ValueError("expected host:port, or several separated by commas")
    return ",".join(servers)


def _host(value: str) -> str:
    if not _HOST.match(value):
        raise ValueError("expected a host name or an IP address, such as 127.0.0.1")
    return value


def _redis_url(value: str) -> str:
    parts = urlsplit(value)
    ok = parts.scheme in ("redis", "rediss") and parts.hostname or parts.scheme == "unix"
    try:
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError("expected redis://[user:password@]host:port/db (or rediss://, unix://)")
    _redis_url_arguments(value)
    return value


def _redis_url_arguments(value: str) -> None:
    """Refuse a query argument redis-py would take for a connection option it does not
    have (``?PASSWORD=``, a typo) or cannot read (``?socket_timeout=abc``): redis-py
    itself fails only at the first command, with a TypeError and a traceback."""
    from redis import ConnectionPool

    try:
        ConnectionPool.from_url(value).make_connection()  # builds it; connects to nothing
    except TypeError as exc:  # "...got an unexpected keyword argument 'PASSWORD'"
        name = str(exc).rpartition(" ")[2]
        raise ValueError(f"redis-py knows no connection option {name} (a query argument)"
                         ) from None  # fmt: skip
    except ValueError as exc:
        raise ValueError(str(exc)) from None


def _edges(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _ascending(edges: tuple[float, ...]) -> tuple[float, ...]:
    if len(edges) != 4 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise ValueError("expected four ascending numbers separated by commas")
    return edges


def _directory(path: Path) -> Path:
    path = path.expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ValueError("expected a directory (this path is a file)")
    return path


MIN_TOKEN = 16


def _token(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value().strip()) < MIN_TOKEN:
        raise ValueError(f"expected a secret of at least {MIN_TOKEN} characters")
    return value


def _readable_file(path: Path) -> Path:
    path = path.expanduser().resolve()
    try:
        path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read it ({exc.strerror})") from None
    return path


def _token_file(path: Path) -> Path:
    path = _readable_file(path)
    if len(path.read_text().strip()) < MIN_TOKEN:
        raise ValueError(f"expected a file holding a secret of at least {MIN_TOKEN} characters")
    return path


_HOST = re.compile(r"^(\*|(\*\.)?[a-z0-9_]([a-z0-9_.-]{0,252})|\[[0-9a-f:.]{2,45}\])$")


def _hosts(value: object) -> tuple[str, ...]:
    """RTBA_API_ALLOWED_HOSTS: comma-separated names, addresses ([v6] in brackets), '*'."""
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [str(n).strip().lower().rstrip(".") for n in names if str(n).strip()]
    for name in names:
        if not _HOST.match(name):
            raise ValueError(
                "expected comma-separated host names or addresses ([::1] for IPv6), or '*'"
            )
    return tuple(names)


def _secret(value: SecretStr) -> SecretStr:
    if not value.get_secret_value().strip():
        raise ValueError("expected a secret, not blanks")
    return value


_PRINTABLE = re.compile(r"^[!-~]{1,256}$")


def _user(value: str) -> str:
    if not _PRINTABLE.match(value):
        raise ValueError("expected 1-256 printable characters, no spaces")
    return value


def redacted(url: str) -> str:
    """``url`` with its password, if any, written ``***`` (for messages and logs): the
    ``user:password@`` form, and a ``password`` query argument, which redis-py also reads
    (its name compared as redis-py does, after percent-decoding, and in any case).

    >>> redacted("redis://rtba:s3cret@db:6379/0"), redacted("redis://db:6379")
    ('redis://rtba:***@db:6379/0', 'redis://db:6379')
    >>> redacted("redis://db:6379/0?socket_timeout=5&password=s3cret")
    'redis://db:6379/0?socket_timeout=5&password=***'
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed "[" of an IPv6 host: show nothing that may be secret
        return "<a URL that cannot be read>"
    netloc, query = parts.netloc, parts.query
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    if query:
        query = "&".join(_redacted_argument(pair) for pair in query.split("&"))
    # a fragment means nothing to Redis: it is only ever something pasted by mistake
    fragment = "***" if parts.fragment else ""
    if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return url
    # rebuilt by hand: geturl() would write unix:///path as unix:/path
    scheme = url[: len(parts.scheme) + 1]
    slashes = "//" if url[len(scheme) :].startswith("//") else ""
    tail = (f"?{query}" if query else "") + (f"#{fragment}" if fragment else "")
    return f"{scheme}{slashes}{netloc}{parts.path}{tail}"


def _redacted_argument(pair: str) -> str:
    name, equals, _value = pair.partition("=")
    if equals and unquote_plus(name).strip().lower() == "password":
        return f"{name}=***"
    return pair


Edges = Annotated[tuple[float, ...], NoDecode, BeforeValidator(_edges), AfterValidator(_ascending)]
Directory = Annotated[Path, AfterValidator(_directory)]
ReadableFile = Annotated[Path, AfterValidator(_readable_file)]
Secret = Annotated[SecretStr, AfterValidator(_secret)]
User = Annotated[str, AfterValidator(_user)]
Port = Annotated[int | None, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(gt=0)]

# The environment read by the next Settings(): from_env's mapping, else os.environ.
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("rtba_environ", default=None)


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source, over the mapping ``from_env`` was given
    (tests and the benchmarks hand a child exactly the settings they mean)."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        environ = _ENVIRON.get()
        if environ is None:
            return super()._load_env_vars()
        # as the base class reads os.environ: names in lower case, empty values unset
        return {name.lower(): value for name, value in environ.items() if value != ""}


def read_stack_state(home: Path) -> dict:
    try:
        return json.loads(stack_state_file(home).read_text())
    except (OSError, ValueError):
        return {}


def stack_state_file(home: Path) -> Path:
    return home / "stack.json"


class Settings(BaseSettings):
    """rtba's settings; build them with :meth:`from_env`.

    >>> Settings.from_env({"RTBA_PARTITIONS": "12"}).partitions
    12
    >>> Settings.from_env({"RTBA_PARTITIONS": "twelve"})
    Traceback (most recent call last):
    ...
    streams.errors.ConfigError: RTBA_PARTITIONS='twelve': expected a whole number
    """

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_ignore_empty=True, frozen=True, extra="ignore"
    )

    kafka_bootstrap: Annotated[str, AfterValidator(_bootstrap)] = Field(
        "127.0.0.1:9092", validation_alias="KAFKA_BOOTSTRAP"
    )
    redis_url: Annotated[str, AfterValidator(_redis_url)] = Field(
        "redis://127.0.0.1:6379/0", validation_alias="REDIS_URL"
    )
    namespace: Annotated[str, AfterValidator(_name)] = "behavior"
    home: Directory = Path("~/.rtba")
    # The Kafka jar cache of `rtba stack install` (the checkout's .cache/ by default).
    cache: Directory = Path(__file__).resolve().parents[1] / ".cache"
    partitions: int = Field(6, ge=1, le=10_000)
    replication_factor: int = Field(1, ge=1, le=100)
    allowed_lateness_s: float = Field(300.0, ge=0)
    max_future_s: Seconds = 86_400.0
    max_amount: Seconds = 1_000_000.0
    max_event_bytes: int = Field(65_536, ge=256, le=10_000_000)
    # A customer's orders are kept this long after its latest event (de-duplication and
    # refunds), then kept as totals only (docs/decisions.md, "The order horizon").
    order_horizon_days: Seconds = 730.0
    # The shop's time zone (IANA name): purchase days (x) and the order horizon's midnight
    # are its calendar days (docs/decisions.md, S9). A namespace fact: set it before the
    # first event, as a different one changes what a purchase day is.
    timezone: Annotated[str, AfterValidator(_timezone)] = "UTC"
    batch_size: int = Field(500, ge=1, le=100_000)
    # A lone event waits this long for company before its batch runs (the latency floor).
    batch_within_s: float = Field(0.02, ge=0, le=60)
    # How long the broker may hold a fetch when it has little to return (Faust's driver
    # hard-codes 1,500 ms; streams/processing/transport.py).
    fetch_wait_ms: int = Field(100, ge=0, le=60_000)
    recency_edges: Edges = (30.0, 90.0, 180.0, 365.0)
    frequency_edges: Edges = (2.0, 3.0, 5.0, 8.0)
    monetary_edges: Edges = (100.0, 300.0, 750.0, 2000.0)
    rfm_adaptive: bool = True
    rfm_refresh_s: Seconds = 60.0
    # Segment names (docs/segments.md): "repeat-aware" names one-time buyers apart (New,
    # One-time Recent, One-time Lapsed) so At Risk, Loyal, ... mean repeat buyers;
    # "classic" is the plain R x FM grid for everyone.
    segment_map: Literal["repeat-aware", "classic"] = "repeat-aware"
    churn_model: Literal["mbgnbd", "bgnbd"] = "mbgnbd"
    churn_threshold: float = Field(0.7, gt=0, lt=1)
    churn_rearm_below: float = Field(0.5, ge=0, lt=1)
    churn_refit_s: Seconds = 300.0
    # The churn refit fits on this many customers (a deterministic, uniform sample: the
    # first due-index buckets; docs/segments.md): its cost stops growing with the population.
    churn_fit_sample: int = Field(200_000, ge=100, le=100_000_000)
    tick_s: Seconds = 1.0
    outbox_relay_s: Seconds = 1.0  # how often the leader relays a crashed writer's leftovers
    # A dead worker's partitions move after this long without its heartbeat (Kafka's
    # group.min.session.timeout.ms is 6 s by default); Faust's own default is 60 s.
    session_timeout_s: float = Field(6.0, ge=1, le=3600)
    # Static group membership (KIP-345) when set: a restarted worker with the same id gets
    # its partitions back at once, without a rebalance. Unique per running worker.
    worker_id: Annotated[str, AfterValidator(_name)] | None = None
    # The local stack's Redis AOF fsync policy: "always" makes every acknowledged write
    # durable before its Kafka offsets are committed; "everysec" may lose up to a second.
    redis_fsync: Literal["always", "everysec"] = "always"
    # `rtba stack up` starts a three-master Redis Cluster instead of one redis-server.
    # Workers and the CLI need no setting: they ask the server which kind it is.
    redis_cluster: bool = False
    # Fixed loopback ports for `rtba stack up` (free ones when unset).
    kafka_port: Port = None
    kafka_controller_port: Port = None
    redis_port: Port = None
    clusters: int = Field(5, ge=1, le=100)
    cluster_snapshot_every: int = Field(500, ge=1)
    cluster_warmup: int = Field(2000, ge=0)
    cluster_snapshot_min_s: float = Field(5.0, ge=0)
    # A worker's Prometheus /metrics (streams.processing.metrics); off when unset, since
    # workers on one host each need their own port. The API always serves /metrics.
    metrics_port: Port = None
    metrics_host: Annotated[str, AfterValidator(_host)] = "127.0.0.1"
    # The API's dashboard: a sample of segment and cluster sizes, lag and counters this
    # often (from the population facts, no walk; one API process takes each sample), this
    # many kept.
    dashboard_sample_s: float = Field(10.0, ge=0.1, le=86_400)
    dashboard_history: int = Field(2880, ge=2, le=1_000_000)
    # Recent output events each API process keeps for /events and the live feed.
    feed_size: int = Field(500, ge=1, le=100_000)
    # The API's bearer token: required to listen beyond loopback; once set, every data
    # endpoint asks for it. Given as the variable, or as a file (a container secret).
    api_token: Annotated[SecretStr, AfterValidator(_token)] | None = None
    api_token_file: Annotated[Path, AfterValidator(_token_file)] | None = None
    # The admin scope: erase (DELETE /customers/{id}) and the audit log need it, always,
    # loopback included; unset, the API erases nothing (`rtba erase` still does).
    api_admin_token: Annotated[SecretStr, AfterValidator(_token)] | None = None
    api_admin_token_file: Annotated[Path, AfterValidator(_token_file)] | None = None
    # Host names the API answers beyond loopback and its own address (DNS rebinding):
    # comma-separated; '*' (any) only with a token set.
    api_allowed_hosts: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_hosts)] | None = None
    # Requests served at once (503 with Retry-After past it) and live feed streams open.
    api_max_concurrent: int = Field(32, ge=1, le=10_000)
    api_max_streams: int = Field(20, ge=1, le=10_000)
    # Population walks (rankings, segment and cluster members) are cached this long, keyed
    # by the query (sizes read the population facts: no walk, no cache).
    api_walk_cache_s: float = Field(5.0, ge=0, le=3600)
    # Redis login (an ACL user, or the default user's password when no user is given) and
    # TLS, on with a rediss:// URL: the CA that signed the server's certificate, and a
    # client certificate and key where the server asks for one. (A password in REDIS_URL
    # works too; these keep it out of the URL, which is shown in messages.)
    redis_username: User | None = None
    redis_password: Secret | None = None
    redis_password_file: ReadableFile | None = None
    # The role users `rtba stack up` adds beside that login when their passwords are given
    # (rules: infra/redis/roles.toml): each process then logs in as its role through
    # RTBA_REDIS_USERNAME/PASSWORD, the worker as the worker, the API as the API.
    redis_worker_username: User = "rtba-worker"
    redis_worker_password: Secret | None = None
    redis_worker_password_file: ReadableFile | None = None
    redis_api_username: User = "rtba-api"
    redis_api_password: Secret | None = None
    redis_api_password_file: ReadableFile | None = None
    redis_tls_ca_file: ReadableFile | None = None
    redis_tls_cert_file: ReadableFile | None = None
    redis_tls_key_file: ReadableFile | None = None
    # Kafka security, handed to Faust (aiokafka) and kafka-python alike.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: User | None = None
    kafka_sasl_password: Secret | None = None
    kafka_sasl_password_file: ReadableFile | None = None
    kafka_ssl_ca_file: ReadableFile | None = None
    kafka_ssl_cert_file: ReadableFile | None = None
    kafka_ssl_key_file: ReadableFile | None = None
    # Customers this many days of event time without an event are erased by the leader's
    # tick, as `rtba erase` would (tombstones included); unset: kept for good.
    retention_days: Annotated[float, Field(gt=0, le=36_500)] | None = None
    # Keyed pseudonymisation of customer ids at ingestion (streams.privacy): set it before
    # the first event of a namespace; another key makes everyone a new customer.
    pseudonym_key: Annotated[SecretStr, AfterValidator(_token)] | None = None
    pseudonym_key_file: Annotated[Path, AfterValidator(_token_file)] | None = None

    @model_validator(mode="after")
    def _rearm_below_threshold(self) -> Settings:
        if self.churn_rearm_below >= self.churn_threshold:
            raise ValueError("RTBA_CHURN_REARM_BELOW must be below RTBA_CHURN_THRESHOLD")
        for name in SECRET_FIELDS:
            if getattr(self, name) is not None and getattr(self, f"{name}_file") is not None:
                variable = env_name(name)
                raise ValueError(f"set {variable} or {variable}_FILE, not both")
        read, admin = self.api_secret(), self.secret("api_admin_token")
        if "*" in (self.api_allowed_hosts or ()) and read is None:  # else any page reads it all
            raise ValueError("RTBA_API_ALLOWED_HOSTS='*' needs a token: set RTBA_API_TOKEN")
        if admin is not None and admin == read:
            raise ValueError("RTBA_API_ADMIN_TOKEN must differ from RTBA_API_TOKEN")
        tls_files = ("redis_tls_ca_file", "redis_tls_cert_file", "redis_tls_key_file")
        if urlsplit(self.redis_url).scheme != "rediss" and any(
            getattr(self, name) for name in tls_files
        ):
            raise ValueError("RTBA_REDIS_TLS_* files need TLS on: a rediss:// REDIS_URL")
        sasl = self.kafka_security_protocol.startswith("SASL")
        user, password = self.kafka_sasl_username, self.secret("kafka_sasl_password")
        if sasl and not (user and password):
            raise ValueError(
                f"RTBA_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "RTBA_KAFKA_SASL_USERNAME and RTBA_KAFKA_SASL_PASSWORD (or ..._FILE)"
            )
        if (user or password) and not sasl:
            raise ValueError(
                "a Kafka SASL login is set: set RTBA_KAFKA_SECURITY_PROTOCOL to "
                "SASL_PLAINTEXT or SASL_SSL"
            )
        if self.kafka_security_protocol in ("PLAINTEXT", "SASL_PLAINTEXT") and any(
            (self.kafka_ssl_ca_file, self.kafka_ssl_cert_file, self.kafka_ssl_key_file)
        ):
            raise ValueError(
                "RTBA_KAFKA_SSL_* files need RTBA_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL"
            )
        return self

    def __repr_args__(self):
        for name, value in super().__repr_args__():
            yield name, redacted(value) if name == "redis_url" else value

    def days(self) -> Days:
        """The calendar of RTBA_TIMEZONE (validated when the settings were read)."""
        return days_in(self.timezone)

    def retention_ms(self) -> int | None:
        return None if self.retention_days is None else round(self.retention_days * 86_400_000)

    def secret(self, name: str) -> str | None:
        """A secret setting's value, from its variable or its ``_FILE`` (None: unset)."""
        value = getattr(self, name)
        if value is not None:
            return value.get_secret_value().strip()
        path = getattr(self, f"{name}_file")
        return path.read_text().strip() if path is not None else None

    def api_secret(self) -> str | None:
        """The API's bearer token, from the variable or the file (None: no token)."""
        return self.secret("api_token")

    def redis_options(self) -> dict:
        """redis-py's connection options beyond the URL: the login and the TLS files."""
        options: dict = {}
        if self.redis_username is not None:
            options["username"] = self.redis_username
        password = self.secret("redis_password")
        if password is not None:
            options["password"] = password
        files = {
            "ssl_ca_certs": self.redis_tls_ca_file,
            "ssl_certfile": self.redis_tls_cert_file,
            "ssl_keyfile": self.redis_tls_key_file,
        }
        options.update({name: str(path) for name, path in files.items() if path is not None})
        return options

    def kafka_options(self) -> dict:
        """kafka-python's security options (Faust's are built from the same settings,
        streams.processing.app.broker_credentials)."""
        options: dict = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol.startswith("SASL"):
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            options["sasl_plain_password"] = self.secret("kafka_sasl_password")
        files = {
            "ssl_cafile": self.kafka_ssl_ca_file,
            "ssl_certfile": self.kafka_ssl_cert_file,
            "ssl_keyfile": self.kafka_ssl_key_file,
        }
        options.update({name: str(path) for name, path in files.items() if path is not None})
        return options

    def kafka_ssl_context(self):
        """An ``ssl.SSLContext`` for SSL and SASL_SSL (None otherwise): the system's CAs,
        or RTBA_KAFKA_SSL_CA_FILE, and the client certificate where one is given."""
        if not self.kafka_security_protocol.endswith("SSL"):
            return None
        import ssl

        context = ssl.create_default_context(
            cafile=str(self.kafka_ssl_ca_file) if self.kafka_ssl_ca_file else None
        )
        if self.kafka_ssl_cert_file is not None:
            context.load_cert_chain(
                str(self.kafka_ssl_cert_file),
                str(self.kafka_ssl_key_file) if self.kafka_ssl_key_file else None,
            )
        return context

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, **_others):
        return (init_settings, _Environment(settings_cls))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings of ``env`` (default: the process environment), with the local
        stack's addresses where ``KAFKA_BOOTSTRAP`` or ``REDIS_URL`` is not set."""
        token = _ENVIRON.set(env)
        try:
            settings = cls()
        except ValidationError as exc:
            raise ConfigError(_first_problem(exc, os.environ if env is None else env)) from None
        finally:
            _ENVIRON.reset(token)
        stack = read_stack_state(settings.home)
        given = settings.model_fields_set
        found = {k: stack[k] for k in ("kafka_bootstrap", "redis_url") if k in stack}
        # The local broker's own CA (SASL_SSL), for clients of that broker, unless one is given
        bootstrap = found.get("kafka_bootstrap", settings.kafka_bootstrap)
        if "kafka_bootstrap" in given:
            bootstrap = settings.kafka_bootstrap
        if (stack.get("kafka_ssl_ca_file") and bootstrap == stack.get("kafka_bootstrap")
                and settings.kafka_security_protocol.endswith("SSL")):  # fmt: skip
            found["kafka_ssl_ca_file"] = Path(stack["kafka_ssl_ca_file"])
        return settings.model_copy(update={k: v for k, v in found.items() if k not in given})

    def scorer(self) -> RFMScorer:
        return RFMScorer(self.recency_edges, self.frequency_edges, self.monetary_edges,
                         segment_map=self.segment_map)  # fmt: skip

    # Topic names (streams.processing.topics.TOPICS): each carries the namespace, so pipelines
    # sharing a broker never meet.
    def topic(self, key: str) -> str:
        from streams.processing.topics import TOPICS

        return f"{self.namespace}.{TOPICS[key].suffix}"

    @property
    def events_topic(self) -> str:
        return self.topic("events")

    @property
    def dlq_topic(self) -> str:
        return self.topic("dlq")

    @property
    def segment_changes_topic(self) -> str:
        return self.topic("segment_changes")

    @property
    def churn_risk_topic(self) -> str:
        return self.topic("churn_risk")

    @property
    def audience_changes_topic(self) -> str:
        return self.topic("audience_changes")

    @property
    def features_topic(self) -> str:
        return self.topic("features")

    @property
    def output_topics(self) -> list[str]:
        from streams.processing.topics import OUTPUTS

        return [self.topic(key) for key in OUTPUTS]

    @property
    def all_topics(self) -> list[str]:
        from streams.processing.topics import TOPICS

        return [self.topic(key) for key in TOPICS]

    @property
    def app_id(self) -> str:
        return f"rtba-{self.namespace}"


def env_name(field: str) -> str:
    """The environment variable of a settings field."""
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else PREFIX + field.upper()


# pydantic's wording for the common cases, in the form a person types at a shell.
_EXPECTED = {
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_parsing": "expected a number",
    "bool_parsing": "expected 1 or 0 (or true/false, yes/no)",
    "greater_than_equal": "expected a number ≥ {ge}",
    "greater_than": "expected a number > {gt}",
    "less_than_equal": "expected a number ≤ {le}",
    "less_than": "expected a number < {lt}",
    "literal_error": "expected {expected}",
}


# Settings that come as a variable or as a file (NAME_FILE), and are never written out.
SECRET_FIELDS = (
    "api_token", "api_admin_token", "redis_password", "kafka_sasl_password", "pseudonym_key",
    "redis_worker_password", "redis_api_password",
)  # fmt: skip
SECRETS = {PREFIX + name.upper() for name in SECRET_FIELDS}


def _first_problem(exc: ValidationError, env: Mapping[str, str]) -> str:
    """One line for the first bad value: the variable, what was given, what fits."""
    error = exc.errors()[0]
    if not error["loc"]:  # a check across fields (its message names them)
        return str(error["msg"]).removeprefix("Value error, ")
    loc = str(error["loc"][0])
    field = next((f for f in Settings.model_fields if loc in (f, env_name(f))), None)
    name = env_name(field) if field else loc
    given = env.get(name, error["input"])  # the whole value, not one list item of it
    if name in SECRETS:
        given = "***"  # a secret is never written out, not even a wrong one
    elif name == "REDIS_URL" and isinstance(given, str):
        given = redacted(given)
    template = _EXPECTED.get(error["type"])
    expected = (
        template.format(**error.get("ctx", {})).replace("'", "")
        if template
        else str(error["msg"]).removeprefix("Value error, ")
    )
    return f"{name}={given!r}: {expected}"

"""What every command shares: the settings, the stack checks, JSON output, time options."""

from __future__ import annotations

import json
import socket
import sys
from datetime import UTC, datetime

import click

from streams.errors import ConfigError, StackDown
from streams.settings import Settings, redacted

# Seconds a check waits for Kafka or Redis to answer: "the stack is down" within ~2 s.
PROBE_S = 1.0

json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="JSON on stdout (one object per line where there are several)",
)


def settings() -> Settings:
    """The settings of this process's environment; a bad value is a ConfigError."""
    return Settings.from_env()


def log(message: str) -> None:
    click.echo(message, err=True)


def print_json(obj) -> None:
    click.echo(json.dumps(obj, separators=(",", ":")))


HANDSHAKE_MS = 5000  # a broker on loopback or a LAN answers its first requests in ms


def _kafka_answers(bootstrap: str) -> bool:
    for server in bootstrap.split(","):
        host, _, port = server.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_S).close()
            return True
        except OSError:
            continue
    return False


def require_kafka(settings: Settings) -> None:
    if not _kafka_answers(settings.kafka_bootstrap):
        raise StackDown(
            f"Kafka is not answering at {settings.kafka_bootstrap}: start the local "
            "stack with `rtba stack up`, or set KAFKA_BOOTSTRAP"
        )
    _kafka_lets_in(settings)


def _kafka_lets_in(settings: Settings) -> None:
    """A broker that takes the connection and then drops it is, nearly always, one that
    wants another security protocol or login: kafka-python 3 only says it timed out."""
    import kafka.errors
    from kafka import KafkaAdminClient

    try:
        KafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap.split(","),
            request_timeout_ms=HANDSHAKE_MS,
            bootstrap_timeout_ms=HANDSHAKE_MS,
            **settings.kafka_options(),
        ).close()
    except kafka.errors.KafkaError as exc:
        protocol = settings.kafka_security_protocol
        login = f" as {settings.kafka_sasl_username!r}" if protocol.startswith("SASL") else ""
        raise ConfigError(
            f"Kafka at {settings.kafka_bootstrap} took the connection but not rtba's "
            f"{protocol} handshake{login} ({exc}): check RTBA_KAFKA_SECURITY_PROTOCOL and "
            "the RTBA_KAFKA_SASL_* / RTBA_KAFKA_SSL_* settings (docs/security.md)"
        ) from None


def require_redis(settings: Settings) -> None:
    import redis
    from redis.connection import parse_url

    shown = redacted(settings.redis_url)
    client = redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=PROBE_S,
        socket_timeout=PROBE_S,
        **settings.redis_options(),
    )
    try:
        client.ping()
    except redis.exceptions.AuthenticationError:
        options = settings.redis_options()
        # a password in the URL counts in either form redis-py reads (user:pw@, ?password=)
        if "password" not in options and not parse_url(settings.redis_url).get("password"):
            problem = "asks for a login"
        else:
            problem = f"refused the login of user {options.get('username', 'default')!r}"
        raise ConfigError(
            f"Redis at {shown} {problem}: set RTBA_REDIS_USERNAME and RTBA_REDIS_PASSWORD "
            f"(or RTBA_REDIS_PASSWORD_FILE) to an ACL user allowed the keys "
            f"{settings.namespace}:*"
        ) from None
    except redis.exceptions.NoPermissionError as exc:
        raise ConfigError(
            f"Redis at {shown} let the user in but not the command ({exc}): give the ACL "
            f"user its role's commands on the keys {settings.namespace}:* "
            "(infra/redis/roles.toml, docs/security.md)"
        ) from None
    except redis.exceptions.RedisError as exc:
        if "SSL" in str(exc) or "certificate" in str(exc):
            raise ConfigError(
                f"TLS to Redis at {shown} failed ({exc}): check RTBA_REDIS_TLS_CA_FILE"
            ) from None
        raise StackDown(
            f"Redis is not answering at {shown}: start the local "
            "stack with `rtba stack up`, or set REDIS_URL"
        ) from None
    finally:
        client.close()


def require_stack(settings: Settings, kafka: bool = True, redis: bool = True) -> None:
    if redis:
        require_redis(settings)
    if kafka:
        require_kafka(settings)


class IsoTime(click.ParamType):
    """An ISO-8601 time (UTC when it has no offset), given to the command as epoch ms."""

    name = "ISO-TIME"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        from streams.processing.schemas import to_epoch_ms

        try:
            return to_epoch_ms(value)
        except (TypeError, ValueError):
            self.fail(
                f"{value!r} is not an ISO time; expected e.g. 2026-12-03 or 2026-12-03T18:00:00Z",
                param,
                ctx,
            )


ISO_TIME = IsoTime()


def when(ts_ms: int | None) -> str:
    """A time for a person: UTC to the second, or '-'."""
    if ts_ms is None:
        return "-"
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def require_free_port(host: str, port: int, what: str, hint: str) -> None:
    """One line, not a server's bind error, when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"{what}: cannot listen on {host}:{port} ({exc.strerror}); {hint}"
            ) from None

"""What every command shares: the settings, the stack checks, JSON output, time options."""

from __future__ import annotations

import json
import socket
import sys
from datetime import UTC, datetime

import click

from streams.errors import ConfigError, StackDown
from streams.settings import Settings

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


def require_redis(settings: Settings) -> None:
    import redis

    client = redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=PROBE_S, socket_timeout=PROBE_S
    )
    try:
        client.ping()
    except redis.exceptions.AuthenticationError as exc:
        raise ConfigError(
            f"Redis at {settings.redis_url} refused the login ({exc}): "
            "check the user and password in REDIS_URL"
        ) from None
    except redis.exceptions.RedisError:
        raise StackDown(
            f"Redis is not answering at {settings.redis_url}: start the local "
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

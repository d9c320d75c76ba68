"""`rtba stack`: the local Kafka (KRaft) and Redis on loopback, for trying rtba out."""

from __future__ import annotations

import click

from streams.cli.common import json_option, print_json, settings
from streams.errors import ConfigError, StackDown
from streams.settings import redacted


def _show(result: dict, as_json: bool) -> None:
    if "redis_url" in result:  # a password in REDIS_URL is never written out
        result = {**result, "redis_url": redacted(result["redis_url"])}
    if as_json:
        print_json(result)
    else:
        for key, value in result.items():
            click.echo(f"{key:16} {value}")


def _stack_errors(action):
    """The launcher's own errors (a port taken, a jar missing) as one line, exit 3."""
    from launcher import stack

    try:
        return action()
    except stack.StackError as exc:
        raise StackDown(str(exc)) from None


@click.group("stack")
def stack_group() -> None:
    """Local Kafka and Redis on loopback.

    Real Kafka 4 (KRaft) and redis-server on free loopback ports, state under RTBA_HOME.

    \b
    Examples:
      rtba stack install      # fetch the Kafka jars, apt-get redis-server (once)
      rtba stack up           # start both (free ports), create the topics
      rtba stack status       # addresses and whether each answers
      rtba stack down
    """


@stack_group.command("install")
@json_option
def stack_install(as_json: bool) -> None:
    """Fetch the Kafka jars from Maven Central and install redis-server with apt-get.

    \b
    Examples:
      rtba stack install
    """
    from launcher import stack

    def install() -> dict:
        stack.install()
        return {"kafka_jars": str(stack.kafka_jars()), "redis_server": stack.ensure_redis_server()}

    _show(_stack_errors(install), as_json)


@stack_group.command("up")
@click.option(
    "--redis-cluster",
    is_flag=True,
    help="a three-master Redis Cluster instead of one redis-server (also RTBA_REDIS_CLUSTER=1)",
)
@json_option
def stack_up(redis_cluster: bool, as_json: bool) -> None:
    """Start Kafka and Redis (or reuse the ones running) and create the topics.

    \b
    Examples:
      rtba stack up
      rtba stack up --redis-cluster --json
    """
    from launcher import stack

    chosen = settings()
    if redis_cluster:
        chosen = chosen.model_copy(update={"redis_cluster": True})
    try:
        _show(_stack_errors(lambda: stack.up(chosen)), as_json)
    except OSError as exc:
        raise ConfigError(f"cannot use RTBA_HOME={chosen.home}: {exc.strerror}") from None


@stack_group.command("down")
@json_option
def stack_down(as_json: bool) -> None:
    """Stop what `rtba stack up` started (the data stays under RTBA_HOME).

    \b
    Examples:
      rtba stack down
    """
    from launcher import stack

    _show(_stack_errors(lambda: stack.down(settings())), as_json)


@stack_group.command("status")
@json_option
def stack_status(as_json: bool) -> None:
    """The stack's addresses, and whether Kafka and Redis answer.

    \b
    Examples:
      rtba stack status --json   # {"kafka_bootstrap": ..., "redis_url": ..., ...}
    """
    from launcher import stack

    _show(_stack_errors(lambda: stack.status(settings())), as_json)


COMMANDS = [stack_group]

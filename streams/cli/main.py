"""The `rtba` command line, on Click.

An ordinary mistake (the stack down, a bad setting or argument, a missing file) ends in
one line on stderr that says what to do, and an exit code (streams/errors.py); a
traceback means a bug. With --json, stdout carries JSON only; logs and progress go to
stderr.
"""

from __future__ import annotations

import sys
from importlib.metadata import version

import click

from streams.cli import (
    audience_commands,
    privacy_commands,
    read_commands,
    run_commands,
    stack_commands,
    topic_commands,
    verify_commands,
)
from streams.errors import RtbaError, StackDown

EPILOG = """\b
Exit codes: 0 done; 1 something asked for was not found; 2 a bad argument or setting;
3 Kafka or Redis not answering; 4 no data or model yet; 130 interrupted.
Settings: environment variables, each with its default in the README ("Configuration").
"""


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EPILOG,
)
@click.version_option(version("rtba"), "-V", "--version", prog_name="rtba")
def cli() -> None:
    """rtba: live RFM segments, behaviour clusters and churn alerts from Kafka events.

    \b
    A first session:
      rtba stack up                # Kafka and Redis on loopback
      rtba worker &                # any number of workers
      rtba produce synthetic --customers 1000 --events 100000 --rate 500
      rtba tail                    # segment changes and churn alerts as they happen
      rtba profile c000001         # one customer
      rtba segments                # sizes and profiles
    """


for module in (stack_commands, run_commands, read_commands, topic_commands, privacy_commands,
               audience_commands, verify_commands):  # fmt: skip
    for command in module.COMMANDS:
        cli.add_command(command)


def _connection_problem(exc: BaseException) -> str | None:
    """The one line for a connection lost mid-command (after the start-up checks)."""
    import kafka.errors
    import redis.exceptions

    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return f"lost the connection to Redis ({exc}); is the stack up? (`rtba stack status`)"
    # (kafka-python 3 has no NoBrokersAvailable: a broker that cannot be reached times out)
    if isinstance(exc, kafka.errors.KafkaConnectionError | kafka.errors.KafkaTimeoutError):
        return f"lost the connection to Kafka ({exc}); is the stack up? (`rtba stack status`)"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    where = f"rtba {argv[0]}" if argv and argv[0] in cli.commands else "rtba"
    try:
        result = cli.main(args=argv, prog_name="rtba", standalone_mode=False)
    except click.UsageError as exc:  # one line, not Click's usage block
        command = exc.ctx.command_path if exc.ctx else "rtba"
        click.echo(f"{command}: {exc.format_message()} (see `{command} -h`)", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"{where}: {exc.format_message()}", err=True)
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):  # Ctrl-C, or the demo's group-wide stop
        click.echo(f"{where}: interrupted", err=True)
        return 130
    except RtbaError as exc:
        click.echo(f"{where}: {exc}", err=True)
        return exc.exit_code
    except Exception as exc:
        problem = _connection_problem(exc)
        if problem is None:
            raise
        click.echo(f"{where}: {problem}", err=True)
        return StackDown.exit_code
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())

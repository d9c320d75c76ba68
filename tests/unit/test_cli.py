"""The command line with the stack down: help for every command, and every ordinary
mistake answered with one line, a documented exit code and no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import click
import pytest

from streams.cli import cli, main
from streams.errors import ConfigError, NotReady, StackDown


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nobody listens once it is closed


@pytest.fixture
def stack_down(monkeypatch, tmp_path):
    monkeypatch.setenv("KAFKA_BOOTSTRAP", f"127.0.0.1:{closed_port()}")
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{closed_port()}/0")
    monkeypatch.setenv("RTBA_HOME", str(tmp_path / "home"))
    for name in ("RTBA_NAMESPACE", "RTBA_PARTITIONS"):
        monkeypatch.delenv(name, raising=False)


def every_command(group: click.Group = cli, path: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from every_command(command, (*path, name))


COMMANDS = list(every_command())


def test_the_command_list_is_the_one_documented():
    top = {path[0] for path in COMMANDS}
    assert top == {
        "stack",
        "worker",
        "produce",
        "replay",
        "profile",
        "segments",
        "members",
        "churn",
        "stats",
        "tail",
        "dlq",
        "reset",
        "demo",
        "bench",
        "api",
        "erase",
        "audience",
        "verify",
    }


@pytest.mark.parametrize("path", [p for p in COMMANDS if p != ("bench",)], ids=" ".join)
def test_every_command_has_help_with_an_example(path, capsys):
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: rtba {' '.join(path)}")
    assert "Examples:" in out and f"rtba {path[0]}" in out.split("Examples:")[1]


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("rtba, version ")


MISTAKES = [
    # (argv, extra environment, exit code, words the one line must hold)
    (["stats"], {}, StackDown.exit_code, ["Redis is not answering", "rtba stack up"]),
    (["profile", "c000001"], {}, StackDown.exit_code, ["Redis is not answering", "rtba stack up"]),
    (["profile", "--all"], {}, StackDown.exit_code, ["Redis is not answering"]),
    (["segments"], {}, StackDown.exit_code, ["Redis is not answering"]),
    (["members", "--segment", "At Risk"], {}, StackDown.exit_code, ["Redis is not answering"]),
    (["churn", "fit"], {}, StackDown.exit_code, ["Redis is not answering"]),
    (["worker"], {}, StackDown.exit_code, ["not answering", "rtba stack up"]),
    (
        ["produce", "synthetic", "--customers", "5", "--events", "10"],
        {},
        StackDown.exit_code,
        ["Kafka is not answering", "KAFKA_BOOTSTRAP"],
    ),
    (["tail"], {}, StackDown.exit_code, ["Kafka is not answering"]),
    (["dlq"], {}, StackDown.exit_code, ["Kafka is not answering"]),
    (["reset", "--yes"], {}, StackDown.exit_code, ["not answering"]),
    (["erase", "c000001", "--yes"], {}, StackDown.exit_code, ["not answering"]),
    (["erase"], {}, 2, ["Missing argument"]),
    (["verify"], {}, StackDown.exit_code, ["Redis is not answering", "rtba stack up"]),
    (["audience", "list"], {}, StackDown.exit_code, ["Redis is not answering"]),
    (
        ["audience", "apply", "/nonexistent/aud.json", "--check"],
        {},
        ConfigError.exit_code,
        ["cannot read /nonexistent/aud.json"],
    ),
    (["audience", "apply", "README.md", "--check"], {}, ConfigError.exit_code, ["not JSON"]),
    (["api"], {}, StackDown.exit_code, ["Redis is not answering"]),
    (["api", "--host", "0.0.0.0"], {}, ConfigError.exit_code, ["loopback", "RTBA_API_TOKEN"]),
    (["api"], {"RTBA_API_TOKEN": "too-short"}, ConfigError.exit_code, ["RTBA_API_TOKEN", "16"]),
    (
        ["stats"],
        {"RTBA_PARTITIONS": "abc"},
        ConfigError.exit_code,
        ["RTBA_PARTITIONS='abc'", "whole number"],
    ),
    (
        ["stats"],
        {"REDIS_URL": "nonsense"},
        ConfigError.exit_code,
        ["REDIS_URL='nonsense'", "redis://"],
    ),
    (
        ["worker"],
        {"RTBA_CHURN_MODEL": "foo"},
        ConfigError.exit_code,
        ["RTBA_CHURN_MODEL='foo'", "mbgnbd or bgnbd"],
    ),
    (["profile", "c1", "--as-of", "yesterday"], {}, 2, ["--as-of", "'yesterday'", "ISO time"]),
    (["produce", "synthetic", "--customers", "0", "--events", "5"], {}, 2, ["--customers", "0"]),
    (["produce", "mystery", "--customers", "1", "--events", "5"], {}, 2, ["synthetic"]),
    (["profile"], {}, 2, ["customer ids", "--all"]),
    (["members"], {}, 2, ["--segment", "--cluster"]),
    (["members", "--segment", "Whales"], {}, 2, ["'Whales'", "Champions"]),
    (
        ["replay", "nope.csv", "--customer-col", "c", "--time-col", "t", "--amount-col", "a"],
        {},
        2,
        ["nope.csv", "does not exist"],
    ),
    (["tail", "--kind", "everything"], {}, 2, ["--kind", "rfm"]),
    (["no-such-command"], {}, 2, ["No such command"]),
]


@pytest.mark.parametrize(("argv", "env", "code", "words"), MISTAKES, ids=lambda v: str(v)[:40])
def test_an_ordinary_mistake_is_one_line_and_an_exit_code(
    stack_down, monkeypatch, capsys, argv, env, code, words
):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(argv) == code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("rtba"), lines[0]
    assert all(word in lines[0] for word in words), lines[0]
    assert captured.out == ""


@pytest.mark.parametrize("argv", [["api", "--port", "{port}"], ["worker"]])
def test_a_port_taken_is_one_line(stack_down, monkeypatch, capsys, argv):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("RTBA_METRICS_PORT", str(port))
        assert main([a.format(port=port) for a in argv]) == ConfigError.exit_code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"127.0.0.1:{port}" in err and "in use" in err, err


def test_a_replay_file_that_is_not_a_table_is_one_line(stack_down, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    code = main(["replay", str(bad), "--customer-col", "c", "--time-col", "t", "--amount-col", "a"])
    err = capsys.readouterr().err.strip()
    assert code == ConfigError.exit_code and len(err.splitlines()) == 1 and "bad.csv" in err, err


def test_exit_codes_are_the_documented_ones():
    from streams.cli.main import EPILOG

    for error in (ConfigError, StackDown, NotReady):
        assert f"{error.exit_code} " in EPILOG


@pytest.mark.parametrize("argv", [["worker"], ["stats"], ["profile", "c1"], ["tail"]], ids=" ".join)
def test_as_a_real_process_the_stack_down_is_answered_within_two_seconds(stack_down, argv):
    """A user's shell, not an in-process call: the interpreter's start-up counts."""
    import os

    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ),
    )
    took = time.monotonic() - started
    assert done.returncode == StackDown.exit_code, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert took < 2.0, f"{argv}: {took:.1f}s"


def test_every_option_says_what_it_does():
    def commands(group: click.Group):
        for command in group.commands.values():
            yield from commands(command) if isinstance(command, click.Group) else [command]

    silent = [(c.name, p.opts) for c in commands(cli) for p in c.params
              if isinstance(p, click.Option) and not p.help]  # fmt: skip
    assert silent == []

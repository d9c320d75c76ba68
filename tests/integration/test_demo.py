"""`rtba demo` as a person runs it: in a terminal, on a stack of its own, stopped with
SIGTERM. The screen shows the live summary; the demo ends with a closing summary, exit
code 0, and leaves no process behind (worker, producer, Kafka, Redis)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from launcher import stack
from streams.settings import Settings
from tests.conftest import REPO

pytestmark = pytest.mark.integration


def _own_terminal() -> None:
    """In the child: a session of its own with the pty as its controlling terminal, as a
    shell in a terminal window has, so that closing the window sends it SIGHUP."""
    import fcntl
    import termios

    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def children(pid: int) -> set[int]:
    """Every live descendant of ``pid``, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def read_until(fd: int, pattern: str, timeout_s: float, seen: list[str],
               whole: bool = False) -> re.Match | None:  # fmt: skip
    """Read the terminal until ``pattern`` is in a complete screen (one the demo has drawn
    over since: a read can end mid-screen), or anywhere in the output when ``whole``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                seen.append(os.read(fd, 65536).decode(errors="replace"))
            except OSError:  # the terminal closed: the demo is gone
                break
        text = "".join(seen)
        for screen in [text] if whole else text.split("\x1b[H\x1b[J")[1:-1]:
            if match := re.search(pattern, screen):
                return match
    return None


def wait_for_http(url: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return json.loads(urllib.request.urlopen(url, timeout=2).read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.mark.parametrize("stop", ["sigterm", "terminal closed"])
def test_the_demo_in_a_terminal_stops_cleanly(tmp_path, stop):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP", "REDIS_URL")}
    env.update(RTBA_HOME=str(home), RTBA_REDIS_CLUSTER="0", COLUMNS="120")
    master, slave = pty.openpty()
    demo = subprocess.Popen([sys.executable, "-m", "streams.cli", "demo", "--customers", "80",
                             "--rate", "400"], cwd=REPO, env=env, stdin=slave, stdout=slave,
                            stderr=slave, preexec_fn=_own_terminal)  # fmt: skip
    os.close(slave)
    seen: list[str] = []
    spawned: set[int] = set()
    started: dict = {}
    closing = None
    try:
        # The live summary, with events counted and segments filled in.
        screen = read_until(master, r"events [1-9][\d,]* [^\n]*\n\s*\nRFM segment[^\n]*\n  \w"
                            r"(?s:.*)segment changes [1-9]", 180, seen)  # fmt: skip
        assert screen, "".join(seen)[-3000:]
        assert "Traceback" not in "".join(seen)
        assert "gift-browsers" in "".join(seen)  # the example holiday audiences are in force
        started = json.loads((home / "stack.json").read_text())
        spawned = children(demo.pid)
        assert len(spawned) >= 3  # the worker, the API and the producer at least
        # The dashboard the header points to answers, with the demo's namespace.
        url = re.search(r"dashboard (http://127\.0\.0\.1:\d+/)", "".join(seen)).group(1)
        health = wait_for_http(url + "health", 30)
        assert health["namespace"].startswith("demo-")
        assert "rtba dashboard" in urllib.request.urlopen(url, timeout=5).read().decode()
        if stop == "terminal closed":  # the window shut: a hangup, and nobody to read
            os.close(master)
            master = None
        else:
            demo.send_signal(signal.SIGTERM)
            pattern = r"rtba demo: (\d+) s, ([\d,]+) events, ([\d,]+) segment changes"
            closing = read_until(master, pattern, 90, seen, whole=True)
        code = demo.wait(timeout=90)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
        time.sleep(1)
        # What the demo left running, seen before this test cleans up after a failure.
        left = [pid for pid in [*spawned, started.get("kafka_pid"), started.get("redis_pid")]
                if pid and stack.alive(pid)]  # fmt: skip
        if (home / "stack.json").exists():
            stack.down(Settings.from_env({"RTBA_HOME": str(home)}))
        if master is not None:
            os.close(master)
    assert code == 0, "".join(seen)[-3000:]
    if stop == "sigterm":
        assert closing, "".join(seen)[-3000:]
        assert int(closing.group(2).replace(",", "")) > 0
    assert "Traceback" not in "".join(seen)
    assert started.get("kafka_pid") and started.get("redis_pid")  # it started the stack
    assert not left, f"left running: {left}"

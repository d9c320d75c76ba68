"""`rtba stack`: the real local Kafka and Redis, their status, and clear errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from launcher import stack
from streams.processing.topics import admin_client
from streams.settings import Settings
from streams.state.store import connect
from tests.conftest import run_rtba

pytestmark = pytest.mark.integration


def test_status_json_names_a_live_stack(rtba_env):
    out = json.loads(run_rtba(rtba_env, "stack", "status", "--json").stdout)
    assert out["kafka"] == "up" and out["redis"] == "up"
    assert out["kafka_bootstrap"] == rtba_env["KAFKA_BOOTSTRAP"]
    assert out["redis_url"] == rtba_env["REDIS_URL"]


def test_up_against_a_given_stack_starts_nothing_and_creates_the_topics(rtba_env, settings):
    out = json.loads(run_rtba(rtba_env, "stack", "up", "--json").stdout)
    assert out["managed"] is False
    admin = admin_client(settings.kafka_bootstrap)
    try:
        topics = set(admin.list_topics())
    finally:
        admin.close()
    assert set(settings.all_topics) <= topics


@pytest.mark.parametrize("cluster", [False, True], ids=["redis-server", "redis-cluster"])
def test_up_down_up_keeps_redis_data(tmp_path, real_stack, cluster):
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP", "REDIS_URL")}
    env["RTBA_HOME"] = str(tmp_path / "own-stack")
    env["RTBA_REDIS_CLUSTER"] = "0"
    up = ["stack", "up", "--json", *(["--redis-cluster"] if cluster else [])]
    first = json.loads(run_rtba(env, *up).stdout)
    try:
        assert first["managed"] and first["kafka"] == "up" and first["redis"] == "up"
        assert first["kafka_bootstrap"] != real_stack["kafka_bootstrap"]  # its own free ports
        assert first["redis_cluster"] is cluster
        redis_pids = first["redis_cluster_pids"] if cluster else [first["redis_pid"]]
        assert len(redis_pids) == (3 if cluster else 1)
        client = connect(first["redis_url"])
        if cluster:  # three masters share every slot
            masters = [n for n in client.get_nodes() if n.server_type == "primary"]
            assert len(masters) == 3
            info = client.cluster_info(target_nodes=masters[0])
            assert info["cluster_state"] == "ok" and int(info["cluster_slots_ok"]) == 16384
        keys = [f"survives:{i}" for i in range(30)]  # over every master of a cluster
        for key in keys:
            client.set(key, "yes")
        client.close()
        down = json.loads(run_rtba(env, "stack", "down", "--json").stdout)
        assert down["kafka"] == "down" and down["redis"] == "down"
        assert not any(stack.alive(pid) for pid in [first["kafka_pid"], *redis_pids])
        again = json.loads(run_rtba(env, *up).stdout)
        client = connect(again["redis_url"])
        assert [client.get(key) for key in keys] == [b"yes"] * 30  # append-only files
        client.close()
    finally:
        run_rtba(env, "stack", "down", check=False)


def test_a_taken_port_is_a_clear_error(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        monkeypatch.setenv("RTBA_REDIS_PORT", str(s.getsockname()[1]))
        with pytest.raises(stack.StackError, match="already in use"):
            stack._choose_port(Settings.from_env(), "redis_port", None)


def test_missing_java_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(stack.shutil, "which", lambda name: None)
    with pytest.raises(stack.StackError, match="Java"):
        stack.ensure_java()


def test_ctrl_c_stops_a_producer_with_one_line(rtba_env):
    """`make demo` stopped with Ctrl-C interrupts its producer too: no traceback."""
    # A shell's background job (CI's, say) starts with SIGINT ignored, and a child
    # inherits that; a handler (not SIG_IGN) is reset to the default across exec, as a
    # terminal's child has it.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "produce", "synthetic", "--customers", "50",
             "--events", "100000", "--rate", "50"],
            env=rtba_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, inherited)
    time.sleep(4)  # producing by now
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "rtba produce: interrupted"

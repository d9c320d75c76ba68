"""The pipeline benchmark's smoke run (the full sizes are `make bench`): every scenario
runs on the real stack and reports figures that hold together, so the harness cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration


def run_benchmark(real_stack, out, module: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m benchmarks.<module> ARGS --json OUT`` on the session's stack."""
    env = {**os.environ, "KAFKA_BOOTSTRAP": real_stack["kafka_bootstrap"],
           "REDIS_URL": real_stack["redis_url"]}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args, "--json", str(out)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_the_pipeline_benchmark_runs_every_scenario(real_stack, tmp_path):
    out = tmp_path / "bench.json"
    done = run_benchmark(real_stack, out, "pipeline", "--events", "3000", "--customers", "300",
                         "--runs", "1", "--latency-s", "3", "--only", "abcdDefF",
                         "--population", "2000", "--logs", str(tmp_path / "logs"))  # fmt: skip
    figures = json.loads(out.read_text())["figures"]
    assert set(figures) == {"a", "b", "c", "d", "D", "D_customers", "e", "f", "F", "g", "l",
                            "r", "d_cpu", "e_cpu", "l_cpu", "F_customers"}  # fmt: skip
    # the workers' CPU per event, e's against d and against one worker run alike (l)
    assert figures["d_cpu"][0] > 0 and figures["e_cpu"][0] > 0 and figures["l_cpu"][0] > 0
    assert figures["F_customers"][0] > 2000  # F ran on the preloaded population
    assert (tmp_path / "logs" / "latency.log").stat().st_size > 0  # kept for a stall hunt
    assert figures["D_customers"][0] > 2000  # the population and the events' customers
    assert figures["r"][0] > 0  # Redis did work for d
    # a to e each took all 3,000 records; nothing is faster than raw consumption
    assert all(rate > 0 for key in "abcdDe" for rate in figures[key])
    assert all(figures["a"][0] > figures[key][0] for key in "bcdDe")
    assert 100 < figures["g"][0] < 100_000  # bytes per customer: a state, not nothing
    for latency in (figures["f"][0], figures["F"][0]):  # a year in 3 s, and live time
        assert latency["rate"] == pytest.approx(figures["d"][0] / 2)
        assert latency["answered"] == latency["sent"] > 0  # every new customer got its change
        assert 0 < latency["p50_ms"] <= latency["p99_ms"]
        slowest = [s["wait_ms"] for s in latency["slowest"]]
        assert slowest == sorted(slowest) and slowest[-1] >= round(latency["p99_ms"], 1)
        assert all(0 <= s["sent_after_s"] < 30 for s in latency["slowest"])  # after the start
    assert "d / b =" in done.stdout and "f p99 / goal =" in done.stdout
    assert "F p99 / goal =" in done.stdout
    assert "e / d =" in done.stdout and "d / c =" in done.stdout and "D / d =" in done.stdout
    assert "CPU per event e / d =" in done.stdout


def test_the_population_benchmark_times_every_population_job_and_read(real_stack, tmp_path):
    """Every population job and API read at a small size, one run each: every due customer
    is re-scored, 1,000 a tick; the refits, refreshes and the sweep pass ran (a job that
    failed would raise), each with its CPU and the loop's worst stall; the namespace is
    gone afterwards."""
    from streams.state.store import connect

    out = tmp_path / "population.json"
    done = run_benchmark(real_stack, out, "population", "--customers", "4000", "--due", "2500",
                         "--repeat", "1", "--calls", "1")  # fmt: skip
    figures = json.loads(out.read_text())
    tick = figures["tick"]
    assert len(tick["tick_ms"]) == 3  # 1,000 + 1,000 + 500: each tick took its share
    assert all(ms > 0 for ms in tick["tick_ms"])
    # the loop was watched while the ticks ran, and no stall outlasts the ticks themselves
    assert 0 < tick["worst_stall_ms"] <= sum(tick["tick_ms"])
    assert 100 < figures["bytes_per_customer"] < 100_000
    assert figures["load"]["per_s"] > 0
    jobs = figures["jobs"]
    timed = [*jobs["refit"].values(), *jobs["refresh"].values(), [figures["sweep"]]]
    for runs in timed:
        assert len(runs) == 1 and runs[0]["s"] > 0 and runs[0]["cpu_s"] > 0
        assert runs[0]["worst_stall_ms"] >= 0
    assert not jobs["refit"]["unchanged"][0]["moved"]  # the same data: the same parameters
    # every job in the one kept child, spawned for the first: later jobs pay no start
    assert figures["children"] == 1 and jobs["refit"]["first"][0]["spawned"]
    assert not any(run["spawned"] for runs in timed[1:-1] for run in runs)
    # over another model: published, and the customers woken by day cell, none read
    assert jobs["refit"]["moved"][0]["published"]
    assert jobs["refit"]["moved"][0]["result"]["rescheduled_by"] == "cells"
    # a day on with a day's new buyers moves the cut dates; the customers they move are
    # found from the indexes (the moved bands), a few, not everyone
    assert jobs["refresh"]["moved"][0]["published"]
    assert jobs["refresh"]["moved"][0]["result"]["woken_by"] == "bands"
    assert jobs["refresh"]["moved"][0]["result"]["read"] < 4000 // 4
    assert figures["sweep"]["complete"] and figures["sweep"]["slice_ms"]
    reads = figures["requests"]
    assert set(reads) == {
        "segments",
        "dashboard_sample",
        "segment_members",
        "segment_members_deep",
        "cluster_members",
        "customers_monetary",
        "customers_churn_risk",
        "customers_churn_risk_deep",
        "customers_churn_risk_cursor",
        "customers_clv",
        "audience_members",
    }
    assert all(len(r["ms"]) == 1 and r["ms"][0] > 0 for r in reads.values())
    assert "h  tick, 1,000 due" in done.stdout and "cluster sweep, one pass" in done.stdout
    client = connect(real_stack["redis_url"])
    assert not list(client.scan_iter(match=f"{figures['namespace']}:*", count=1000))
    client.close()


def test_the_audience_benchmark_compares_with_its_baseline(tmp_path):
    from benchmarks import audiences

    figures = audiences.main(["--customers", "60", "--events", "3000", "--days", "30",
                              "--json", str(tmp_path / "audiences.json")])  # fmt: skip
    assert figures["baseline"]["audience_changes"] == 0 < figures["audiences"]["audience_changes"]
    assert 0 < figures["ratio"] and figures["audiences"]["largest_log"] <= 2 + 2 + 1
    assert figures["audiences"]["mean_state_bytes"] > figures["baseline"]["mean_state_bytes"]

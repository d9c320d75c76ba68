"""benchmarks/pipeline.py's own arithmetic, without a stack: the workers' CPU as the kernel
accounts it, the goal line of CPU per event, and F on one preloaded population."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap

import pytest

from benchmarks import pipeline

# A child that burns ~0.3 s of CPU, starts a grandchild that burns ~0.3 s, says "burnt"
# once both are done, and exits (after its grandchild) when its stdin closes.
BURN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
FAMILY = BURN + textwrap.dedent(
    f"""
    import subprocess, sys
    grandchild = subprocess.Popen([sys.executable, "-c", {BURN!r} + "print('burnt', flush=True)"
                                   + "\\nsys_in = __import__('sys').stdin.read()"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    grandchild.stdout.readline()
    print("burnt", flush=True)
    sys.stdin.read()
    grandchild.stdin.close()
    grandchild.wait()
    """
)


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_tree_cpu_counts_a_worker_and_its_children_as_the_kernel_bills_them():
    """While both processes live, the tree's CPU is what getrusage bills this process for
    them once they have exited and been reaped (less the little spent exiting): the
    grandchild's 0.3 s is in it, not only the child's."""
    before = children_cpu_s()
    child = subprocess.Popen([sys.executable, "-c", FAMILY], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert child.stdout.readline().strip() == "burnt"
    measured = pipeline.tree_cpu_s([child.pid])
    child.stdin.close()
    child.wait()
    billed = children_cpu_s() - before
    assert billed >= 0.6  # both burnt their share
    # /proc ticks are 10 ms; exiting two interpreters costs a few more
    assert billed - 0.1 <= measured <= billed + 0.02


def test_tree_cpu_of_no_process_is_zero():
    assert pipeline.tree_cpu_s([]) == 0.0


def test_the_report_sets_two_workers_cpu_per_event_against_one():
    figures = {"d": [5000.0, 5200.0, 4800.0], "e": [4000.0, 4100.0, 3900.0],
               "d_cpu": [200.0, 180.0, 220.0], "e_cpu": [250.0, 210.0, 230.0],
               "l_cpu": [205.0, 190.0, 210.0]}  # fmt: skip
    lines = pipeline.report(figures, 100_000)
    # the goal against l, one worker run as e is: medians 230 / 205
    assert (
        "CPU per event e / l = 1.12 (goal ≤ 1.15: a second worker adds no coordination "
        "cost; l is one worker run as e is)" in lines
    )
    # and against d (catching up), for reference: 230 / 200, no goal
    assert any(line.startswith("CPU per event e / d = 1.15 (d catches up") for line in lines)
    assert any(line.startswith("d worker CPU µs per event") and " 200 " in line for line in lines)
    assert any(line.startswith("e two workers' CPU µs per event") and " 230 " in line
               for line in lines)  # fmt: skip
    assert any(line.startswith("l one worker's CPU µs per event") and " 205 " in line
               for line in lines)  # fmt: skip


class FakeBench:
    """Only what live_runs asks of a Bench: fresh namespaces and a Redis handle."""

    redis = None

    def __init__(self):
        self.made = []

    def empty_namespace(self) -> str:
        self.made.append(f"ns{len(self.made)}")
        return self.made[-1]


@pytest.fixture
def recorded(monkeypatch):
    calls = {"preload": [], "latency": []}
    monkeypatch.setattr(pipeline, "preload",
                        lambda bench, ns, n: calls["preload"].append((ns, n)))  # fmt: skip

    def latency(bench, rate, seconds, live=False, namespace=None, tag=""):
        calls["latency"].append((rate, seconds, live, namespace, tag))
        return {"rate": rate, "p99_ms": 1.0}

    monkeypatch.setattr(pipeline, "latency", latency)
    monkeypatch.setattr(pipeline, "customer_count", lambda redis, keys: 1_000_123)
    return calls


def test_live_runs_on_a_population_preload_it_once_and_give_each_run_new_customers(recorded):
    bench = FakeBench()
    results = pipeline.live_runs(bench, 3, 2000.0, 20.0, True, 1_000_000)
    assert recorded["preload"] == [("ns0", 1_000_000)]  # one load of the million
    assert recorded["latency"] == [(2000.0, 20.0, True, "ns0", "r0"),
                                   (2000.0, 20.0, True, "ns0", "r1"),
                                   (2000.0, 20.0, True, "ns0", "r2")]  # fmt: skip
    assert [r["customers"] for r in results] == [1_000_123] * 3


def test_live_runs_without_a_population_are_as_before(recorded):
    bench = FakeBench()
    pipeline.live_runs(bench, 2, 500.0, 3.0, True, 0)
    pipeline.live_runs(bench, 1, 500.0, 3.0, False, 1_000)  # f never takes the population
    assert recorded["preload"] == [] and bench.made == []
    assert recorded["latency"] == [(500.0, 3.0, True, None, "")] * 2 + [
        (500.0, 3.0, False, None, "")
    ]


def test_a_tagged_event_is_the_same_event_of_another_customer():
    event = {"event_id": "e-o11-c00007-5", "customer_id": "c00007", "type": "purchase",
             "order_id": "o11-c00007-5", "amount": "12.50", "ts": 5}  # fmt: skip
    assert pipeline.tagged(event, "r1") == {
        "event_id": "r1e-o11-c00007-5", "customer_id": "r1c00007", "type": "purchase",
        "order_id": "r1o11-c00007-5", "amount": "12.50", "ts": 5}  # fmt: skip
    click = {"event_id": "k1", "customer_id": "c1", "type": "click", "ts": 1}
    assert pipeline.tagged(click, "r0") == {**click, "event_id": "r0k1", "customer_id": "r0c1"}
    assert pipeline.tagged(event, "") is event

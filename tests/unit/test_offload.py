"""Leader jobs run in a child process (streams.processing.offload): the caller gets the job's
result or its exception, the event loop stays free, and a cancelled job is stopped."""

from __future__ import annotations

import asyncio
import gc
import os
import time
from functools import partial
from pathlib import Path

import pytest

from streams.processing.offload import JobProcess, run_off_loop
from streams.processing.worker import RefitSkipped


def busy(objects: int) -> int:
    """A refit's shape: many fresh objects, then a full collection over them (one C call
    that holds the GIL throughout)."""
    states = [{"customer": i, "orders": [i]} for i in range(objects)]
    gc.collect()
    return os.getpid() + 0 * len(states)


def skip() -> None:
    raise RefitSkipped("no event time yet")


def die() -> None:
    os._exit(3)


def write_pid_then_sleep(path: str) -> None:
    Path(path).write_text(str(os.getpid()))
    time.sleep(60)


def test_the_result_comes_back_from_another_process():
    assert asyncio.run(run_off_loop(partial(busy, 10))) != os.getpid()


def test_the_loop_keeps_running_while_the_job_holds_the_gil():
    async def scenario():
        job = asyncio.ensure_future(run_off_loop(partial(busy, 2_000_000)))
        worst = 0.0
        while not job.done():
            asked = time.perf_counter()
            await asyncio.sleep(0.005)
            worst = max(worst, time.perf_counter() - asked)
        await job
        return worst

    # In a thread of this process the collection alone stops the loop for longer.
    assert asyncio.run(scenario()) < 0.1


def test_the_jobs_own_exception_is_raised_with_where_it_came_from():
    with pytest.raises(RefitSkipped, match="no event time yet") as caught:
        asyncio.run(run_off_loop(skip))
    assert "in the job's process" in "".join(caught.value.__notes__)


def test_a_child_that_dies_is_an_error_not_a_hang():
    with pytest.raises(RuntimeError, match="died before replying"):
        asyncio.run(run_off_loop(die))


def test_a_cancelled_job_stops_its_process(tmp_path):
    pid_file = tmp_path / "pid"

    async def scenario():
        job = asyncio.ensure_future(run_off_loop(partial(write_pid_then_sleep, str(pid_file))))
        while not pid_file.exists() or not pid_file.read_text():
            await asyncio.sleep(0.05)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job

    began = time.monotonic()
    asyncio.run(scenario())
    assert time.monotonic() - began < 30  # not the job's 60 s
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def pid() -> int:
    return os.getpid()


def spin(seconds: float) -> int:
    """CPU-bound for ``seconds`` of this process's CPU time."""
    began = time.process_time()
    while time.process_time() - began < seconds:
        pass
    return os.getpid()


def test_a_kept_child_runs_job_after_job_and_bills_each_its_own_cpu():
    async def scenario():
        jobs = JobProcess()
        try:
            first = await jobs.run(pid)
            spun = await jobs.run(partial(spin, 0.3))
            spun_cpu = jobs.last_cpu_s
            again = await jobs.run(pid)
            return first, spun, spun_cpu, again, jobs.last_cpu_s, jobs.started
        finally:
            jobs.close()

    first, spun, spun_cpu, again, trivial_cpu, started = asyncio.run(scenario())
    assert first == spun == again != os.getpid() and started == 1
    assert 0.3 <= spun_cpu < 0.6
    assert trivial_cpu < 0.05  # the child's start (imports: ~1 s) is not the job's


def test_a_kept_childs_failures_are_raised_and_the_next_job_gets_a_new_child():
    async def scenario():
        jobs = JobProcess()
        try:
            before = await jobs.run(pid)
            with pytest.raises(RefitSkipped, match="no event time yet") as caught:
                await jobs.run(skip)
            assert "in the job's process" in "".join(caught.value.__notes__)
            assert await jobs.run(pid) == before  # a job's exception keeps the child
            with pytest.raises(RuntimeError, match="died before replying"):
                await jobs.run(die)
            return before, await jobs.run(pid), jobs.started
        finally:
            jobs.close()

    before, after, started = asyncio.run(scenario())
    assert before != after and started == 2


def test_a_kept_child_is_replaced_after_a_job_that_left_it_large():
    async def scenario():
        jobs = JobProcess(recycle_above_bytes=1)  # every child is past it
        try:
            return [await jobs.run(pid) for _ in range(3)], jobs.started
        finally:
            jobs.close()

    pids, started = asyncio.run(scenario())
    assert len(set(pids)) == 3 and started == 3
    for gone in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(gone, 0)


def test_a_cancelled_job_stops_the_kept_child_and_the_next_job_runs(tmp_path):
    pid_file = tmp_path / "pid"

    async def scenario():
        jobs = JobProcess()
        try:
            job = asyncio.ensure_future(jobs.run(partial(write_pid_then_sleep, str(pid_file))))
            while not pid_file.exists() or not pid_file.read_text():
                await asyncio.sleep(0.05)
            job.cancel()
            with pytest.raises(asyncio.CancelledError):
                await job
            return await jobs.run(pid)
        finally:
            jobs.close()

    began = time.monotonic()
    after = asyncio.run(scenario())
    assert time.monotonic() - began < 30
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)
    assert after != int(pid_file.read_text())

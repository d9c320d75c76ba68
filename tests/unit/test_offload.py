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

from streams.processing.offload import run_off_loop
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

"""Heavy leader jobs (a churn refit, an RFM-edge refresh: a pass over every customer and
an optimiser) run in a child process, so the worker keeps consuming while they run.

A thread was not enough: the job holds the GIL between switches, and a garbage
collection over its hundreds of thousands of fresh state objects is one long C call.
Measured with ``benchmarks.population`` at 100k customers, a refit in a thread stalled
the event loop for 354 ms (idle: 4 ms); in a child process, 6 ms. The child is spawned
per job (the jobs run minutes to hours apart, and a spawned child starts clean: no copy
of the worker's sockets, threads or event loop), runs at a lower priority than the
worker serving events, and is terminated when the worker stops mid-job.

``concurrent.futures.ProcessPoolExecutor`` would do the spawning, but before Python 3.14
it cannot stop a running job: a worker shutting down would wait for the whole refit.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import traceback
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

NICENESS = 10  # the child yields the CPU to the workers serving events


async def run_off_loop(job: Callable[[], T]) -> T:
    """``job()`` in a fresh child process: its result, or its exception raised here (both
    pickled; ``job`` is a module-level function or a ``functools.partial`` of one)."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_run, args=(job, sender), daemon=True, name="rtba-job")
    child.start()
    sender.close()  # the child's end: our reads see EOF once the child is gone
    try:
        ok, value = await asyncio.to_thread(_receive, receiver)
    finally:
        if child.is_alive():  # cancelled (the worker stops) or the reply is in
            child.terminate()
        # the child frees a population's worth of objects on its way out: wait in a thread
        await asyncio.to_thread(child.join)
        receiver.close()
    if ok:
        return value
    raise value


def _run(job: Callable[[], T], sender) -> None:
    os.nice(NICENESS)
    try:
        reply = (True, job())
    except Exception as exc:
        exc.add_note(f"in the job's process:\n{traceback.format_exc()}")
        reply = (False, exc)
    try:
        sender.send(reply)
    except Exception as exc:  # an unpicklable result or exception
        sender.send((False, RuntimeError(f"the job's reply cannot be sent back: {exc}")))
    sender.close()


def _receive(receiver) -> tuple[bool, object]:
    try:
        return receiver.recv()
    except EOFError:
        return False, RuntimeError("the job's process died before replying")

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

A worker's timers run their jobs in one JobProcess, a child kept between jobs (S10): a
spawned child's start (importing numpy, scipy, redis and rtba) cost ~1.1 s of CPU, more
than an unchanged refit's own work. It is replaced after a job that left it large (a
walk's states), or that it did not answer (it died, or the worker stopped mid-job).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
import time
import traceback
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

NICENESS = 10  # the child yields the CPU to the workers serving events
# A kept child whose peak resident memory went past this is replaced after its job: the
# cells' refit peaks at ~0.3 GB, a walk at ~2 KB a customer, which Python keeps.
RECYCLE_ABOVE_BYTES = 1 << 30


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


class JobProcess:
    """Jobs run one at a time in a child process kept between them (module docstring).

    ``run`` returns the job's result or raises its exception, as ``run_off_loop`` does;
    ``last_cpu_s`` is the CPU seconds the child spent on the last job (its start not
    included), ``last_peak_bytes`` the child's peak resident memory after it, and
    ``started`` how many children were spawned so far.
    """

    def __init__(self, recycle_above_bytes: int = RECYCLE_ABOVE_BYTES):
        self.recycle_above_bytes = recycle_above_bytes
        self.last_cpu_s: float | None = None
        self.last_peak_bytes: int | None = None
        self.started = 0
        self._child = None
        self._conn = None
        self._lock = asyncio.Lock()  # two timers' jobs queue rather than run side by side

    async def run(self, job: Callable[[], T]) -> T:
        async with self._lock:
            if self._child is None or not self._child.is_alive():
                self._start()
            try:
                self._conn.send(job)
                ok, value, cpu_s, peak_bytes = await asyncio.to_thread(_receive_kept, self._conn)
            except BaseException:  # cancelled (the worker stops), or the child is gone
                self.close()
                raise
            self.last_cpu_s, self.last_peak_bytes = cpu_s, peak_bytes
            if peak_bytes is None or peak_bytes > self.recycle_above_bytes:
                self.close()
        if ok:
            return value
        raise value

    def close(self) -> None:
        """Stop the child (a SIGTERM: it holds nothing to flush), if there is one. Our end
        of the pipe is left to the collector: a cancelled run's thread may still be
        reading it, and sees EOF now."""
        child, self._child = self._child, None
        if child is not None:
            child.terminate()
            child.join(5)

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, theirs = context.Pipe(duplex=True)
        self._child = context.Process(target=_serve, args=(theirs,), daemon=True,
                                      name="rtba-jobs")  # fmt: skip
        self._child.start()
        theirs.close()  # the child's end: our reads see EOF once the child is gone
        self.started += 1


def _serve(conn) -> None:
    """The kept child: each job received, run, and answered with (ok, result or exception,
    CPU seconds, peak resident bytes), until the parent closes its end."""
    os.nice(NICENESS)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        began = time.process_time()
        try:
            ok, value = True, job()
        except Exception as exc:
            exc.add_note(f"in the job's process:\n{traceback.format_exc()}")
            ok, value = False, exc
        cpu_s = time.process_time() - began
        peak_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        try:
            conn.send((ok, value, cpu_s, peak_bytes))
        except Exception as exc:  # an unpicklable result or exception
            error = RuntimeError(f"the job's reply cannot be sent back: {exc}")
            conn.send((False, error, cpu_s, peak_bytes))


def _receive_kept(conn) -> tuple:
    try:
        return conn.recv()
    except EOFError:
        return False, RuntimeError("the job's process died before replying"), None, None

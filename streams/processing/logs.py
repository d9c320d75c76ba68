"""Worker logging that an outage cannot flood.

While a broker restarts, aiokafka and Faust log the same failure for every fetch, every
send and every heartbeat: one worker wrote ~21,000 lines in a 7-second broker restart.
``RepeatFilter`` lets the first record of a kind through, holds back the alike ones that
follow for ``window_s``, and says how many it held back on the next one it lets through.
It applies to the libraries' loggers only: rtba's own (``streams.*``) already log once per
outage and once on recovery (``streams.processing.worker.retry_transient``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import faust

LIBRARIES = ("aiokafka", "faust", "mode", "kafka")


class RepeatFilter(logging.Filter):
    """Pass one record per (logger, level, message template) per ``window_s``.

    >>> clock = iter([0.0, 1.0, 2.0, 61.0]).__next__
    >>> f = RepeatFilter(window_s=60, clock=clock)
    >>> def rec(msg):
    ...     return logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, msg, ("x",), None)
    >>> [f.filter(rec("no broker %s")) for _ in range(4)]
    [True, False, False, True]
    """

    def __init__(self, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 max_kinds: int = 1000):  # fmt: skip
        super().__init__()
        self.window_s = window_s
        self.clock = clock
        self.max_kinds = max_kinds
        self._kinds: dict[tuple, list] = {}  # kind -> [last let through at, held back]

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(LIBRARIES):
            return True
        kind = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        seen = self._kinds.get(kind)
        if seen is not None and now - seen[0] < self.window_s:
            seen[1] += 1
            return False
        if seen is not None and seen[1]:
            held = f"[{seen[1]} alike held back in the last {now - seen[0]:.0f}s]"
            record.msg = f"{record.msg} {held}"
        if len(self._kinds) >= self.max_kinds:
            self._kinds.clear()
        self._kinds[kind] = [now, 0]
        return True


class Worker(faust.Worker):
    """Faust's worker, with the repeat filter on every root handler it sets up, and no
    progress spinner: with one, Faust sets the root logger to DEBUG (so the spinner sees
    every record) and every aiokafka and Faust debug call on the hot path builds a log
    record (~4.5% of the worker's time, S5); in a log file it is only escape codes."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.spinner = None

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        repeat = RepeatFilter()
        for handler in logger.handlers:
            handler.addFilter(repeat)


SLOW_S = 0.25  # a quarter of the sub-second promise: worth a line at the default level


class SlowStep:
    """Times one step of the worker and logs a warning if it took ``threshold_s`` or more,
    with the time of each phase marked on the way (wall time, awaits included): the line
    an operator (or f's timeline) needs to tell a late alert's cause from the broker's.

    >>> import io
    >>> logger = logging.getLogger("doctest.slow")
    >>> logger.addHandler(logging.StreamHandler(out := io.StringIO()))
    >>> ticks = iter([0.0, 0.1, 0.4]).__next__
    >>> with SlowStep("a batch of 3 events", logger, clock=ticks) as step:
    ...     step.mark("processed")
    >>> print(out.getvalue().strip())
    slow: a batch of 3 events took 400 ms (processed 100, rest 300)
    """

    def __init__(self, what: str, logger: logging.Logger, threshold_s: float = SLOW_S,
                 clock: Callable[[], float] = time.perf_counter,
                 last: str = "rest"):  # fmt: skip
        self.what = what
        self.last = last  # the name of the phase after the last mark
        self.logger = logger
        self.threshold_s = threshold_s
        self.clock = clock
        self._phases: list[tuple[str, float]] = []

    def __enter__(self) -> SlowStep:
        self._started = self._last = self.clock()
        return self

    def mark(self, phase: str) -> None:
        now = self.clock()
        self._phases.append((phase, now - self._last))
        self._last = now

    def __exit__(self, *exc) -> None:
        now = self.clock()
        took = self.took_s = now - self._started  # for the metrics: one clock, one timing
        if took < self.threshold_s:
            return
        phases = [*self._phases, (self.last, now - self._last)] if self._phases else []
        detail = ", ".join(f"{name} {seconds * 1000:.0f}" for name, seconds in phases)
        self.logger.warning(
            "slow: %s took %.0f ms%s", self.what, took * 1000, f" ({detail})" if detail else ""
        )


LEVELS = {"crit": "CRITICAL", "error": "ERROR", "warn": "WARNING", "info": "INFO", "debug": "DEBUG"}


def logging_config(level: str) -> dict:
    """rtba's own records at ``level``, the libraries' at warning (all at debug), as plain
    text on stderr: mode's default handler writes colour escape codes even into files.

    >>> config = logging_config("info")
    >>> config["loggers"]["streams"]["level"], config["root"]["level"]
    ('INFO', 'WARNING')
    """
    own = LEVELS[level]
    libraries = "DEBUG" if own == "DEBUG" else max(own, "WARNING", key=logging.getLevelName)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "[%(asctime)s] %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain",
                                "stream": "ext://sys.stderr"}},
        "root": {"level": libraries, "handlers": ["stderr"]},
        # the transport's consumer service logs each start-up step at info: the libraries'
        "loggers": {"streams": {"level": own},
                    "streams.processing.transport": {"level": libraries}},
    }  # fmt: skip


PROGRESS_S = 30.0


class Progress:
    """What one worker did since its last report: a line at the default level every
    ``PROGRESS_S`` while events flow, and one when they stop.

    >>> import io
    >>> logger = logging.getLogger("doctest.progress")
    >>> logger.addHandler(logging.StreamHandler(out := io.StringIO()))
    >>> logger.setLevel(logging.INFO)
    >>> clock = iter([0.0, 30.0, 60.0, 90.0]).__next__
    >>> progress = Progress(logger, clock=clock)
    >>> progress.assigned([0, 2], "behavior.events")
    >>> progress.batch(records=500, rejected=2, sent=40)
    >>> progress.report(); progress.report(); progress.report()
    >>> print(out.getvalue().strip())
    ready: partitions 0, 2 of behavior.events
    progress: 500 events in the last 30 s (17/s), 2 to the DLQ, 40 outputs sent
    idle: no events in the last 30 s
    """

    def __init__(self, logger: logging.Logger, clock: Callable[[], float] = time.monotonic):
        self.logger = logger
        self.clock = clock
        self.since = clock()
        self.records = self.rejected = self.sent = 0
        self.idle = False
        self.ready = False

    def assigned(self, partitions: list[int], topic: str) -> None:
        listed = ", ".join(map(str, partitions)) or "none (more workers than partitions)"
        what = "ready" if not self.ready else "partitions moved"
        self.logger.info("%s: partitions %s of %s", what, listed, topic)
        self.ready = True

    def batch(self, records: int, rejected: int, sent: int) -> None:
        self.records += records
        self.rejected += rejected
        self.sent += sent

    def report(self) -> None:
        now = self.clock()
        took, self.since = now - self.since, now
        if self.records:
            self.logger.info(
                "progress: %d events in the last %.0f s (%.0f/s), %d to the DLQ, %d outputs sent",
                self.records, took, self.records / took, self.rejected, self.sent,
            )  # fmt: skip
            self.idle = False
        elif not self.idle:
            self.logger.info("idle: no events in the last %.0f s", took)
            self.idle = True
        self.records = self.rejected = self.sent = 0

"""Fault points, for the fault-injection tests: ``RTBA_FAULTS="point=probability,..."``
makes each named point fire with that probability (seeded by ``RTBA_FAULT_SEED``).
Without it every point is a no-op.

Points: ``crash_before_send`` (the worker process dies right after a batch's Redis write,
before its Kafka send), ``drop_after_write`` (a batch's Redis write reaches Redis but its
reply is lost: a ConnectionError after the pipeline ran), ``drop_after_tick_write`` (the
same for the leader tick's writes).
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping

import redis.exceptions

POINTS = ("crash_before_send", "drop_after_write", "drop_after_tick_write")


def parse(text: str) -> dict[str, float]:
    """The RTBA_FAULTS setting as {point: probability}.

    >>> parse("crash_before_send=0.1")
    {'crash_before_send': 0.1}
    """
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, p = part.partition("=")
        if name not in POINTS:
            raise ValueError(f"unknown fault point {name!r} (known: {', '.join(POINTS)})")
        out[name] = float(p)
    return out


class Faults:
    def __init__(self, probabilities: Mapping[str, float] | None = None, seed: int = 0):
        self.probabilities = dict(probabilities or {})
        self.rng = random.Random(seed)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Faults:
        env = os.environ if env is None else env
        return cls(parse(env.get("RTBA_FAULTS", "")), int(env.get("RTBA_FAULT_SEED", "0")))

    def fires(self, point: str) -> bool:
        p = self.probabilities.get(point, 0.0)
        return p > 0 and self.rng.random() < p

    def crash(self, point: str) -> None:
        """Die at once, as SIGKILL would: no cleanup, no flush, no group leave."""
        if self.fires(point):
            os._exit(70)

    def drop(self, point: str) -> None:
        if self.fires(point):
            raise redis.exceptions.ConnectionError(f"fault injected at {point}")

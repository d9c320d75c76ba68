"""Population walks behind a short cache, one walk at a time per endpoint.

The ranking by CLV and members as of another time read every customer's state (sizes
do not: they come from the population facts, S10; audience pages from their sorted sets;
member, money and churn-risk pages from the indexes and day cells). A
client calling them in a loop (or many clients at once) would keep the API's threads and
Redis busy walking. So each endpoint keeps its walk's result for ``ttl_s``, keyed by the
query as given (an ``as_of`` left out is "the watermark", whatever it is then), and walks
once at a time: a call that finds no fresh result waits for the walk under way, then
takes its result. N calls within the TTL cost one walk, and however many clients call,
an endpoint walks at most once at a time (docs/api.md).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable


class WalkCache:
    """One endpoint's cache: at most ``entries`` results, each kept ``ttl_s`` seconds.

    Endpoints are plain ``def`` run in FastAPI's thread pool, hence a thread lock.
    """

    def __init__(self, ttl_s: float, entries: int = 16, clock=time.monotonic):
        self.ttl_s, self.entries, self.clock = ttl_s, entries, clock
        self.results: OrderedDict[Hashable, tuple[float, object]] = OrderedDict()
        self.lock = threading.Lock()
        self.walks = 0  # walks done, for the tests and /metrics

    def get(self, key: Hashable, walk: Callable[[], object]) -> object:
        """The cached result for ``key``, or ``walk()``'s, cached (one walk at a time)."""
        with self.lock:  # held through the walk: the others wait for its result
            now = self.clock()
            cached = self.results.get(key)
            if cached is not None and now - cached[0] < self.ttl_s:
                return cached[1]
            result = walk()
            self.walks += 1
            self.results[key] = (self.clock(), result)
            self.results.move_to_end(key)
            while len(self.results) > self.entries:  # bounded: varied queries evict
                self.results.popitem(last=False)
            return result

    def clear(self) -> None:
        """Forget every result (an erasure: no cached walk may still list the customer).
        Under the lock, so a walk under way finishes first and its result goes too."""
        with self.lock:
            self.results.clear()

"""Faust's aiokafka transport with a fetch wait of rtba's choosing, registered as the
``rtba://`` broker scheme through Faust's own ``faust.transports`` entry points.

Faust's aiokafka driver creates its worker consumer with ``fetch_max_wait_ms=1500`` and no
setting to change it: the longest a broker may hold a fetch that has less than
``fetch_min_bytes`` to return. S5 found records reaching the worker in bursts every ~1.5 s
at half of full load, and forcing 100 ms cut p50/p99 there from ~1.7/2.2 s to ~210/490 ms.
(At 100 ev/s the harness shows no difference: a fetch returns as soon as a record comes;
docs/performance.md.) This is the driver's own consumer thread with that one value set
(``RTBA_FETCH_WAIT_MS``), before the consumer starts: it hands the value to its fetcher in
``start()``.
"""

from __future__ import annotations

from faust.transport.drivers import aiokafka as driver

TRANSPORT = "rtba"
DEFAULT_FETCH_WAIT_MS = 1500  # the driver's own value, for an app that sets none


class ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "rtba_fetch_wait_ms", DEFAULT_FETCH_WAIT_MS)
        consumer._fetch_max_wait_ms = int(wait_ms)
        return consumer


class Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(driver.Transport):
    Consumer = Consumer

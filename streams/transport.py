"""Faust's aiokafka transport with a fetch wait of rtba's choosing, registered as the
``rtba://`` broker scheme through Faust's own ``faust.transports`` entry points.

Faust's aiokafka driver creates its worker consumer with ``fetch_max_wait_ms=1500`` and no
setting to change it. A broker holds a fetch that long when it has less than
``fetch_min_bytes`` to return, so at low rates records reach the worker in bursts every
~1.5 s: the first segment change for a new customer took a median 1.7 s (S5). This is the
driver's own consumer thread with one value changed, set before the consumer starts (the
consumer hands it to its fetcher in ``start()``).
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

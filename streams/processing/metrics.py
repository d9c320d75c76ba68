"""A worker's Prometheus metrics (prometheus-client), served at ``/metrics`` on
``RTBA_METRICS_PORT``: what this process read, refused, emitted and how long it took.

They count per process and start at zero with it, as Prometheus expects of a counter
(``rate()`` and ``increase()`` handle the restart). The namespace's exact totals, across
workers and restarts, are in Redis and exported by the API (streams.api.metrics).
Each worker's metrics live in their own registry, so that two apps in one process (the
tests, the benchmarks) never share or clash.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Batch wall time, decode to outputs acknowledged: the sub-second promise sits at 1 s.
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REFIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)


def output_kind(output: str, payload: bytes) -> str:
    """``rfm``, ``cluster``, ``churn`` or ``audience``: the kind of an outbox entry's event.

    >>> output_kind("churn_risk", b"{}"), output_kind("segment_changes", b'{"kind": "rfm"}')
    ('churn', 'rfm')
    """
    if output == "churn_risk":
        return "churn"
    if output == "audience_changes":
        return "audience"
    return json.loads(payload)["kind"]


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "rtba_events", "valid events read from the events topic, by type", ["type"],
            registry=r,
        )  # fmt: skip
        self.dlq = Counter(
            "rtba_dlq_events", "events sent to the DLQ, by reason", ["reason"], registry=r
        )
        self.emitted = Counter(
            "rtba_emitted_events",
            "output events acknowledged by Kafka, by kind (rfm, cluster, churn)",
            ["kind"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "rtba_batch_duration_seconds",
            "a batch of events from decode to its outputs acknowledged",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "rtba_consumer_lag",
            "records of the events topic behind the log end, per partition this worker holds",
            ["partition"],
            registry=r,
        )
        self.model_version = Gauge(
            "rtba_model_version", "version of each model this worker evaluates with", ["model"],
            registry=r,
        )  # fmt: skip
        self.refit_seconds = Histogram(
            "rtba_refit_duration_seconds",
            "leader jobs that fit a model: churn refit, RFM edge refresh, cluster training",
            ["job"],
            buckets=REFIT_BUCKETS,
            registry=r,
        )
        self._lagging: set[str] = set()  # partitions with a lag series

    def read(self, types: dict[str, int]) -> None:
        for name, n in types.items():
            self.events.labels(name).inc(n)

    def sent(self, reasons: Iterable[str], outputs: Iterable[tuple[str, bytes]]) -> None:
        """Count what one send acknowledged: DLQ records by reason, outputs by kind."""
        for reason in reasons:
            self.dlq.labels(reason).inc()
        for output, payload in outputs:
            self.emitted.labels(output_kind(output, payload)).inc()

    def lags(self, behind: dict[int, int]) -> None:
        for partition, n in behind.items():
            self.lag.labels(str(partition)).set(max(n, 0))
            self._lagging.add(str(partition))

    def held(self, partitions: Iterable[int]) -> None:
        """After a rebalance: drop the lag of partitions this worker no longer holds."""
        keep = {str(p) for p in partitions}
        for label in self._lagging - keep:
            self.lag.remove(label)
        self._lagging &= keep

    def models(self, versions: tuple[int, int, int, int]) -> None:
        for name, version in zip(("churn", "rfm", "clusters", "audiences"), versions,
                                 strict=True):  # fmt: skip
            self.model_version.labels(name).set(version)


def serve(registry: CollectorRegistry, host: str, port: int) -> None:
    """Serve ``registry`` at http://host:port/metrics from a daemon thread (prometheus-client's
    own server: nothing of it runs on the worker's event loop)."""
    from prometheus_client import start_http_server

    from streams.errors import ConfigError

    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"RTBA_METRICS_PORT={port}: cannot listen on {host}:{port} ({exc.strerror}); "
            "give each worker on a host its own port"
        ) from None

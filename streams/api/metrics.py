"""The API's Prometheus metrics: the namespace's exact totals, read from Redis at each
scrape, so they hold across every worker and every restart (a worker's own /metrics
counts what that process did: streams.processing.metrics).

- ``rtba_records_total{outcome}``: records read from the events topic (``read``), and of
  the customer events among them (watermarks are not) ``applied``, ``duplicate`` (an
  event id seen before) and ``redelivered`` (offsets applied before, after a crash);
- ``rtba_dlq_total{reason}``: records refused;
- ``rtba_retention_erased_total``: customers erased as their retention ended;
- ``rtba_customers``: customers with state; ``rtba_segment_customers{segment}`` and
  ``rtba_cluster_customers{cluster}``: each customer's segment and cluster at its last
  evaluation (all three from the population facts, streams.state.facts: no walk);
- ``rtba_model_version{model}``, ``rtba_model_age_seconds{model}``: the models in force;
- ``rtba_group_lag``: records the workers' consumer group has yet to commit, as of the
  last dashboard sample.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from streams.api.history import read_history
from streams.read.reader import StateReader
from streams.read.views import cluster_sizes, segment_sums
from streams.state.facts import read_facts
from streams.state.store import model_status, read_stats

OUTCOMES = {"records": "read", "applied": "applied", "duplicates": "duplicate",
            "redelivered": "redelivered"}  # fmt: skip


class NamespaceCollector:
    def __init__(self, reader: StateReader):
        self.reader = reader

    def describe(self):
        return []  # collected at scrape time only: registering must not read Redis

    def collect(self):
        client, keys = self.reader.client, self.reader.keys
        stats = read_stats(client, keys)
        records = CounterMetricFamily(
            "rtba_records", "records of the events topic, by outcome (all workers)",
            labels=["outcome"],
        )  # fmt: skip
        for name, outcome in OUTCOMES.items():
            records.add_metric([outcome], stats.get(name, 0))
        yield records
        dlq = CounterMetricFamily("rtba_dlq", "records refused, by reason", labels=["reason"])
        for name, n in sorted(stats.items()):
            if name.startswith("dlq:"):
                dlq.add_metric([name.split(":", 1)[1]], n)
        yield dlq
        yield CounterMetricFamily(
            "rtba_retention_erased",
            "customers erased as their retention ended (RTBA_RETENTION_DAYS)",
            value=stats.get("retention_erased", 0),
        )
        yield from population_gauges(read_facts(client, keys))
        now_ms = int(time.time() * 1000)
        version = GaugeMetricFamily("rtba_model_version", "models in force", labels=["model"])
        age = GaugeMetricFamily(
            "rtba_model_age_seconds", "wall time since each model was fitted", labels=["model"]
        )
        failing = GaugeMetricFamily(
            "rtba_model_refit_failing",
            "1 while the latest refit was not put in force (last_error), or the churn model "
            "in force was published without its spend model (part=spend: CLV null)",
            labels=["model", "part"],
        )  # fmt: skip
        for model, status in model_status(client, keys, now_ms).items():
            if not isinstance(status, dict):
                continue
            version.add_metric([model], status.get("version") or 0)
            if status.get("age_s") is not None:
                age.add_metric([model], status["age_s"])
            if model == "churn":
                failing.add_metric([model, "model"], int(bool(status.get("last_error"))))
                failing.add_metric([model, "spend"], int(bool(status.get("spend_error"))))
        yield version
        yield age
        yield failing
        refits = CounterMetricFamily(
            "rtba_model_refit_failures",
            "churn refits that could not run (skipped) or whose fit was not put in force "
            "(rejected: did not converge)",
            labels=["model", "kind"],
        )  # fmt: skip
        for name, n in sorted(stats.items()):
            if name.startswith("refit_") and ":" in name:
                kind, model = name.removeprefix("refit_").split(":", 1)
                refits.add_metric([model, kind], n)
        yield refits
        last = read_history(self.reader, 1)
        if last and last[-1].get("lag") is not None:
            yield GaugeMetricFamily(
                "rtba_group_lag",
                "records of the events topic the workers have yet to commit (last sample)",
                value=last[-1]["lag"],
            )


def population_gauges(facts: dict[str, int]):
    """Customers, and customers by segment and by cluster, from the population facts."""
    yield GaugeMetricFamily("rtba_customers", "customers with state",
                            value=facts.get("customers", 0))  # fmt: skip
    segments = GaugeMetricFamily(
        "rtba_segment_customers", "customers by RFM segment (at their last evaluation)",
        labels=["segment"],
    )  # fmt: skip
    for name, sums in sorted(segment_sums(facts).items()):
        segments.add_metric([name], sums.get("n", 0))
    yield segments
    clusters = GaugeMetricFamily(
        "rtba_cluster_customers", "customers by behaviour cluster (at their last evaluation)",
        labels=["cluster"],
    )  # fmt: skip
    for cluster_id, n in sorted(cluster_sizes(facts).items()):
        clusters.add_metric([str(cluster_id)], n)
    yield clusters


def api_registry(reader: StateReader) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(NamespaceCollector(reader))
    return registry

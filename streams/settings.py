"""Every setting, with its default and its environment variable.

Connection addresses resolve in this order: the environment variable, then the
local stack started by `rtba stack up` (its state file under RTBA_HOME), then
the conventional localhost ports.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from online_models.rfm import RFMScorer


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(",") if part.strip())


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name, default)
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(allowed)}")
    return value


def stack_state_file(home: Path) -> Path:
    return home / "stack.json"


def read_stack_state(home: Path) -> dict:
    try:
        return json.loads(stack_state_file(home).read_text())
    except (OSError, ValueError):
        return {}


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    namespace: str = "behavior"
    home: Path = field(default_factory=lambda: Path(".rtba"))
    partitions: int = 6
    replication_factor: int = 1
    allowed_lateness_s: float = 300.0
    max_future_s: float = 86_400.0
    max_amount: float = 1_000_000.0
    max_event_bytes: int = 65_536
    # A customer's orders are kept this long after its latest event (de-duplication and
    # refunds), then kept as totals only (docs/decisions.md, "The order horizon").
    order_horizon_days: float = 730.0
    batch_size: int = 500
    # A lone event waits this long for company before its batch runs (the latency floor).
    batch_within_s: float = 0.02
    # How long the broker may hold a fetch when it has little to return (Faust's driver
    # hard-codes 1,500 ms; streams/transport.py).
    fetch_wait_ms: int = 100
    recency_edges: tuple[float, ...] = (30.0, 90.0, 180.0, 365.0)
    frequency_edges: tuple[float, ...] = (2, 3, 5, 8)
    monetary_edges: tuple[float, ...] = (100.0, 300.0, 750.0, 2000.0)
    churn_model: str = "mbgnbd"
    churn_threshold: float = 0.7
    churn_rearm_below: float = 0.5
    churn_refit_s: float = 300.0
    tick_s: float = 1.0
    outbox_relay_s: float = 1.0  # how often the leader relays a crashed writer's leftovers
    # A dead worker's partitions move after this long without its heartbeat (Kafka's
    # group.min.session.timeout.ms is 6 s by default); Faust's own default is 60 s.
    session_timeout_s: float = 6.0
    # Static group membership (KIP-345) when set: a restarted worker with the same id gets
    # its partitions back at once, without a rebalance. Unique per running worker.
    worker_id: str | None = None
    # The local stack's Redis AOF fsync policy: "always" makes every acknowledged write
    # durable before its Kafka offsets are committed; "everysec" may lose up to a second.
    redis_fsync: str = "always"
    # `rtba stack up` starts a three-master Redis Cluster instead of one redis-server.
    # Workers and the CLI need no setting: they ask the server which kind it is.
    redis_cluster: bool = False
    rfm_adaptive: bool = True
    rfm_refresh_s: float = 60.0
    clusters: int = 5
    cluster_snapshot_every: int = 500
    cluster_warmup: int = 2000
    cluster_snapshot_min_s: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("RTBA_HOME", ".rtba"))
        stack = read_stack_state(home)
        d = cls()
        return cls(
            kafka_bootstrap=env.get("KAFKA_BOOTSTRAP")
            or stack.get("kafka_bootstrap", d.kafka_bootstrap),
            redis_url=env.get("REDIS_URL") or stack.get("redis_url", d.redis_url),
            namespace=env.get("RTBA_NAMESPACE", d.namespace),
            home=home,
            partitions=int(env.get("RTBA_PARTITIONS", d.partitions)),
            replication_factor=int(env.get("RTBA_REPLICATION_FACTOR", d.replication_factor)),
            allowed_lateness_s=float(env.get("RTBA_ALLOWED_LATENESS_S", d.allowed_lateness_s)),
            max_future_s=float(env.get("RTBA_MAX_FUTURE_S", d.max_future_s)),
            max_amount=float(env.get("RTBA_MAX_AMOUNT", d.max_amount)),
            max_event_bytes=int(env.get("RTBA_MAX_EVENT_BYTES", d.max_event_bytes)),
            order_horizon_days=float(env.get("RTBA_ORDER_HORIZON_DAYS", d.order_horizon_days)),
            batch_size=int(env.get("RTBA_BATCH_SIZE", d.batch_size)),
            batch_within_s=float(env.get("RTBA_BATCH_WITHIN_S", d.batch_within_s)),
            fetch_wait_ms=int(env.get("RTBA_FETCH_WAIT_MS", d.fetch_wait_ms)),
            recency_edges=_floats(env["RTBA_RECENCY_EDGES"])
            if "RTBA_RECENCY_EDGES" in env
            else d.recency_edges,
            frequency_edges=_floats(env["RTBA_FREQUENCY_EDGES"])
            if "RTBA_FREQUENCY_EDGES" in env
            else d.frequency_edges,
            monetary_edges=_floats(env["RTBA_MONETARY_EDGES"])
            if "RTBA_MONETARY_EDGES" in env
            else d.monetary_edges,
            churn_model=env.get("RTBA_CHURN_MODEL", d.churn_model),
            churn_threshold=float(env.get("RTBA_CHURN_THRESHOLD", d.churn_threshold)),
            churn_rearm_below=float(env.get("RTBA_CHURN_REARM_BELOW", d.churn_rearm_below)),
            churn_refit_s=float(env.get("RTBA_CHURN_REFIT_S", d.churn_refit_s)),
            tick_s=float(env.get("RTBA_TICK_S", d.tick_s)),
            outbox_relay_s=float(env.get("RTBA_OUTBOX_RELAY_S", d.outbox_relay_s)),
            session_timeout_s=float(env.get("RTBA_SESSION_TIMEOUT_S", d.session_timeout_s)),
            worker_id=env.get("RTBA_WORKER_ID") or None,
            redis_fsync=_choice(env, "RTBA_REDIS_FSYNC", d.redis_fsync, ("always", "everysec")),
            redis_cluster=_choice(env, "RTBA_REDIS_CLUSTER", "0", ("0", "1")) == "1",
            rfm_adaptive=env.get("RTBA_RFM_ADAPTIVE", "1") not in ("0", "false", "no"),
            rfm_refresh_s=float(env.get("RTBA_RFM_REFRESH_S", d.rfm_refresh_s)),
            clusters=int(env.get("RTBA_CLUSTERS", d.clusters)),
            cluster_snapshot_every=int(
                env.get("RTBA_CLUSTER_SNAPSHOT_EVERY", d.cluster_snapshot_every)
            ),
            cluster_warmup=int(env.get("RTBA_CLUSTER_WARMUP", d.cluster_warmup)),
            cluster_snapshot_min_s=float(
                env.get("RTBA_CLUSTER_SNAPSHOT_MIN_S", d.cluster_snapshot_min_s)
            ),
        )

    def scorer(self) -> RFMScorer:
        return RFMScorer(self.recency_edges, self.frequency_edges, self.monetary_edges)

    # Topic names: every one carries the namespace, so pipelines sharing a broker never meet.
    @property
    def events_topic(self) -> str:
        return f"{self.namespace}.events"

    @property
    def dlq_topic(self) -> str:
        return f"{self.namespace}.dlq"

    @property
    def segment_changes_topic(self) -> str:
        return f"{self.namespace}.segment-changes"

    @property
    def churn_risk_topic(self) -> str:
        return f"{self.namespace}.churn-risk"

    @property
    def features_topic(self) -> str:
        """Single partition: the cluster trainer's input, so exactly one worker learns."""
        return f"{self.namespace}.features"

    @property
    def all_topics(self) -> tuple[str, ...]:
        return (
            self.events_topic,
            self.dlq_topic,
            self.segment_changes_topic,
            self.churn_risk_topic,
        )

    @property
    def app_id(self) -> str:
        return f"rtba-{self.namespace}"

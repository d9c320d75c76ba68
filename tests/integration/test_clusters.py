"""Behavioural clusters through real Kafka and Redis: one trainer learns from the
workers' feature stream and publishes snapshots; customers get stable cluster ids
with readable labels, and cluster changes arrive as kind "cluster" segment changes."""

from __future__ import annotations

import json
import time

import pytest

from streams.state.keys import Keys
from streams.state.store import all_customer_ids, connect, read_cluster_snapshot, read_states
from tests.conftest import consume_all, json_lines, run_rtba, wait_for_records

pytestmark = pytest.mark.integration


def test_customers_get_stable_labelled_clusters(rtba_env, settings, worker, redis_client):
    rtba_env.update(RTBA_CLUSTER_SNAPSHOT_EVERY="300", RTBA_CLUSTER_WARMUP="1000",
                    RTBA_TICK_S="0.3")  # fmt: skip
    worker.start()
    events = 15_000
    run_rtba(rtba_env, "produce", "synthetic", "--customers", "300", "--events", str(events),
             "--seed", "11")  # fmt: skip
    wait_for_records(redis_client, settings, events + (events // 1000 + 1) * settings.partitions,
                     worker)  # fmt: skip
    client = connect(settings.redis_url)
    keys = Keys(settings.namespace)
    # Quiet: the last snapshot is out and the leader's sweep has assigned everybody to it.
    deadline = time.monotonic() + 60
    snapshot = None
    while time.monotonic() < deadline:
        snapshot = read_cluster_snapshot(client, keys)
        swept = int(client.hget(keys.cluster_sweep, "swept") or 0)
        if snapshot is not None and swept == snapshot.version:
            time.sleep(2)  # the trainer has nothing left to learn from: nothing moves now
            if read_cluster_snapshot(client, keys).version == snapshot.version:
                break
        time.sleep(0.3)
    assert snapshot is not None and len(snapshot.ids) == 5
    states = read_states(client, keys, all_customer_ids(client, keys))
    assigned = [s for s in states if s.cluster_id is not None]
    assert len(assigned) == len(states) > 250  # silent customers too, through the sweep
    known_ids = set(snapshot.ids) | {e["cluster"] for e in snapshot.events}
    assert {s.cluster_id for s in assigned} <= set(range(max(known_ids) + 1))

    # Cluster changes are segment changes of kind "cluster", from null on first assignment.
    records = consume_all(settings.kafka_bootstrap, settings.segment_changes_topic, 1)
    cluster_changes = [c for c in map(json.loads, (r.value for r in records))
                       if c["kind"] == "cluster"]  # fmt: skip
    assert cluster_changes
    first = {}
    for change in cluster_changes:
        first.setdefault(change["customer_id"], change)
    assert all(c["from"] is None for c in first.values())
    # Two writers (the partition's owner, the leader's sweep) may reach the topic out of
    # order; `seq` (the state version each change was written with) says which is latest.
    last = {}
    for c in sorted(cluster_changes, key=lambda c: c["seq"]):
        last[c["customer_id"]] = c["to"]
    assert all(str(s.cluster_id) == last[s.customer_id] for s in assigned)

    profiles = {p["customer_id"]: p for p in json_lines(run_rtba(rtba_env, "profile", "--all",
                                                                 "--json").stdout)}  # fmt: skip
    labelled = [p for p in profiles.values() if p["cluster"]["id"] in snapshot.ids]
    assert labelled and all(p["cluster"]["label"] for p in labelled)
    summary = json.loads(run_rtba(rtba_env, "segments", "--json").stdout)
    assert summary["cluster_snapshot"] == snapshot.version
    assert sum(row["customers"] for row in summary["clusters"]) == len(assigned)
    assert all(row["centroid"] and row["label"] for row in summary["clusters"]
               if row["id"] in snapshot.ids)  # fmt: skip

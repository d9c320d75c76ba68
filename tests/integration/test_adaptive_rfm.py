"""Adaptive RFM edges through real Kafka and Redis: the leader re-derives the
quintile edges from the population histograms the workers keep, and every
reader (profile, segments) scores with the published version."""

from __future__ import annotations

import json
import time

import pytest

from online_models.customer import MS_PER_DAY
from online_models.quantiles import adaptive_edges, recency_cut_dates, rfm_histograms
from streams.state.facts import histogram_point
from streams.state.keys import Keys
from streams.state.store import all_customer_ids, connect, read_marks, read_rfm_edges, read_states
from tests.conftest import json_lines, run_rtba, wait_for_records
from tests.reference import reference_scores

pytestmark = pytest.mark.integration


def test_published_edges_are_the_population_quintiles(rtba_env, settings, worker, redis_client):
    rtba_env.update(RTBA_RFM_REFRESH_S="0.5", RTBA_TICK_S="0.5")
    worker.start()
    events = 12_000
    run_rtba(rtba_env, "produce", "synthetic", "--customers", "400", "--events", str(events),
             "--seed", "7")  # fmt: skip
    heartbeats = (events // 1000 + 1) * settings.partitions
    wait_for_records(redis_client, settings, events + heartbeats, worker)

    client = connect(settings.redis_url)
    keys = Keys(settings.namespace)
    deadline = time.monotonic() + 30
    expected = None
    while time.monotonic() < deadline:
        states = read_states(client, keys, all_customer_ids(client, keys))
        hists = rfm_histograms()
        for state in states:
            for name, bucket in (histogram_point(state) or {}).items():
                hists[name].counts[bucket] += 1
        as_of = read_marks(client, keys).watermark()
        fair = adaptive_edges(hists["lp"], hists["f"], hists["m"], as_of / MS_PER_DAY)
        # R by absolute cut dates (S10): the dates the elapsed ages of S9 started on
        expected = {"recency_cut_dates": list(recency_cut_dates(hists["lp"])),
                    "recency_timezone": "UTC", "frequency_edges": list(fair["frequency_edges"]),
                    "monetary_edges": list(fair["monetary_edges"])}  # fmt: skip
        if read_rfm_edges(client, keys) == expected:
            break
        time.sleep(0.5)
    assert read_rfm_edges(client, keys) == expected
    buyers = hists["lp"].count
    assert buyers > 100

    summary = json.loads(run_rtba(rtba_env, "segments", "--json").stdout)
    assert summary["rfm_edges"]["recency_cut_dates"] == expected["recency_cut_dates"]
    assert sum(row["customers"] for row in summary["rfm"]) == buyers
    profiles = [p for p in json_lines(run_rtba(rtba_env, "profile", "--all", "--json").stdout)
                if p["scores"]]  # fmt: skip
    top_spenders = sum(1 for p in profiles if p["scores"]["m"] == 5) / len(profiles)
    assert 0.15 <= top_spenders <= 0.25  # the top fifth, give or take ties and 1% buckets
    # every buyer's scores are the fair split of tests/reference.py (docs/segments.md)
    buyers_ = [s for s in states if s.last_purchase_ms is not None]
    want = reference_scores([{"last_purchase_ms": s.last_purchase_ms, "purchases": s.purchases,
                              "monetary": s.monetary} for s in buyers_])  # fmt: skip
    got = {p["customer_id"]: tuple(p["scores"][k] for k in "rfm") for p in profiles}
    assert got == {s.customer_id: w for s, w in zip(buyers_, want, strict=True)}

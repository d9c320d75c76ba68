"""`rtba replay` of a purchase file, then `rtba profile --json`, checked against
a batch computation on the file itself, for every customer."""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from streams.state.keys import Keys
from streams.state.store import connect, read_marks
from tests.conftest import buckets_due_by, json_lines, run_rtba, wait_for_records

pytestmark = pytest.mark.integration

END = datetime(1998, 12, 31, tzinfo=UTC)  # after every row of the file


def write_cdnow_like(path, seed=11) -> list[tuple[str, date, Decimal]]:
    """A whitespace file like CDNOW's (id, yyyymmdd, quantity, amount), unordered, with
    repeated identical lines (two real purchases) and a zero-amount row (a free order: a
    purchase like any other)."""
    rng = random.Random(seed)
    rows = []
    for c in range(60):
        cid = f"{c + 1:05d}"
        first = date(1997, 1, 1) + timedelta(days=rng.randint(0, 90))
        for _ in range(rng.randint(1, 9)):
            day = first + timedelta(days=rng.choice([0, 0, rng.randint(0, 540)]))
            rows.append((cid, day, Decimal(f"{rng.uniform(1, 300):.2f}")))
        if rng.random() < 0.2:
            rows.append(rows[-1])  # same line twice: still two purchases
    rng.shuffle(rows)
    rows.insert(7, ("00061", date(1997, 3, 4), Decimal("0.00")))
    lines = [f"{cid}   {d:%Y%m%d}  {rng.randint(1, 5)}  {amount}" for cid, d, amount in rows]
    path.write_text("\n".join(lines) + "\n")
    return rows


def batch_summary(rows, end: datetime) -> dict[str, dict]:
    by: dict[str, list] = defaultdict(list)
    for cid, d, amount in rows:
        by[cid].append((datetime(d.year, d.month, d.day, tzinfo=UTC), amount))
    out = {}
    for cid, purchases in by.items():
        times = [t for t, _ in purchases]
        first, last = min(times), max(times)
        x = len({t.date() for t in times}) - 1
        t_x = (last - first).total_seconds() / 86400 if x else 0.0
        big_t = (end - first).total_seconds() / 86400
        out[cid] = {
            "purchases": len(purchases),
            "monetary": float(sum(a for _, a in purchases)),
            "first_purchase": first.isoformat(),
            "last_purchase": last.isoformat(),
            "recency_days": (end - last).total_seconds() / 86400,
            "btyd": {
                "x": x,
                "t_x_days": t_x,
                "T_days": big_t,
                "t_x_weeks": t_x / 7,
                "T_weeks": big_t / 7,
            },
        }
    return out


def test_replay_profiles_match_batch(rtba_env, settings, worker, redis_client, tmp_path):
    path = tmp_path / "purchases.txt"
    rows = write_cdnow_like(path)
    args = [
        "replay", str(path), "--customer-col", "0", "--time-col", "1", "--amount-col", "3",
        "--time-format", "%Y%m%d", "--sep", "whitespace", "--no-header",
        "--end-time", END.isoformat(),
    ]  # fmt: skip
    worker.start()
    run_rtba(rtba_env, *args)
    sent = len(rows) + settings.partitions  # + a watermark per partition
    wait_for_records(redis_client, settings, sent, worker)
    # Replaying the same file again must count nothing twice.
    run_rtba(rtba_env, *args)
    wait_for_records(redis_client, settings, 2 * sent, worker)

    profiles = json_lines(run_rtba(rtba_env, "profile", "--all", "--json").stdout)
    expected = batch_summary(rows, END)
    assert {p["customer_id"] for p in profiles} == set(expected)
    for p in profiles:
        want = expected[p["customer_id"]]
        assert p["purchases"] == want["purchases"]
        assert p["monetary"] == pytest.approx(want["monetary"], abs=1e-9)
        assert p["first_purchase"] == want["first_purchase"]
        assert p["last_purchase"] == want["last_purchase"]
        assert p["recency_days"] == pytest.approx(want["recency_days"])
        assert p["btyd"] == pytest.approx(want["btyd"]), p["customer_id"]
        assert p["scores"] and p["segment"]
        for key in ("cluster", "p_alive", "churn_risk", "expected_purchases_30d",
                    "expected_purchases_90d", "predicted_clv_365d", "purchase_days"):  # fmt: skip
            assert key in p
    stats = json_lines(run_rtba(rtba_env, "stats", "--json").stdout)[0]["counters"]
    assert stats.get("dlq", 0) == 0  # the free order is a purchase, not bad input
    assert stats["duplicates"] == len(rows)  # the whole second replay

    # --as-of moves T and recency, not x or t_x.
    later = json_lines(
        run_rtba(rtba_env, "profile", "00001", "--as-of", "1999-01-07", "--json").stdout
    )
    base = expected["00001"]["btyd"]
    assert later[0]["btyd"]["T_days"] == pytest.approx(base["T_days"] + 7)
    assert later[0]["btyd"]["x"] == base["x"]


def test_replay_again_after_a_restart_changes_no_result(rtba_env, settings, worker, redis_client,
                                                        tmp_path):  # fmt: skip
    rtba_env.update(RTBA_CLUSTER_WARMUP="40", RTBA_CLUSTER_SNAPSHOT_EVERY="40", RTBA_TICK_S="0.3")
    path = tmp_path / "purchases.txt"
    rows = write_cdnow_like(path, seed=23)
    args = [
        "replay", str(path), "--customer-col", "0", "--time-col", "1", "--amount-col", "3",
        "--time-format", "%Y%m%d", "--sep", "whitespace", "--no-header",
        "--end-time", END.isoformat(),
    ]  # fmt: skip
    sent = len(rows) + settings.partitions
    worker.start()
    run_rtba(rtba_env, *args)
    wait_for_records(redis_client, settings, sent, worker)
    fitted = json.loads(run_rtba(rtba_env, "churn", "fit", "--json").stdout)
    assert fitted["customers"] == len({r[0] for r in rows})

    def results() -> dict:
        """Once the leader is idle (nothing due, clusters swept): what a user reads back."""
        keys = Keys(settings.namespace)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            snapshot = redis_client.hget(keys.cluster_model, "version")
            swept = redis_client.hget(keys.cluster_sweep, "swept")
            watermark = read_marks(connect(settings.redis_url), keys).watermark()
            due = buckets_due_by(redis_client, settings.namespace, watermark)
            if snapshot and swept == snapshot and not due:
                break
            time.sleep(0.3)
        profiles = json_lines(run_rtba(rtba_env, "profile", "--all", "--json").stdout)
        return {p["customer_id"]: (p["segment"], p["cluster"]["id"], p["churn_risk"])
                for p in profiles}  # fmt: skip

    first = results()
    assert all(cluster is not None and risk is not None for _, cluster, risk in first.values())
    worker.stop()
    worker.start()  # a restarted worker, then the same file again
    run_rtba(rtba_env, *args)
    wait_for_records(redis_client, settings, 2 * sent, worker)
    assert results() == first

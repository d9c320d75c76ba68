"""docs/schemas.md lists every field a user can send or receive, and every DLQ reason;
docs/examples/purchases.csv reads as the README says."""

from __future__ import annotations

import json
import re
from pathlib import Path

from producers.replay import ReplaySpec, read_file
from streams.processing import pipeline, schemas

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "schemas.md").read_text()
NOW = 1_796_342_400_000  # 2026-12-04: the file's times are all in the past


def documented(name: str) -> bool:
    return f"`{name}`" in DOC


def test_every_input_field_is_documented():
    for model in (schemas.Click, schemas.Purchase, schemas.Refund, schemas.Watermark):
        missing = [f for f in model.model_fields if not documented(f)]
        assert not missing, (model.__name__, missing)
    assert all(f in DOC for f in schemas.Item.model_fields)  # listed inside the items row


def test_every_output_field_is_documented():
    change = pipeline.SegmentChange("c", "rfm", None, "New", 0, pipeline.Cause.time(0), {})
    alert = pipeline.ChurnAlert(
        "c",
        0,
        {
            "churn_risk": 0.8,
            "p_alive": 0.2,
            "expected_next_purchase_ms": None,
            "expected_purchases_30d": 0.1,
        },
        "mbgnbd",
        0.7,
        90.0,
    )
    for payload in (change.to_json(), alert.to_json()):
        missing = [key for key in payload if not documented(key)]
        assert not missing, missing


def test_every_dlq_reason_is_documented():
    source = "".join(p.read_text() for p in (ROOT / "streams").rglob("*.py"))
    reasons = set(re.findall(r'Rejection\(\s*"([a-z_]+)"', source))
    assert len(reasons) >= 6
    assert all(documented(r) for r in reasons), [r for r in reasons if not documented(r)]


def test_the_example_file_replays_as_the_readme_shows():
    spec = ReplaySpec(customer_col="customer", time_col="time", amount_col="amount")
    events, problems = read_file(ROOT / "docs" / "examples" / "purchases.csv", spec)
    assert problems == [] and len(events) == 10
    verdicts = {
        e["customer_id"]: schemas.decode(json.dumps(e).encode(), now_ms=NOW) for e in events
    }
    assert isinstance(verdicts.pop("dave"), schemas.Rejection)  # "not-a-number": to the DLQ
    assert not any(isinstance(v, schemas.Rejection) for v in verdicts.values())
    times = [e["ts"] for e in events]
    assert times == sorted(times)  # replayed in time order, not file order

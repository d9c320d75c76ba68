"""Everything that names segments works under both segment maps (docs/segments.md)."""

import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from online_models.customer import MS_PER_DAY, CustomerState
from online_models.rfm import RFMScorer, segments_of
from streams.audiences.definitions import load, parse
from streams.read.views import summary_from_facts
from streams.state import state_codec

EXAMPLE = (
    Path(__file__).resolve().parents[2] / "streams" / "audiences" / "examples" / "holiday.json"
)
T0 = 1_700_000_000_000


def shop() -> list[CustomerState]:
    """A one-time buyer of long ago with a big basket, and a recent repeat buyer."""
    lapsed, regular = CustomerState("lapsed"), CustomerState("regular")
    lapsed.apply_purchase(T0, Decimal("5000"), "o1")
    for k in range(6):
        regular.apply_purchase(T0 + (190 + k) * MS_PER_DAY, Decimal("400"), f"o{k}")
    return [lapsed, regular]


@pytest.mark.parametrize("segment_map", ["repeat-aware", "classic"])
def test_rtba_segments_lists_the_names_of_the_map_in_force(segment_map):
    scorer, as_of = RFMScorer(segment_map=segment_map), T0 + 200 * MS_PER_DAY
    # each customer counted in the segment the map scores it into, as the workers store it
    facts = Counter(
        f"seg:{scorer.segment(s.recency_days(as_of), s.purchases, s.monetary)}" for s in shop()
    )
    summary = summary_from_facts(dict(facts), as_of, scorer)
    rows = {row["segment"]: row["customers"] for row in summary["rfm"]}
    assert tuple(rows) == segments_of(segment_map)
    lapsed_as = "One-time Lapsed" if segment_map == "repeat-aware" else "At Risk"
    assert rows[lapsed_as] == 1 and rows["Champions"] == 1


def test_audiences_accept_the_names_of_either_map_and_refuse_others():
    for name in segments_of("repeat-aware") + segments_of("classic"):
        when = {"field": "segment", "in": [name]}
        parse(json.dumps({"audiences": [{"id": "a", "name": "A", "when": when}]}))
    when = {"field": "segment", "in": ["One-time Loyal"]}
    with pytest.raises(ValueError, match="unknown segment 'One-time Loyal'"):
        parse(json.dumps({"audiences": [{"id": "a", "name": "A", "when": when}]}))
    assert load(EXAMPLE).audiences  # the example set's names exist in both maps
    named = {s for a in json.loads(EXAMPLE.read_text())["audiences"]
             for s in json.dumps(a["when"]).split('"') if s in segments_of("classic")}  # fmt: skip
    assert named and named <= set(segments_of("repeat-aware"))


def test_the_state_codec_stores_the_one_time_names_as_codes():
    for name in segments_of("repeat-aware"):
        state = CustomerState("c", last_event_ms=T0, first_event_ms=T0, segment=name)
        assert state_codec.decode("c", b"1|" + state_codec.encode(state)).segment == name
    assert set(segments_of("repeat-aware")) <= set(state_codec.SEGMENT_CODES)

import itertools
import re
from pathlib import Path

import pytest

from online_models.rfm import (
    _GRID,
    _ONE_TIME,
    _REPEAT_GRID,
    SEGMENTS,
    RFMScorer,
    fm_score,
    segment_of,
    segments_of,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "segments.md"


def test_every_score_cell_maps_to_the_documented_segment():
    """Each of the 125 cells against the test oracle's own table (tests/reference.py)."""
    from tests.reference import _GRID as REFERENCE_GRID

    cells = list(itertools.product(range(1, 6), repeat=3))
    for r, f, m in cells:
        expected = REFERENCE_GRID[r][-(-(f + m) // 2) - 1]
        assert segment_of(r, f, m, segment_map="classic") == expected, (r, f, m)
    used = {segment_of(*cell, segment_map="classic") for cell in cells}
    assert used == set(segments_of("classic"))  # all eleven segments are reachable
    assert len(used) == 11


def test_repeat_aware_map_names_one_time_buyers_apart():
    """Each cell for one-time and repeat buyers against tests/reference.py's own tables: a
    one-time buyer gets a one-time name (by R alone), a repeat buyer never does."""
    from tests.reference import _REPEAT_GRID as REPEAT
    from tests.reference import ONE_TIME_TABLE

    cells = list(itertools.product(range(1, 6), repeat=3))
    one_time = {segment_of(*c, orders=1, segment_map="repeat-aware") for c in cells}
    repeat = {segment_of(*c, orders=o, segment_map="repeat-aware") for c in cells for o in (2, 9)}
    for r, f, m in cells:
        assert segment_of(r, f, m, orders=1, segment_map="repeat-aware") == ONE_TIME_TABLE[r]
        assert (
            segment_of(r, f, m, orders=2, segment_map="repeat-aware")
            == REPEAT[r][-(-(f + m) // 2) - 1]
        )
    assert one_time == {"New", "One-time Recent", "One-time Lapsed"}
    assert not one_time & repeat  # "At Risk", "Loyal", "New", ... each mean one kind of buyer
    assert one_time | repeat == set(SEGMENTS) == set(segments_of("repeat-aware"))


def test_the_default_scorer_uses_the_repeat_aware_map_and_keeps_it_with_new_edges():
    scorer = RFMScorer()
    assert scorer.segment(200.0, 1, 5000) == "One-time Lapsed"  # classic: At Risk
    assert scorer.segment(200.0, 3, 800) == "At Risk"
    classic = RFMScorer(segment_map="classic")
    assert classic.segment(200.0, 1, 5000) == "At Risk"
    moved = classic.with_edges({"recency_edges": (1, 2, 3, 400), "frequency_edges": (2, 3, 4, 5),
                                "monetary_edges": (1, 2, 3, 4)})  # fmt: skip
    assert moved.segment_map == "classic" and moved.recency_edges == (1, 2, 3, 400)
    with pytest.raises(ValueError, match="repeat-aware, classic"):
        RFMScorer(segment_map="modern")


@pytest.mark.parametrize("bad", [(0, 3, 3), (6, 1, 1), (3, 3, 9)])
def test_scores_outside_1_to_5_are_refused(bad):
    with pytest.raises(ValueError):
        segment_of(*bad, segment_map="classic")


def test_segment_of_has_no_map_of_its_own():
    """RFMScorer defaults to repeat-aware; segment_of must not quietly name by another."""
    with pytest.raises(TypeError, match="segment_map"):
        segment_of(2, 1, 5, orders=1)


def test_recency_score_never_improves_as_a_customer_goes_quiet():
    scorer = RFMScorer()
    scores = [scorer.score(days, 3, 200)[0] for days in range(0, 800)]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == 5 and scores[-1] == 1


def test_edges_are_inclusive_on_the_good_side():
    scorer = RFMScorer(recency_edges=(10, 20, 30, 40), frequency_edges=(2, 3, 4, 5))
    assert scorer.score(10, 1, 0)[0] == 5
    assert scorer.score(10.001, 1, 0)[0] == 4
    assert scorer.score(0, 2, 0)[1] == 2
    assert scorer.score(0, 5, 0)[1] == 5


def test_unsorted_edges_are_refused():
    with pytest.raises(ValueError, match="ascending"):
        RFMScorer(recency_edges=(30, 10, 60, 90))


def documented_tables() -> dict[str, dict]:
    """The tables of docs/segments.md by section: rows "R = r" or "one order"."""
    tables: dict[str, dict] = {}
    section = ""
    for line in DOCS.read_text().splitlines():
        if line.startswith("### "):
            section = line[4:].strip()
        match = re.match(r"\|\s*(R = \d|one order)\s*\|(.*)\|\s*$", line)
        if match:
            key = int(match.group(1)[-1]) if match.group(1).startswith("R") else "one order"
            cells = tuple(c.strip() for c in match.group(2).split("|"))
            tables.setdefault(section, {})[key] = cells
    return tables


def test_documented_segment_tables_are_the_code_tables():
    """docs/segments.md shows the grids users read; they must be the ones the code uses."""
    tables = documented_tables()
    assert tables["The classic map"] == _GRID
    repeat_aware = dict(tables["The repeat-aware map (the default)"])
    assert repeat_aware.pop("one order") == tuple(_ONE_TIME[r] for r in (5, 4, 3, 2, 1))
    assert repeat_aware == _REPEAT_GRID


def test_fm_rounds_half_up():
    assert [fm_score(f, m) for f, m in [(1, 1), (1, 2), (2, 3), (4, 5), (5, 5)]] == [1, 2, 3, 5, 5]

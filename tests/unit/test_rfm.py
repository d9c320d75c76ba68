import itertools
import re
from pathlib import Path

import pytest

from online_models.rfm import _GRID, SEGMENTS, RFMScorer, fm_score, segment_of

DOCS = Path(__file__).resolve().parents[2] / "docs" / "segments.md"


def test_every_score_cell_maps_to_the_documented_segment():
    """Each of the 125 cells against the test oracle's own table (tests/reference.py)."""
    from tests.reference import _GRID as REFERENCE_GRID

    cells = list(itertools.product(range(1, 6), repeat=3))
    for r, f, m in cells:
        assert segment_of(r, f, m) == REFERENCE_GRID[r][-(-(f + m) // 2) - 1], (r, f, m)
    used = {segment_of(*cell) for cell in cells}
    assert used == set(SEGMENTS)  # all eleven segments are reachable, none unnamed


@pytest.mark.parametrize("bad", [(0, 3, 3), (6, 1, 1), (3, 3, 9)])
def test_scores_outside_1_to_5_are_refused(bad):
    with pytest.raises(ValueError):
        segment_of(*bad)


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


def test_documented_segment_table_is_the_code_table():
    """docs/segments.md shows the grid users read; it must be the one the code uses."""
    rows = {}
    for line in DOCS.read_text().splitlines():
        match = re.match(r"\|\s*R = (\d)\s*\|(.*)\|\s*$", line)
        if match:
            rows[int(match.group(1))] = tuple(c.strip() for c in match.group(2).split("|"))
    assert rows == _GRID


def test_fm_rounds_half_up():
    assert [fm_score(f, m) for f, m in [(1, 1), (1, 2), (2, 3), (4, 5), (5, 5)]] == [1, 2, 3, 5, 5]

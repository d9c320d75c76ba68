"""RFM scores (1-5) and the named RFM segments.

Scores come from ascending bin edges: a value is scored by how many edges it
reaches. Recency is reversed (recent is good). Segments come from a complete,
non-overlapping grid over R and FM, where FM = round-half-up of (F + M) / 2, so
every one of the 125 (R, F, M) cells maps to exactly one segment (see
docs/segments.md for the table).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

SEGMENTS = (
    "Champions",
    "Loyal",
    "Potential Loyalists",
    "New",
    "Promising",
    "Need Attention",
    "About to Sleep",
    "At Risk",
    "Can't Lose Them",
    "Hibernating",
    "Lost",
)

# Rows: R = 5 .. 1; columns: FM = 1 .. 5.
_GRID = {
    5: ("New", "Potential Loyalists", "Potential Loyalists", "Champions", "Champions"),
    4: ("Promising", "Potential Loyalists", "Potential Loyalists", "Loyal", "Loyal"),
    3: ("About to Sleep", "About to Sleep", "Need Attention", "Loyal", "Loyal"),
    2: ("Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"),
    1: ("Lost", "Lost", "At Risk", "At Risk", "Can't Lose Them"),
}


def fm_score(f: int, m: int) -> int:
    """Combined frequency-monetary score: (F + M) / 2 rounded half up.

    >>> fm_score(4, 5), fm_score(1, 2), fm_score(3, 3)
    (5, 2, 3)
    """
    return (f + m + 1) // 2


def segment_of(r: int, f: int, m: int) -> str:
    """The named segment of an (R, F, M) score triple.

    >>> segment_of(5, 5, 5)
    'Champions'
    >>> segment_of(1, 1, 1)
    'Lost'
    >>> segment_of(2, 5, 5)
    "Can't Lose Them"
    """
    for score in (r, f, m):
        if not 1 <= score <= 5:
            raise ValueError(f"RFM scores are 1..5, got {(r, f, m)}")
    return _GRID[r][fm_score(f, m) - 1]


class RFMScorer:
    """Scores recency, frequency and monetary value on a 1-5 scale.

    Parameters
    ----------
    recency_edges
        Four ascending day counts; a recency of at most ``recency_edges[0]``
        days scores 5, above ``recency_edges[3]`` scores 1.
    frequency_edges
        Four ascending purchase counts; reaching ``frequency_edges[i]``
        purchases earns score ``i + 2``.
    monetary_edges
        Four ascending money amounts, scored like frequency.

    Examples
    --------
    >>> scorer = RFMScorer()
    >>> scorer.score(recency_days=3.0, frequency=9, monetary=2500)
    (5, 5, 5)
    >>> scorer.score(recency_days=400.0, frequency=1, monetary=20)
    (1, 1, 1)
    >>> scorer.segment(recency_days=10.0, frequency=1, monetary=20)
    'New'
    """

    def __init__(
        self,
        recency_edges: Sequence[float] = (30.0, 90.0, 180.0, 365.0),
        frequency_edges: Sequence[float] = (2, 3, 5, 8),
        monetary_edges: Sequence[float] = (100.0, 300.0, 750.0, 2000.0),
    ):
        for name, edges in (
            ("recency_edges", recency_edges),
            ("frequency_edges", frequency_edges),
            ("monetary_edges", monetary_edges),
        ):
            if len(edges) != 4 or list(edges) != sorted(edges):
                raise ValueError(f"{name} must be 4 ascending numbers, got {edges!r}")
        self.recency_edges = tuple(recency_edges)
        self.frequency_edges = tuple(frequency_edges)
        self.monetary_edges = tuple(monetary_edges)

    def score(self, recency_days: float, frequency: float, monetary: float) -> tuple[int, int, int]:
        # A recency exactly on an edge still earns the better score.
        r = 5 - sum(1 for edge in self.recency_edges if recency_days > edge)
        f = 1 + bisect_right(self.frequency_edges, frequency)
        m = 1 + bisect_right(self.monetary_edges, float(monetary))
        return r, f, m

    def segment(self, recency_days: float, frequency: float, monetary: float) -> str:
        return segment_of(*self.score(recency_days, frequency, monetary))

    def __repr__(self) -> str:
        return (
            f"RFMScorer(recency_edges={self.recency_edges}, "
            f"frequency_edges={self.frequency_edges}, monetary_edges={self.monetary_edges})"
        )

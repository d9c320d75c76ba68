"""Per-customer churn risk from a fitted BTYD model, and when it will cross.

Models are fitted in weeks (the unit of the BTYD literature); state times are
epoch milliseconds. ``risk_crossing_ms`` is the closed-form event time at which
a silent customer's churn risk reaches the threshold: P(alive) only falls with
silence, so that is the single time worth waking the customer up for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal  # noqa: F401  (the doctests)

import numpy as np

from online_models.churn import MODELS, BTYDModel, GammaGamma
from online_models.customer import MS_PER_DAY, CustomerState
from online_models.days import UTC_DAYS, Days

MS_PER_WEEK = 7 * MS_PER_DAY
MIN_SPEND_CUSTOMERS = 10  # repeat customers with spend > 0 that a Gamma-Gamma fit needs
# Times further out than this (after the moment they are counted from) are "never": None.
# A century outlives any customer relationship, and keeps every time a datetime (year <
# 10000) and an exact float in the due index.
HORIZON_WEEKS = 100 * 365.25 / 7
# A spend cell's prefix among the cells (streams.state.facts.spend_cell_of); the others
# are day cells.
SPEND_CELL = "gg:"
# risk_crossing_ms rounds the closed form up and then steps at most 1,000 ms either way to
# the exact millisecond: bounds computed from the closed form widen by this.
CROSSING_SLACK_MS = 2_000


def _later_ms(start_ms: int, weeks: float) -> int | None:
    """``start_ms`` plus ``weeks`` in ms, or None past HORIZON_WEEKS (inf and nan too)."""
    if not 0 <= weeks <= HORIZON_WEEKS:
        return None
    return start_ms + round(weeks * MS_PER_WEEK)


def _t_x_range(x, first_ms, last_ms):
    """(least, greatest) t_x in ms of a day cell's customers: 0 without a repeat day."""
    repeat = x > 0
    least = np.where(repeat, np.maximum(last_ms[0] - first_ms[1], 0), 0)
    return least, np.where(repeat, last_ms[1] - first_ms[0], 0)


def btyd_weeks(state: CustomerState, as_of_ms: int) -> tuple[int, float, float] | None:
    """(x, t_x, T) in weeks as of ``as_of_ms``; None before the first purchase."""
    summary = state.btyd_ms(as_of_ms)
    if summary is None:
        return None
    x, t_x, big_t = summary
    return x, t_x / MS_PER_WEEK, big_t / MS_PER_WEEK


def population(states, as_of_ms: int):
    """Arrays for fitting: BTYD (x, t_x, T) and Gamma-Gamma (x, mean repeat value)."""
    rows = [(btyd_weeks(s, as_of_ms), s) for s in states]
    rows = [(b, s) for b, s in rows if b is not None]
    x = np.array([b[0] for b, _ in rows], dtype=float)
    t_x = np.array([b[1] for b, _ in rows], dtype=float)
    big_t = np.array([b[2] for b, _ in rows], dtype=float)
    spend = np.array([float(s.repeat_value) / b[0] if b[0] > 0 else 0.0 for b, s in rows])
    return x, t_x, big_t, spend


@dataclass
class ChurnScorer:
    """A fitted churn model (and spend model), with the alert thresholds.

    Parameters
    ----------
    model
        A fitted BG/NBD or MBG/NBD model (weeks).
    spend
        A fitted Gamma-Gamma model, or None (then no CLV).
    threshold
        A churn-risk event fires when risk rises to at least this.
    rearm_below
        ...and may fire again only after risk has fallen below this.
    """

    model: BTYDModel
    spend: GammaGamma | None = None
    threshold: float = 0.7
    rearm_below: float = 0.5
    version: int = 0

    def risk(self, state: CustomerState, as_of_ms: int) -> float | None:
        """1 - P(alive) alone: what the hot path needs (no expectations computed)."""
        alive = self.p_alive(state, as_of_ms)
        return None if alive is None else 1.0 - alive

    def p_alive(self, state: CustomerState, as_of_ms: int) -> float | None:
        """P(alive) as :meth:`score` gives it (the same float); None before a purchase."""
        summary = btyd_weeks(state, as_of_ms)
        return None if summary is None else float(self.model.p_alive(*summary))

    def p_alive_each(self, states: list[CustomerState], as_of_ms: int) -> list[float | None]:
        """:meth:`p_alive` of each state in one array evaluation: the same floats (a
        ufunc gives an element the same result in an array as alone; a unit test holds
        it), at a fraction of the cost of one call each."""
        summaries = [btyd_weeks(state, as_of_ms) for state in states]
        rows = [s for s in summaries if s is not None]
        if not rows:
            return [None] * len(states)
        x, t_x, big_t = (np.array(column, dtype=float) for column in zip(*rows, strict=True))
        values = iter(self.model.p_alive(x, t_x, big_t).tolist())
        return [None if s is None else next(values) for s in summaries]

    def p_alive_bounds(self, x, first_ms, last_ms, as_of_ms: int):
        """Bounds of :meth:`p_alive` as of ``as_of_ms`` over every customer with ``x``
        repeat purchase days whose first and last purchase times lie in the given ranges:
        a whole day cell at once (streams.read.risk_ranking orders cells by them).

        Parameters
        ----------
        x
            Array of repeat purchase days (one per cell).
        first_ms, last_ms
            Pairs of arrays (least, greatest) bounding the first and the last purchase
            time (epoch ms) of the cell's customers.
        as_of_ms
            The moment P(alive) is taken at.

        Returns
        -------
        (lo, hi)
            Float arrays: no customer of the cell has a P(alive) below ``lo`` or above
            ``hi``.

        P(alive) falls as T grows and rises with t_x (the odds of having died grow as
        ``((alpha + T) / (alpha + t_x)) ** (r + x)``), so the corners of the box the
        cell gives (t_x, T) bound it; the bounds are widened by a relative 1e-9 against
        the floats' rounding.

        >>> from online_models.churn import BGNBD
        >>> m = BGNBD(); m.params = {"r": 0.24, "alpha": 4.4, "a": 0.79, "b": 2.4}
        >>> s = CustomerState("c1")
        >>> _ = s.apply_purchase(3 * MS_PER_DAY + 5, Decimal("9"), "o1")
        >>> _ = s.apply_purchase(40 * MS_PER_DAY + 7, Decimal("9"), "o2")
        >>> scorer = ChurnScorer(m)
        >>> day = lambda d: (np.array([d * MS_PER_DAY]), np.array([(d + 1) * MS_PER_DAY - 1]))
        >>> at = 90 * MS_PER_DAY
        >>> lo, hi = scorer.p_alive_bounds(np.array([1]), day(3), day(40), at)
        >>> bool(lo[0] <= scorer.p_alive(s, at) <= hi[0]), round(float(hi[0] - lo[0]), 3)
        (True, 0.011)
        """
        x = np.asarray(x, dtype=float)
        least_t_x, greatest_t_x = _t_x_range(x, first_ms, last_ms)
        least_t = np.maximum(as_of_ms - first_ms[1], least_t_x)
        greatest_t = np.maximum(as_of_ms - first_ms[0], greatest_t_x)
        lo = self.model.p_alive(x, least_t_x / MS_PER_WEEK, greatest_t / MS_PER_WEEK)
        hi = self.model.p_alive(x, greatest_t_x / MS_PER_WEEK, least_t / MS_PER_WEEK)
        return lo * (1 - 1e-9), np.minimum(hi * (1 + 1e-9), 1.0)

    def score(self, state: CustomerState, as_of_ms: int) -> dict | None:
        summary = btyd_weeks(state, as_of_ms)
        if summary is None:
            return None
        x, t_x, big_t = summary
        p_alive = float(self.model.p_alive(x, t_x, big_t))
        e30 = float(self.model.expected_purchases(30 / 7, x, t_x, big_t))
        e90 = float(self.model.expected_purchases(90 / 7, x, t_x, big_t))
        clv = None
        if self.spend is not None and self.spend.params is not None:
            mean_repeat = float(state.repeat_value) / x if x > 0 else 0.0
            spend = float(self.spend.expected_spend(x, mean_repeat))
            year = float(self.model.expected_purchases(365 / 7, x, t_x, big_t))
            clv = year * spend
            # null, never a wrong number: a spend model without a mean (stored before S9)
            clv = clv if math.isfinite(clv) and clv >= 0 else None
        return {
            "p_alive": p_alive,
            "churn_risk": 1.0 - p_alive,
            "expected_purchases_30d": e30,
            "expected_purchases_90d": e90,
            "predicted_clv_365d": clv,
            "expected_next_purchase_ms": self._next_purchase_ms(x, big_t, as_of_ms),
        }

    def _next_purchase_ms(self, x: int, big_t: float, as_of_ms: int) -> int | None:
        # Alive: lambda ~ Gamma(r + x, alpha + T), so E[1/lambda] = (alpha + T) / (r + x - 1).
        r, alpha = self.model.params["r"], self.model.params["alpha"]
        if r + x <= 1:
            return None
        with np.errstate(over="ignore", divide="ignore"):
            weeks = (alpha + big_t) / (r + x - 1)
        return _later_ms(as_of_ms, weeks)

    def risk_crossing_ms(self, state: CustomerState, threshold: float | None = None) -> int | None:
        """Event time at which churn risk reaches ``threshold`` (the alert's unless given)
        if the customer stays silent; None if it never does, or not within
        ``HORIZON_WEEKS`` of the last purchase."""
        threshold = self.threshold if threshold is None else threshold
        if not 0 < threshold < 1:
            return None  # risk is always >= 0 and never reaches 1
        summary = state.btyd_ms(state.first_purchase_ms)
        if summary is None:
            return None
        p = self.model.params
        x, t_x_ms, _ = summary
        if self.model.name == "bgnbd":
            if x == 0:
                return None  # BG/NBD: a customer with no repeat purchase never "dies"
            log_k = math.log(p["a"]) - math.log(p["b"] + x - 1)
        else:
            log_k = math.log(p["a"]) - math.log(p["b"] + x)
        t_x = t_x_ms / MS_PER_WEEK
        # risk >= threshold  <=>  k * ((alpha + T) / (alpha + t_x)) ** (r + x) >= odds, so
        # T - t_x = (alpha + t_x) * (exp(log(odds / k) / (r + x)) - 1). In logs: with a tiny
        # r + x the power overflows a float long before the time stops being "never".
        growth = (math.log(threshold) - math.log1p(-threshold) - log_k) / (p["r"] + x)
        gap = (p["alpha"] + t_x) * math.expm1(min(growth, 700.0)) if growth > 0 else 0.0
        if not gap <= HORIZON_WEEKS:  # silent for a century after the last purchase: never
            return None
        crossing = state.first_purchase_ms + math.ceil((t_x + gap) * MS_PER_WEEK)
        # The closed form is exact; floats are not. Step to the first millisecond at which the
        # computed risk really is >= threshold, so the alert's time and its risk agree: back
        # while the millisecond before already is (the estimate can land late), then on.
        floor = state.last_purchase_ms
        for _ in range(1000):
            if crossing <= floor or self.risk(state, crossing - 1) < threshold:
                break
            crossing -= 1
        for _ in range(1000):
            if self.risk(state, crossing) >= threshold:
                break
            crossing += 1
        return crossing

    def crossing_bounds_ms(self, x, first_ms, last_ms, threshold: float | None = None):
        """Bounds of :meth:`risk_crossing_ms` over every customer with ``x`` repeat purchase
        days whose first and last purchase times lie in the given ranges: what a new model
        may move, for a whole day cell at once (streams.state.due_cells).

        Parameters
        ----------
        x
            Array of repeat purchase days (one per cell).
        first_ms, last_ms
            Pairs of arrays (least, greatest) bounding the first and the last purchase
            time (epoch ms) of the cell's customers.
        threshold
            The risk reached (the alert's unless given).

        Returns
        -------
        (lo, hi)
            Float arrays (ms): no customer of the cell crosses before ``lo`` (inf: none
            ever does); none crosses after ``hi`` (inf: one may cross later, or never).

        The crossing, ``last purchase + (alpha + t_x) * expm1(growth)`` weeks (the first
        purchase with no repeat day), grows with the last purchase and with t_x, so the
        cell's corners bound it; CROSSING_SLACK_MS covers the rounding and the step to
        the exact millisecond :meth:`risk_crossing_ms` makes.

        >>> from online_models.churn import BGNBD
        >>> m = BGNBD(); m.params = {"r": 0.24, "alpha": 4.4, "a": 0.79, "b": 2.4}
        >>> s = CustomerState("c1")
        >>> _ = s.apply_purchase(3 * MS_PER_DAY + 5, Decimal("9"), "o1")
        >>> _ = s.apply_purchase(40 * MS_PER_DAY + 7, Decimal("9"), "o2")
        >>> scorer = ChurnScorer(m)
        >>> day = lambda d: (np.array([d * MS_PER_DAY]), np.array([(d + 1) * MS_PER_DAY - 1]))
        >>> lo, hi = scorer.crossing_bounds_ms(np.array([1]), day(3), day(40))
        >>> spread = round(float(hi[0] - lo[0]) / MS_PER_DAY, 1)
        >>> bool(lo[0] <= scorer.risk_crossing_ms(s) <= hi[0]), spread
        (True, 8.7)
        """
        threshold = self.threshold if threshold is None else threshold
        x = np.asarray(x, dtype=float)
        if not 0 < threshold < 1:
            return np.full(x.shape, np.inf), np.full(x.shape, np.inf)
        p = self.model.params
        bgnbd = self.model.name == "bgnbd"
        repeat = x > 0
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            log_k = math.log(p["a"]) - np.log(p["b"] + (x - 1 if bgnbd else x))
            growth = (math.log(threshold) - math.log1p(-threshold) - log_k) / (p["r"] + x)
            factor = np.where(growth > 0, np.expm1(np.minimum(growth, 700.0)), 0.0)

            def crossing(base_ms, t_x_ms):
                gap = (p["alpha"] + t_x_ms / MS_PER_WEEK) * factor
                never = ~(gap <= HORIZON_WEEKS) | (bgnbd & ~repeat)  # nan too
                return np.where(never, np.inf, base_ms + gap * MS_PER_WEEK)

            least_t_x, greatest_t_x = _t_x_range(x, first_ms, last_ms)
            lo = crossing(np.where(repeat, last_ms[0], first_ms[0]), least_t_x)
            hi = crossing(np.where(repeat, last_ms[1], first_ms[1]), greatest_t_x)
        return lo - CROSSING_SLACK_MS, hi + CROSSING_SLACK_MS

    def to_dict(self) -> dict:
        return {
            "churn": self.model.to_dict(),
            "spend": self.spend.to_dict() if self.spend is not None else None,
            "threshold": self.threshold,
            "rearm_below": self.rearm_below,
        }

    @classmethod
    def from_dict(cls, data: dict, version: int = 0) -> ChurnScorer:
        model = MODELS[data["churn"]["model"]].from_dict(data["churn"])
        spend = GammaGamma.from_dict(data["spend"]) if data.get("spend") else None
        return cls(model, spend, data["threshold"], data["rearm_below"], version)


@dataclass(frozen=True)
class FitHealth:
    """What a refit may put in force.

    Attributes
    ----------
    churn_error
        Why the churn model must not be put in force (None: it may). The model in force
        stays; the reason is recorded for the operator.
    spend_error
        Why the spend model must not be used (None: it may). The churn model is put in
        force without it: CLV is null until a later refit's spend fit converges.
    """

    churn_error: str | None
    spend_error: str | None


def fit_health(scorer: ChurnScorer) -> FitHealth:
    """Judge a fresh fit (from :func:`fit`): a model that did not converge (optimiser
    failure, an optimum on a parameter bound, a non-finite likelihood) is not a
    maximum-likelihood answer, and its numbers would drive alerts, audiences and CLV."""
    churn_error = None
    if not scorer.model.converged:
        why = getattr(scorer.model, "failure", None) or "it did not converge"
        churn_error = f"{scorer.model.name} fit not put in force: {why}"
    spend, spend_error = scorer.spend, None
    if spend is None:
        spend_error = (f"no Gamma-Gamma fit (CLV null): fewer than {MIN_SPEND_CUSTOMERS} "
                       "repeat customers with spend > 0")  # fmt: skip
    elif not (spend.converged and spend.mean_defined()):
        why = getattr(spend, "failure", None) or "it did not converge"
        spend_error = f"Gamma-Gamma fit not used (CLV null): {why}"
    return FitHealth(churn_error, spend_error)


# A refit whose every parameter is within this relative distance of the model in force's
# is that model: far below the sample's own error (docs/segments.md: ~1-2% at 200k) and at
# the optimiser's own noise, so publishing it would move due times for nothing.
SAME_FIT_WITHIN = 1e-4


def same_fit(fresh: ChurnScorer, in_force: ChurnScorer, within: float = SAME_FIT_WITHIN) -> bool:
    """Whether a fresh fit is the model in force: the same model, thresholds and spend model
    (both or neither), every parameter within a relative ``within``.

    >>> from online_models.churn import ModifiedBGNBD
    >>> m = ModifiedBGNBD(); m.params = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.5}
    >>> n = ModifiedBGNBD(); n.params = {**m.params, "b": 2.5 * (1 + 5e-5)}
    >>> same_fit(ChurnScorer(n), ChurnScorer(m)), same_fit(ChurnScorer(n), ChurnScorer(m), 1e-5)
    (True, False)
    """
    if (fresh.model.name, fresh.threshold, fresh.rearm_below) != (
        in_force.model.name,
        in_force.threshold,
        in_force.rearm_below,
    ):
        return False
    pairs = [(fresh.model.params, in_force.model.params)]
    if (fresh.spend is None) != (in_force.spend is None):
        return False
    if fresh.spend is not None:
        pairs.append((fresh.spend.params, in_force.spend.params))
    for new, old in pairs:
        if new is None or old is None or new.keys() != old.keys():
            return False
        if any(not abs(new[k] - old[k]) <= within * abs(old[k]) for k in old):
            return False
    return True


def fit(
    states, as_of_ms: int, model_name: str = "mbgnbd", threshold: float = 0.7,
    rearm_below: float = 0.5,
) -> ChurnScorer:  # fmt: skip
    """Fit the churn model (and Gamma-Gamma where possible) on a population as of a time."""
    x, t_x, big_t, spend = population(states, as_of_ms)
    _require_customers(len(x))
    model = MODELS[model_name]().fit(x, t_x, big_t)
    return ChurnScorer(model, _fit_spend(x, spend), threshold, rearm_below)


def _require_customers(n: float) -> None:
    if n < 10:
        raise ValueError(f"need at least 10 customers with a purchase to fit, have {n:.0f}")


def _fit_spend(x, spend, weights=None) -> GammaGamma | None:
    """Gamma-Gamma on (x, mean repeat value), each row ``weights`` customers (1 each by
    default); None with too few repeat customers."""
    weights = np.ones(len(x)) if weights is None else weights
    if np.sum(weights[(x > 0) & (spend > 0)]) < MIN_SPEND_CUSTOMERS:
        return None
    return GammaGamma().fit(x, spend, weights)


def cell_rows(cells: dict[str, int], as_of_ms: int, days: Days = UTC_DAYS):
    """A population kept as day cells (``<x>:<first purchase day>:<last purchase day>`` ->
    customers, day numbers of ``days``: streams.state.facts.cell_of) as weighted BTYD rows
    in weeks: (x, t_x, T, weights).

    x is exact. t_x is the time between the starts of the first and last purchase days
    (off by under a day: the purchases' times of day are not kept); T runs from the middle
    of the first purchase day to ``as_of_ms`` (off by at most half a day), never below
    t_x, as CustomerState.btyd_ms. Exact when every purchase falls at noon.

    >>> x, t_x, big_t, w = cell_rows({"2:0:14": 3, "0:7:7": 1}, 21 * MS_PER_DAY)
    >>> x.tolist(), t_x.tolist(), (big_t * 7).tolist(), w.tolist()
    ([2.0, 0.0], [2.0, 0.0], [20.5, 13.5], [3.0, 1.0])
    """
    keys = [name.split(":") for name in cells]
    x = np.array([int(k[0]) for k in keys], dtype=float)
    first = np.array([int(k[1]) for k in keys], dtype=np.int64)
    last = np.array([int(k[2]) for k in keys], dtype=np.int64)
    # a calendar's day starts once per distinct day (a few hundred), not per cell
    wanted = np.unique(np.concatenate([first, first + 1, last]))
    start = dict(zip(wanted.tolist(), (days.start_ms(int(d)) for d in wanted), strict=True))
    start_of = np.vectorize(start.__getitem__, otypes=[np.int64])
    if len(keys):
        first_ms, next_ms, last_ms = start_of(first), start_of(first + 1), start_of(last)
    else:
        first_ms = next_ms = last_ms = np.zeros(0, dtype=np.int64)
    t_x = np.where(x > 0, last_ms - first_ms, 0)
    big_t = np.maximum(as_of_ms - (first_ms + next_ms) // 2, t_x)
    weights = np.array(list(cells.values()), dtype=float)
    return x, t_x / MS_PER_WEEK, big_t / MS_PER_WEEK, weights


def split_cells(cells: dict[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """(the day cells, the spend cells) of the cells as stored together.

    >>> split_cells({"1:3:7": 2, "gg:1:12e0": 1})
    ({'1:3:7': 2}, {'gg:1:12e0': 1})
    """
    day = {name: n for name, n in cells.items() if not name.startswith(SPEND_CELL)}
    spend = {name: n for name, n in cells.items() if name.startswith(SPEND_CELL)}
    return day, spend


def spend_cell_rows(cells: dict[str, int]):
    """Spend cells (``gg:<x>:<mean repeat value, 3 significant digits>`` -> customers:
    streams.state.facts.spend_cell_of) as weighted Gamma-Gamma rows (x, m, weights); the
    mean is within 0.5% of each customer's own.

    >>> x, m, w = spend_cell_rows({"gg:2:453e-1": 3, "gg:1:1e2": 1})
    >>> x.tolist(), m.tolist(), w.tolist()
    ([2.0, 1.0], [45.3, 100.0], [3.0, 1.0])
    """
    parts = [name[len(SPEND_CELL) :].split(":") for name in cells]
    x = np.array([int(p[0]) for p in parts], dtype=float)
    m = np.array([float(p[1]) for p in parts], dtype=float)
    return x, m, np.array(list(cells.values()), dtype=float)


def _refuse_negative(cells: dict[str, int], kind: str) -> None:
    """A cell below 0 is named: only a hand-edited or half-repaired cells hash gets there."""
    bad = next((name for name, n in cells.items() if n < 0), None)
    if bad is not None:
        raise ValueError(f"{kind} cell {bad} holds {cells[bad]} customers (`rtba verify`)")


def fit_on_cells(
    cells: dict[str, int], as_of_ms: int, spend_states=None, model_name: str = "mbgnbd",
    threshold: float = 0.7, rearm_below: float = 0.5, days: Days = UTC_DAYS,
) -> ChurnScorer:  # fmt: skip
    """Fit the churn model on everyone, kept as day cells (:func:`cell_rows`: exact to the
    day, in time bounded by the number of cells), and Gamma-Gamma on the spend cells
    (:func:`spend_cell_rows`: each mean within 0.5%), or on ``spend_states`` when given
    (a sample, for a namespace whose spend cells are not whole)."""
    day_cells, spend_cells = split_cells(cells)
    _refuse_negative(day_cells, "day")
    x, t_x, big_t, weights = cell_rows(day_cells, as_of_ms, days)
    _require_customers(float(weights.sum()))
    model = MODELS[model_name]().fit(x, t_x, big_t, weights)
    if spend_states is None:
        _refuse_negative(spend_cells, "spend")
        spend = _fit_spend(*spend_cell_rows(spend_cells))
    else:
        sx, _, _, mean_spend = population(spend_states, as_of_ms)
        spend = _fit_spend(sx, mean_spend)
    return ChurnScorer(model, spend, threshold, rearm_below)

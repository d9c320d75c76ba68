"""Independent reference values for every number rtba publishes from its churn and spend
models, written from the papers, sharing no code with online_models/ or streams/.

Units are the papers': (x, t_x, T) and horizons in weeks. Sources:

* BG/NBD: Fader, Hardie & Lee (2005), "Counting your customers the easy way", eq. (10)
  for E[X(t) | x, t_x, T] and the P(alive) that divides it;
* MBG/NBD: Batislam, Denizel & Filiztekin (2007), the same with drop-out possible at the
  first purchase (a / (b + x) for a / (b + x - 1), 2F1(r + x, b + x + 1; a + b + x; z));
* Gamma-Gamma: Fader, Hardie & Lee (2005), "RFM and CLV", eq. (5), written as the paper
  writes it: a weighted average of the population mean and the customer's own mean;
* the expected time to the next purchase of a customer who is alive: the Gamma(r + x,
  alpha + T) posterior of the purchase rate lambda gives E[1 / lambda] =
  (alpha + T) / (r + x - 1).

Each is computed in plain floats (math) with scipy's hypergeometric function; parameters
here are chosen where the closed forms are well-conditioned (a != 1, moderate r, alpha).
"""

from __future__ import annotations

from scipy.special import hyp2f1

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS


def summary_weeks(purchase_ms: list[int], now_ms: int) -> tuple[int, float, float]:
    """(x, t_x, T) in weeks from a list of purchase times: x counts the distinct UTC days
    after the first purchase's day; t_x runs from the first purchase to the last purchase
    (0 when all fall on one day); T from the first purchase to now."""
    days = sorted({t // DAY_MS for t in purchase_ms})
    first, last = min(purchase_ms), max(purchase_ms)
    x = len(days) - 1
    t_x = (last - first) / WEEK_MS if x else 0.0
    return x, t_x, max((now_ms - first) / WEEK_MS, t_x)


def death_odds(model: str, params: dict, x: int, t_x: float, big_t: float) -> float:
    """Odds of having dropped out against being alive, given (x, t_x, T)."""
    r, alpha, a, b = params["r"], params["alpha"], params["a"], params["b"]
    if model == "bgnbd":
        if x == 0:
            return 0.0  # BG/NBD: no drop-out before the first repeat purchase
        head = a / (b + x - 1)
    else:
        head = a / (b + x)
    return head * ((alpha + big_t) / (alpha + t_x)) ** (r + x)


def p_alive(model: str, params: dict, x: int, t_x: float, big_t: float) -> float:
    return 1.0 / (1.0 + death_odds(model, params, x, t_x, big_t))


def expected_purchases(model: str, params: dict, t: float, x: int, t_x: float,
                       big_t: float) -> float:  # fmt: skip
    """E[X(T, T + t] | x, t_x, T], the published hypergeometric closed forms."""
    r, alpha, a, b = params["r"], params["alpha"], params["a"], params["b"]
    z = t / (alpha + big_t + t)
    decay = ((alpha + big_t) / (alpha + big_t + t)) ** (r + x)
    if model == "bgnbd":
        head = (a + b + x - 1) / (a - 1)
        tail = 1 - decay * hyp2f1(r + x, b + x, a + b + x - 1, z)
    else:
        head = (a + b + x) / (a - 1)
        tail = 1 - decay * hyp2f1(r + x, b + x + 1, a + b + x, z)
    return head * tail * p_alive(model, params, x, t_x, big_t)


def next_purchase_weeks(params: dict, x: int, big_t: float) -> float | None:
    """E[1 / lambda | alive, x, T]: weeks from now to the next purchase (None: infinite)."""
    shape = params["r"] + x
    return None if shape <= 1 else (params["alpha"] + big_t) / (shape - 1)


def expected_spend(spend_params: dict, x: int, mean_value: float) -> float:
    """E[M | x, mean repeat value] = weight * population mean + (1 - weight) * own mean,
    with weight (q - 1) / (p x + q - 1) (needs q > 1)."""
    p, q, gamma = spend_params["p"], spend_params["q"], spend_params["gamma"]
    population_mean = p * gamma / (q - 1)
    weight = (q - 1) / (p * x + q - 1)
    return weight * population_mean + (1 - weight) * mean_value


def clv_365d(model: str, params: dict, spend_params: dict, x: int, t_x: float, big_t: float,
             mean_value: float) -> float:  # fmt: skip
    """A year's expected purchases times the expected spend per purchase, undiscounted."""
    year = expected_purchases(model, params, 365 / 7, x, t_x, big_t)
    return year * expected_spend(spend_params, x, mean_value)


def reference_crossing(model: str, params: dict, x: int, first: int, last: int,
                       level: float) -> int | None:  # fmt: skip
    """The first millisecond (not before the last purchase) at which a silent customer's
    risk is at least ``level``; None when not within a century of its last purchase."""
    t_x = (last - first) / WEEK_MS if x > 0 else 0.0
    base = last if x > 0 else first

    def at_risk(t: int) -> bool:
        return 1.0 - p_alive(model, params, x, t_x, (t - first) / WEEK_MS) >= level

    if at_risk(base):
        return base
    hi = base + round(100 * 365.25 * DAY_MS)
    if not at_risk(hi):
        return None
    lo = base  # not at risk; hi at risk
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if at_risk(mid) else (mid, hi)
    return hi

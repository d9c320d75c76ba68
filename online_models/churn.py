"""Buy-till-you-die churn models fitted by maximum likelihood.

* :class:`BGNBD` — BG/NBD (Fader, Hardie & Lee 2005): purchases at rate
  lambda ~ Gamma(r, alpha) while alive; after each repeat purchase the customer
  drops out with probability p ~ Beta(a, b).
* :class:`ModifiedBGNBD` — MBG/NBD (Batislam, Denizel & Filiztekin 2007): a
  customer may also drop out right after the first purchase, so one-time
  buyers are not "alive forever".
* :class:`GammaGamma` — spend per transaction (Fader, Hardie & Lee 2005, "RFM
  and CLV"), fitted on repeat customers' mean repeat-transaction values.

Inputs are the BTYD summary per customer: ``x`` repeat purchase days, ``t_x``
time of the last purchase and ``T`` age, both since the first purchase, in one
time unit (rtba fits in weeks). Parameters are fitted on the log scale with
L-BFGS-B, from several starting points, keeping the best optimum.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> truth = dict(r=0.5, alpha=4.0, a=0.8, b=2.5)
>>> x, t_x, T = BGNBD.simulate(truth, T=rng.uniform(20, 40, 3000), seed=1)
>>> model = BGNBD().fit(x, t_x, T)
>>> round(model.params["r"], 1), model.converged
(0.5, True)
>>> float(model.p_alive(0, 0.0, 30.0))
1.0
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy.linalg import eigh_tridiagonal
from scipy.optimize import minimize
from scipy.special import gammaln

_STARTS = ((1.0, 1.0, 1.0, 1.0), (0.3, 5.0, 0.8, 2.5), (2.0, 20.0, 0.5, 5.0))
_NODES = 48


@functools.lru_cache(maxsize=4096)
def _jacobi(b: float, a: float) -> tuple[np.ndarray, np.ndarray]:
    # Nodes depend on (a, b + x) only: customers share them, and computing them dominates.
    return gauss_jacobi(_NODES, b - 1, a - 1)


def gauss_jacobi(n: int, alpha: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights (summing to 1) of the n-point Gauss-Jacobi rule for the weight
    (1 - u)^alpha (1 + u)^beta on [-1, 1], by Golub-Welsch from the three-term recurrence.

    Hand-written because scipy's ``roots_jacobi`` scales its weights by
    2^(alpha + beta + 1) B(alpha + 1, beta + 1), which overflows to inf (and the
    expectation to nan) once alpha + beta passes ~1,020 (a fitted Beta with b ~ 1,000);
    normalised weights need no such factor.

    >>> u, w = gauss_jacobi(5, 0.0, 0.0)  # Gauss-Legendre
    >>> bool(abs(w.sum() - 1) < 1e-12), bool(abs(np.sum(w * u**2) - 1 / 3) < 1e-12)
    (True, True)
    >>> u, w = gauss_jacobi(48, 1083.0, -0.99998)
    >>> bool(np.all(np.isfinite(w)))
    True
    """
    k = np.arange(1, n, dtype=float)
    s = 2 * k + alpha + beta
    diagonal = np.empty(n)
    diagonal[0] = (beta - alpha) / (alpha + beta + 2)
    diagonal[1:] = (beta - alpha) * (beta + alpha) / (s * (s + 2))
    off = np.empty(n - 1)
    if n > 1:  # the k = 1 term with its (alpha + beta + 1) factors cancelled
        off[0] = 4 * (1 + alpha) * (1 + beta) / ((2 + alpha + beta) ** 2 * (3 + alpha + beta))
        j, t = k[1:], s[1:]
        off[1:] = 4 * j * (j + alpha) * (j + beta) * (j + alpha + beta) / (t**2 * (t + 1) * (t - 1))
    nodes, vectors = eigh_tridiagonal(diagonal, np.sqrt(off))
    return nodes, vectors[0] ** 2


def expected_while_alive(t: float, r, alpha, a, b):
    """E[purchases in the next ``t``] for a customer alive now, with lambda ~ Gamma(r, alpha)
    and drop-out chance p ~ Beta(a, b) after each purchase.

    Given lambda and p the expectation is (1 - exp(-lambda p t)) / p; averaging over lambda
    gives (1 - (alpha / (alpha + p t)) ** r) / p, a smooth bounded function of p, which is
    averaged over the Beta by Gauss-Jacobi quadrature. This stays finite where the
    hypergeometric closed form overflows (large r and alpha: near-homogeneous rates).
    """
    r, alpha, a, b = np.broadcast_arrays(*_arrays(r, alpha, a, b))
    out = np.empty(r.shape)
    for idx in np.ndindex(r.shape):
        # weight (1 - u)^(b - 1) (1 + u)^(a - 1) on [-1, 1], i.e. p = (1 + u) / 2 ~ Beta(a, b)
        u, w = _jacobi(float(b[idx]), float(a[idx]))
        p = (1 + u) / 2
        g = -np.expm1(r[idx] * np.log1p(-p * t / (alpha[idx] + p * t))) / p
        out[idx] = np.sum(w * g) / np.sum(w)
    return out if out.ndim else out[()]


def _arrays(*columns):
    return [np.asarray(c, dtype=float) for c in columns]


class _Column:
    """A column of rows as its distinct values and each row's index into them: a term of
    the likelihood that depends on one column alone is computed once per distinct value
    and gathered (day cells: 235k rows over 90 values of x and ~550 of t_x and of T).
    The gathered values are the ones computed row by row, so the sum is the same.

    >>> col = _Column(np.array([2.0, 0.0, 2.0]))
    >>> col.per(lambda v: v + 1).tolist(), len(col.values)
    ([3.0, 1.0, 3.0], 2)
    """

    def __init__(self, rows):
        self.values, self.index = np.unique(rows, return_inverse=True)
        self.index = self.index.ravel()

    def per(self, term):
        """``term`` of each row's value."""
        return np.take(term(self.values), self.index)


class _Rows:
    """A column used as it is (one likelihood evaluation: nothing to share)."""

    def __init__(self, rows):
        self.values = rows

    def per(self, term):
        return term(self.values)


def _weighted_median(values, weights) -> float:
    """The median of ``values``, each counted ``weights`` times (np.median's when they are
    all 1).

    >>> _weighted_median([3.0, 1.0, 2.0], [1, 1, 1]), _weighted_median([1.0, 4.0], [1, 1])
    (2.0, 2.5)
    >>> _weighted_median([1.0, 4.0, 9.0], [1, 5, 1])
    4.0
    """
    order = np.argsort(values, kind="stable")
    values, cumulative = np.asarray(values)[order], np.cumsum(np.asarray(weights)[order])
    half = cumulative[-1] / 2  # the middle row(s): the first past half, or the two around it
    low = values[np.searchsorted(cumulative, half, side="left")]
    high = values[np.searchsorted(cumulative, half, side="right")]
    return float((low + high) / 2)


def _maximise(mean_log_likelihood, starts, penalizer: float):
    """Maximum likelihood over positive parameters: L-BFGS-B on their logs, from each start,
    keeping the best optimum (these likelihoods have flat ridges and local optima)."""

    def objective(log_params):
        params = np.exp(log_params)
        value = -(mean_log_likelihood(params) - penalizer * np.sum(params**2))
        return value if np.isfinite(value) else 1e12

    best = None
    for start in starts:
        res = minimize(objective, np.log(start), method="L-BFGS-B", bounds=[_BOUNDS] * len(start))
        if best is None or res.fun < best.fun:
            best = res
    return best


_BOUNDS = (-12.0, 12.0)  # log-parameters: e^-12 .. e^12
# Gamma-Gamma's q - 1 below this is the constraint q > 1 binding, not an optimum: the mean
# spend p gamma / (q - 1) would be over 1,000 times the spend scale. The optimiser stops short
# of the box bound there, since the gradient in log(q - 1) vanishes as q - 1 -> 0.
Q_EDGE = 1e-3


# a partner on its log-scale above this runs off with the parameter on the upper bound
_LIMIT_PARTNER = 6.0
_PAIRS = {"r": "alpha", "alpha": "r", "a": "b", "b": "a"}


def _on_bound(log_params) -> bool:
    """An optimum at a box bound is the box's answer, not the likelihood's."""
    return bool(np.any(np.abs(np.abs(np.asarray(log_params)) - _BOUNDS[1]) < 1e-3))


def _failure(best, names, log_likelihood: float, pairs: dict[str, str] | None = None) -> str | None:
    """Why an optimum is not a maximum-likelihood fit (None: it is).

    ``pairs`` names, for the BTYD models, the shape and scale that may run off to
    infinity together: r and alpha (every customer buys at the rate r / alpha) or a and b
    (every customer drops out with probability a / (a + b)). That is the likelihood's own
    answer, a degenerate limit the predictions reach through the ratio; an optimum there is
    a fit. Anything else on a box bound is the box's answer, not the likelihood's: a
    parameter run to e^-12 (a = 0: no drop-out, b = 0: all drop out) moves every prediction
    with the bound.
    """
    if not np.isfinite(log_likelihood) or not np.all(np.isfinite(best.x)):
        return "the likelihood is not finite at the optimum"
    logs = dict(zip(names, np.asarray(best.x, dtype=float), strict=True))
    low = [n for n, v in logs.items() if v <= _BOUNDS[0] + 1e-3]
    limit = set() if pairs is None else {n for n in logs if logs[pairs[n]] >= _LIMIT_PARTNER}
    high = [n for n, v in logs.items() if v >= _BOUNDS[1] - 1e-3 and n not in limit]
    if low or high:
        hit = [f"{n} at e^{_BOUNDS[0]:g}" for n in low] + [f"{n} at e^{_BOUNDS[1]:g}" for n in high]
        return f"the optimum is on a parameter bound ({', '.join(hit)})"
    if not best.success:
        return f"the optimiser stopped: {best.message}"
    return None


class _FittedModel:
    """Parameters, fit figures and their dict form, shared by the models here."""

    name = ""
    param_names: tuple[str, ...] = ()

    def __init__(self, penalizer: float = 0.0):
        self.penalizer = penalizer
        self.params: dict[str, float] | None = None
        self.log_likelihood: float | None = None
        self.customers = 0
        self.converged = False
        self.failure: str | None = None  # why the fit did not converge, for the operator

    def _store_fit(self, best, log_likelihood: float, customers: int) -> None:
        self.params = dict(zip(self.param_names, map(float, np.exp(best.x)), strict=True))
        self.log_likelihood = float(log_likelihood)
        self.customers = int(customers)
        pairs = _PAIRS if isinstance(self, BTYDModel) else None
        self.failure = _failure(best, self.param_names, self.log_likelihood, pairs)
        self.converged = self.failure is None

    def to_dict(self) -> dict:
        return {
            "model": self.name,
            "params": self.params,
            "log_likelihood": self.log_likelihood,
            "customers": self.customers,
            "converged": self.converged,
        }

    @classmethod
    def from_dict(cls, data: dict):
        model = cls()
        model.params = {k: float(v) for k, v in data["params"].items()}
        model.log_likelihood = data.get("log_likelihood")
        model.customers = data.get("customers", 0)
        model.converged = data.get("converged", True)
        return model


class BTYDModel(_FittedModel):
    """Shared fitting machinery of the BG/NBD family."""

    param_names = ("r", "alpha", "a", "b")

    def __init__(self, penalizer: float = 0.0, seed: int = 0):
        super().__init__(penalizer)
        self.seed = seed

    # subclasses: per-customer log-likelihood of (x, t_x, T) under params
    @staticmethod
    def _ll(r, alpha, a, b, x, t_x, T):  # pragma: no cover - abstract
        raise NotImplementedError

    def log_likelihood_of(self, params: dict, x, t_x, T) -> float:
        x, t_x, T = (_Rows(c) for c in _arrays(x, t_x, T))
        return float(np.sum(self._ll(*(params[n] for n in self.param_names), x, t_x, T)))

    def fit(self, x, t_x, T, weights=None) -> BTYDModel:
        """Maximum likelihood on the rows (x, t_x, T), each counted ``weights`` times (1
        each by default): a weighted fit is the fit on its rows repeated, so a population
        kept as counts per cell (streams.state.facts' day cells) fits in time bounded by
        its cells, not its customers."""
        x, t_x, T = _arrays(x, t_x, T)
        weights = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=float)
        keep = weights != 0
        x, t_x, T, weights = x[keep], t_x[keep], T[keep], weights[keep]
        if len(x) == 0:
            raise ValueError("cannot fit on no customers")
        if np.any(x < 0) or np.any(t_x < 0) or np.any(T < t_x) or np.any((x == 0) & (t_x > 0)):
            raise ValueError("need x >= 0, 0 <= t_x <= T, and t_x = 0 where x = 0")
        if np.any(weights < 0):
            raise ValueError("need weights >= 0")
        # Aggregate identical rows: the likelihood is a sum, and CDNOW-like data repeats a lot.
        rows, inverse = np.unique(np.column_stack([x, t_x, T]), axis=0, return_inverse=True)
        counts = np.bincount(inverse.ravel(), weights=weights)
        ux, ut_x, uT = (_Column(c) for c in rows.T)

        def mean_ll(params):
            return np.sum(counts * self._ll(*params, ux, ut_x, uT)) / counts.sum()

        best = _maximise(mean_ll, _STARTS, self.penalizer)
        self._store_fit(best, mean_ll(np.exp(best.x)) * counts.sum(), counts.sum())
        return self

    def _require_fit(self):
        if self.params is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted")
        p = self.params
        return p["r"], p["alpha"], p["a"], p["b"]


class BGNBD(BTYDModel):
    """The BG/NBD model."""

    name = "bgnbd"

    @staticmethod
    def _ll(r, alpha, a, b, x, t_x, T):
        """Per-row log-likelihood; x, t_x, T are _Column or _Rows."""
        a1 = x.per(lambda v: gammaln(r + v) - gammaln(r)) + r * np.log(alpha)
        a2 = x.per(lambda v: gammaln(a + b) + gammaln(b + v) - gammaln(b) - gammaln(a + b + v))
        r_x = x.per(lambda v: r + v)
        a3 = -r_x * T.per(lambda v: np.log(alpha + v))
        with np.errstate(divide="ignore", invalid="ignore"):
            a4 = np.where(
                x.per(lambda v: v > 0),
                x.per(lambda v: np.log(a) - np.log(np.maximum(b + v - 1, 1e-300)))
                - r_x * t_x.per(lambda v: np.log(alpha + v)),
                -np.inf,
            )
        return a1 + a2 + np.logaddexp(a3, a4)

    def p_alive(self, x, t_x, T):
        """P(still alive | x, t_x, T)."""
        r, alpha, a, b = self._require_fit()
        x, t_x, T = _arrays(x, t_x, T)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_ratio = (
                np.log(a) - np.log(np.maximum(b + x - 1, 1e-300))
                + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
            )  # fmt: skip
        return np.where(x > 0, 1.0 / (1.0 + np.exp(np.minimum(log_ratio, 700))), 1.0)

    def expected_purchases(self, t, x, t_x, T):
        """E[purchases in (T, T + t] | x, t_x, T]: P(alive) times the expectation while alive.

        Alive after x repeat purchases: p ~ Beta(a, b + x), lambda ~ Gamma(r + x, alpha + T).
        """
        r, alpha, a, b = self._require_fit()
        x, t_x, T = _arrays(x, t_x, T)
        return self.p_alive(x, t_x, T) * expected_while_alive(t, r + x, alpha + T, a, b + x)

    @staticmethod
    def simulate(params: dict, T, seed: int = 0):
        """Draw (x, t_x, T) for customers of ages T under the BG/NBD story."""
        rng = np.random.default_rng(seed)
        T = np.asarray(T, dtype=float)
        lam = rng.gamma(params["r"], 1 / params["alpha"], len(T))
        p = rng.beta(params["a"], params["b"], len(T))
        x = np.zeros(len(T))
        t_x = np.zeros(len(T))
        for i in range(len(T)):
            t = 0.0
            while True:
                t += rng.exponential(1 / lam[i])
                if t > T[i]:
                    break
                x[i] += 1
                t_x[i] = t
                if rng.random() < p[i]:
                    break
        return x, t_x, T


class ModifiedBGNBD(BTYDModel):
    """The MBG/NBD model: drop-out is possible right after the first purchase too."""

    name = "mbgnbd"

    @staticmethod
    def _ll(r, alpha, a, b, x, t_x, T):
        a1 = x.per(lambda v: gammaln(r + v) - gammaln(r)) + r * np.log(alpha)
        a2 = x.per(lambda v: gammaln(a + b) + gammaln(b + v + 1) - gammaln(b)
                   - gammaln(a + b + v + 1))  # fmt: skip
        r_x = x.per(lambda v: r + v)
        a3 = -r_x * T.per(lambda v: np.log(alpha + v))
        a4 = x.per(lambda v: np.log(a) - np.log(b + v)) - r_x * t_x.per(lambda v: np.log(alpha + v))
        return a1 + a2 + np.logaddexp(a3, a4)

    def p_alive(self, x, t_x, T):
        r, alpha, a, b = self._require_fit()
        x, t_x, T = _arrays(x, t_x, T)
        log_ratio = np.log(a) - np.log(b + x) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
        return 1.0 / (1.0 + np.exp(np.minimum(log_ratio, 700)))

    def expected_purchases(self, t, x, t_x, T):
        """As BG/NBD, but alive means surviving x + 1 drop-out chances: p ~ Beta(a, b + x + 1)."""
        r, alpha, a, b = self._require_fit()
        x, t_x, T = _arrays(x, t_x, T)
        return self.p_alive(x, t_x, T) * expected_while_alive(t, r + x, alpha + T, a, b + x + 1)


MODELS = {m.name: m for m in (BGNBD, ModifiedBGNBD)}


class GammaGamma(_FittedModel):
    """Spend per transaction: Gamma(p, nu) values, nu ~ Gamma(q, gamma) across customers.

    Fitted on customers with x >= 1 repeat purchases and their mean repeat value.

    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> x = rng.integers(1, 10, 4000)
    >>> nu = rng.gamma(4.0, 1 / 40.0, 4000)
    >>> m = np.array([rng.gamma(6.0, 1 / v, k).mean() for v, k in zip(nu, x)])
    >>> gg = GammaGamma().fit(x, m)
    >>> round(gg.params["q"]), gg.converged
    (4, True)
    >>> population_mean = 6.0 * 40.0 / (4.0 - 1)  # p * gamma / (q - 1) = 80
    >>> abs(float(gg.expected_spend(0, 0)) - population_mean) < 5
    True
    """

    name = "gamma_gamma"
    param_names = ("p", "q", "gamma")

    @staticmethod
    def _ll(p, q, gamma, x, m):
        return (
            gammaln(p * x + q) - gammaln(p * x) - gammaln(q) + q * np.log(gamma)
            + (p * x - 1) * np.log(m) + p * x * np.log(x) - (p * x + q) * np.log(gamma + x * m)
        )  # fmt: skip

    def fit(self, x, m, weights=None) -> GammaGamma:
        """Maximum likelihood on the customers (x, m), each row counted ``weights`` times
        (1 each by default): a population kept as counts per (x, rounded m) cell
        (streams.state.facts' spend cells) fits in time bounded by its cells."""
        x, m = _arrays(x, m)
        weights = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=float)
        if np.any(weights < 0):
            raise ValueError("need weights >= 0")
        keep = (x > 0) & (m > 0) & np.isfinite(m) & (weights > 0)
        x, m, weights = x[keep], m[keep], weights[keep]
        if weights.sum() < 2:
            raise ValueError("Gamma-Gamma needs at least two repeat customers with spend > 0")
        # Fit in units of the median spend: p and q have no unit and gamma scales with the
        # money, so the fit is the same in cents, dollars or rupiah (gamma is scaled back).
        unit = _weighted_median(m, weights)
        # Identical rows once each, counted: the likelihood is a sum.
        rows, inverse = np.unique(np.column_stack([x, m / unit]), axis=0, return_inverse=True)
        counts = np.bincount(inverse.ravel(), weights=weights)
        x, scaled = rows.T
        n = counts.sum()

        # Searched over (p, q - 1, gamma): q > 1 by construction, so the population's mean
        # spend p * gamma / (q - 1) exists and every expected spend is finite and > 0. A
        # likelihood that wants q <= 1 (a spend distribution too heavy-tailed for a mean)
        # ends pressed against q = 1, which _store_fit reports as not converged.
        def mean_ll(shifted):
            p, q_minus_1, gamma = shifted
            return np.sum(counts * self._ll(p, 1.0 + q_minus_1, gamma, x, scaled)) / n

        best = _maximise(mean_ll, ((1.0, 1.0, 1.0), (5.0, 2.0, 0.5), (2.0, 9.0, 5.0)),
                         self.penalizer)  # fmt: skip
        # the likelihood of values in units of `unit` is the money likelihood times unit^n
        log_likelihood = (mean_ll(np.exp(best.x)) - np.log(unit)) * n
        self._store_fit(best, log_likelihood, n)
        self.params["q"] += 1.0
        self.params["gamma"] *= unit
        if self.params["q"] - 1.0 < Q_EDGE:
            self.failure = "the optimum is on the bound q = 1 (spend too heavy-tailed for a mean)"
        self.converged = self.failure is None
        return self

    def mean_defined(self) -> bool:
        """Whether the fitted spend has a finite population mean (q > 1): only then are
        expected spend and CLV finite for every customer."""
        return self.params is not None and self.params["q"] > 1.0

    def expected_spend(self, x, m):
        """E[value of a future transaction | x repeat purchases with mean value m].

        Finite and > 0 for every x >= 0 and m when q > 1 (every fit since S9); nan for all
        when q <= 1 (a model stored before), where the posterior mean has a pole at
        p x + q = 1 and is negative beyond it. A negative mean value (refunds after the
        orders) counts as 0: a future spend is never negative.
        """
        if self.params is None:
            raise RuntimeError("GammaGamma is not fitted")
        p, q, gamma = self.params["p"], self.params["q"], self.params["gamma"]
        x, m = _arrays(x, m)
        if not q > 1:
            return np.full(np.broadcast(x, m).shape, math.nan)[()]
        m = np.maximum(m, 0.0)
        with np.errstate(over="ignore", invalid="ignore"):
            spend = np.where(x > 0, (gamma + x * m) * p / (p * x + q - 1), gamma * p / (q - 1))
        return spend

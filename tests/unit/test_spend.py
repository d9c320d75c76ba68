"""Spend (Gamma-Gamma) and CLV against computations that share no code with them: the
posterior mean by numerical integration, a published fit, the hypergeometric closed form
of expected purchases, and currency-unit invariance."""

import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import integrate
from scipy.special import hyp2f1

from online_models.churn import GammaGamma, ModifiedBGNBD
from online_models.churn_risk import ChurnScorer
from online_models.churn_risk import fit as fit_churn
from online_models.customer import CustomerState

DAY = 86_400_000
T0 = 1_700_000_000_000


def posterior_mean_spend(p, q, gamma, x, m):
    """E[p / nu | x values with mean m], nu ~ Gamma(q, rate gamma): by quadrature."""
    shape, rate = p * x + q, gamma + x * m

    def log_post(nu):
        return (shape - 1) * math.log(nu) - rate * nu

    peak = (shape - 1) / rate
    top = log_post(peak)
    norm, _ = integrate.quad(lambda nu: math.exp(log_post(nu) - top), 0, np.inf, points=None)
    first, _ = integrate.quad(lambda nu: p / nu * math.exp(log_post(nu) - top), 0, np.inf)
    return first / norm


def fitted(p, q, gamma) -> GammaGamma:
    gg = GammaGamma()
    gg.params = {"p": p, "q": q, "gamma": gamma}
    return gg


@pytest.mark.parametrize(("x", "m"), [(1, 11.77), (2, 22.35), (7, 73.74), (40, 5.0)])
def test_expected_spend_is_the_posterior_mean(x, m):
    p, q, gamma = 6.25, 3.74, 15.44
    want = posterior_mean_spend(p, q, gamma, x, m)
    assert float(fitted(p, q, gamma).expected_spend(x, m)) == pytest.approx(want, rel=1e-6)


def test_expected_spend_with_the_published_cdnow_fit():
    """Fader & Hardie (2013), CDNOW: p = 6.25, q = 3.74, gamma = 15.44. The conditional
    expectations of CDNOW customers 1, 2 and 6 as the lifetimes documentation prints them
    (x, m) -> E[M]: (2, 22.35) -> 24.66, (1, 11.77) -> 18.91, (7, 73.74) -> 71.46."""
    gg = fitted(6.25, 3.74, 15.44)
    got = gg.expected_spend(np.array([2, 1, 7]), np.array([22.35, 11.77, 73.74]))
    assert got == pytest.approx([24.66, 18.91, 71.46], rel=2e-3)


def simulated_spend(n=3000, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 12, n)
    nu = rng.gamma(3.5, 1 / 20.0, n)
    m = np.array([rng.gamma(5.0, 1 / v, k).mean() for v, k in zip(nu, x, strict=True)])
    return x, m


def test_the_fit_does_not_depend_on_the_currency_unit():
    x, m = simulated_spend()
    dollars = GammaGamma().fit(x, m)
    rupiah = GammaGamma().fit(x, m * 1e5)
    assert dollars.converged and rupiah.converged
    spend_d = dollars.expected_spend(x, m)
    spend_r = rupiah.expected_spend(x, m * 1e5) / 1e5
    assert np.max(np.abs(spend_r / spend_d - 1)) < 1e-3
    assert rupiah.params["p"] == pytest.approx(dollars.params["p"], rel=1e-3)
    cents = GammaGamma().fit(x, m * 100)
    assert cents.log_likelihood == pytest.approx(dollars.log_likelihood - len(x) * math.log(100),
                                                 rel=1e-6)  # fmt: skip


def test_a_fit_on_its_bound_is_not_converged():
    # every customer spends the same: the shapes run off to infinity, onto the box bound
    x = np.array([1, 2, 3, 4, 5, 6] * 40)
    gg = GammaGamma().fit(x, np.full(len(x), 25.0))
    assert not gg.converged
    assert float(gg.expected_spend(3, 25.0)) == pytest.approx(25.0, rel=1e-3)  # still sane


def customer(first_day_amount: str, repeats: list[str], start=T0) -> CustomerState:
    s = CustomerState("c")
    s.apply_purchase(start, Decimal(first_day_amount), "first")
    for k, amount in enumerate(repeats, 1):
        s.apply_purchase(start + 7 * k * DAY, Decimal(amount), f"r{k}")
    return s


def test_clv_is_a_year_of_expected_purchases_times_expected_spend():
    params = {"r": 0.8, "alpha": 3.0, "a": 0.9, "b": 2.2}
    model = ModifiedBGNBD()
    model.params = dict(params)
    scorer = ChurnScorer(model, fitted(6.25, 3.74, 15.44))
    state = customer("1000.00", ["10.00", "12.00", "8.00"])  # a big first order, small repeats
    as_of = T0 + 30 * 7 * DAY
    score = scorer.score(state, as_of)
    # independent: MBG/NBD closed form (Batislam et al.) for a year, in weeks
    r, alpha, a, b = params.values()
    x, t_x, big_t, t = 3, 3.0, 30.0, 365 / 7
    z = t / (alpha + big_t + t)
    decay = ((alpha + big_t) / (alpha + big_t + t)) ** (r + x)
    alive = 1 / (1 + a / (b + x) * ((alpha + big_t) / (alpha + t_x)) ** (r + x))
    year = alive * (a + b + x) / (a - 1) * (1 - decay * hyp2f1(r + x, b + x + 1, a + b + x, z))
    spend = posterior_mean_spend(6.25, 3.74, 15.44, 3, 10.0)  # mean of the repeats only
    assert score["predicted_clv_365d"] == pytest.approx(year * spend, rel=1e-5)
    assert score["p_alive"] == pytest.approx(alive, rel=1e-9)


def test_churn_fit_survives_same_day_orders_and_refunded_customers():
    """Customers with two orders on one day (x = 0, t_x = 0 by the per-day rule), one
    refunded in full, one free order: the fit runs and covers every buyer."""
    rng = np.random.default_rng(7)
    states = []
    for i in range(200):
        s = CustomerState(f"c{i}")
        start = T0 + int(rng.integers(0, 60)) * DAY
        s.apply_purchase(start + 3_600_000, Decimal("20"), "a")
        if i % 3 == 0:
            s.apply_purchase(start + 20 * 3_600_000, Decimal("5"), "b")  # same day
        for k in range(int(rng.poisson(2))):
            s.apply_purchase(start + int(rng.integers(1, 300)) * DAY, Decimal("0"), f"f{k}")
        if i % 11 == 0:
            s.apply_refund(start + DAY, Decimal("25"), "a", "r1")
        states.append(s)
    scorer = fit_churn(states, T0 + 400 * DAY, "mbgnbd")
    buyers = sum(1 for s in states if s.purchases)
    assert scorer.model.customers == buyers
    assert math.isfinite(scorer.model.log_likelihood)
    risks = [scorer.risk(s, T0 + 400 * DAY) for s in states if s.purchases]
    assert all(0 <= r <= 1 for r in risks)


def test_spend_model_is_fitted_on_mean_repeat_value():
    """Gamma-Gamma learns from repeat transactions only: the first day's order is not one."""
    from online_models.churn_risk import population

    states = [customer("1000.00", ["10.00", "12.00", "8.00"]), customer("5.00", [])]
    x, t_x, big_t, spend = population(states, T0 + 30 * 7 * DAY)
    assert list(x) == [3, 0] and list(t_x) == [3.0, 0.0] and list(big_t) == [30.0, 30.0]
    assert list(spend) == [10.0, 0.0]


def test_clv_does_not_depend_on_the_currency_unit():
    x, m = simulated_spend()
    model = ModifiedBGNBD()
    model.params = {"r": 0.8, "alpha": 3.0, "a": 0.9, "b": 2.2}
    in_dollars = ChurnScorer(model, GammaGamma().fit(x, m))
    in_rupiah = ChurnScorer(model, GammaGamma().fit(x, m * 1e5))
    for first, repeats in (("40.00", ["12.00", "30.00"]), ("5.00", ["250.00"] * 6)):
        dollars = customer(first, repeats)
        rupiah = customer(str(Decimal(first) * 100000), [str(Decimal(r) * 100000) for r in repeats])
        as_of = T0 + 300 * DAY
        clv_d = in_dollars.score(dollars, as_of)["predicted_clv_365d"]
        clv_r = in_rupiah.score(rupiah, as_of)["predicted_clv_365d"]
        assert clv_r / 1e5 == pytest.approx(clv_d, rel=1e-3)


def test_churn_fit_runs_on_the_synthetic_generators_own_customers():
    """The generator makes buyers with several orders on one day (x counts days): the fit
    used to refuse the whole population when one had all its orders on one day."""
    import json

    from online_models.rfm import RFMScorer
    from producers import synthetic
    from streams.processing.pipeline import Models, Record, decode_batch, fold_batch, lookups
    from streams.processing.schemas import Limits

    end = 1_760_000_000_000
    events = synthetic.generate(7, 400, 20_000, end - 200 * DAY, end)
    records = [Record(0, i, None, json.dumps(e).encode()) for i, e in enumerate(events)]
    valid, rejected = decode_batch(records, end, Limits())
    assert not rejected
    states = {cid: CustomerState(cid) for cid in lookups(valid)}
    fold_batch(valid, states, Models(RFMScorer()))
    same_day = [s for s in states.values() if s.purchases > s.purchase_days]
    assert len(same_day) >= 10  # the case is in the data
    assert all(s.btyd(end)["t_x_days"] == 0 for s in same_day if s.purchase_days == 1)
    scorer = fit_churn(states.values(), end, "mbgnbd")
    assert scorer.model.customers == sum(1 for s in states.values() if s.purchases)


# -- a spend model always has a mean: finite, positive spend and CLV (S9) -------------------


def gamma_gamma_population(seed, n=300, p=0.26, q=0.71, gamma=10.0):
    """Mean repeat values drawn from the Gamma-Gamma story itself."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 6, n)
    nu = rng.gamma(q, 1 / gamma, n)
    m = np.array([rng.gamma(p, 1 / v, k).mean() for v, k in zip(nu, x, strict=True)])
    return x, m


def test_a_spend_too_heavy_tailed_for_a_mean_is_not_a_converged_fit():
    """The audit's case: a population whose spend has no mean (q < 1) fitted p ~ 0.26,
    q ~ 0.72 'converged', and (gamma + x m) p / (p x + q - 1) was -479 at x = 1. Fitted with
    q > 1 the optimum sits on q = 1: not converged, and every spend is still finite > 0."""
    x, m = gamma_gamma_population(0)
    gg = GammaGamma().fit(x, m)
    assert not gg.converged and "q = 1" in gg.failure
    assert gg.params["q"] > 1
    spend = gg.expected_spend(np.array([0, 1, 2, 5, 50]), np.full(5, 20.0))
    assert np.all(np.isfinite(spend)) and np.all(spend > 0)


def test_a_spend_model_stored_with_q_below_one_gives_no_clv():
    """A model published before S9 with q <= 1 has no finite spend for some x: null CLV,
    never a negative one."""
    gg = fitted(0.26, 0.72, 8.28)
    assert np.all(np.isnan(gg.expected_spend(np.array([0, 1, 3]), np.full(3, 20.0))))
    model = ModifiedBGNBD()
    model.params = {"r": 0.8, "alpha": 3.0, "a": 0.9, "b": 2.2}
    state = customer("10.00", ["20.00"])
    assert ChurnScorer(model, gg).score(state, T0 + 30 * DAY)["predicted_clv_365d"] is None


@st.composite
def spend_populations(draw):
    """Small populations of mean repeat values, heavy tails included: the Gamma-Gamma story
    with any shapes (q < 1: no mean), log-normal up to sigma 4, Pareto with no mean."""
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(2, 60))
    rng = np.random.default_rng(seed)
    x = rng.integers(1, draw(st.integers(2, 30)), n)
    kind = draw(st.sampled_from(["story", "lognormal", "pareto", "ties"]))
    if kind == "story":
        p, q = draw(st.floats(0.05, 20)), draw(st.floats(0.2, 20))
        nu = rng.gamma(q, 1.0, n)
        m = np.array([rng.gamma(p, 1 / v, k).mean() for v, k in zip(nu, x, strict=True)])
    elif kind == "lognormal":
        m = np.exp(rng.normal(3, draw(st.floats(0.01, 4.0)), n))
    elif kind == "pareto":
        m = (rng.pareto(draw(st.floats(0.3, 3.0)), n) + 1) * 10
    else:
        m = rng.choice([0.01, 5.0, 5.0, 1e6], n)
    return x, m * draw(st.sampled_from([1e-2, 1.0, 1e5]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(population=spend_populations(), x=st.integers(0, 200),
       m=st.floats(-1e3, 1e9, allow_nan=False))  # fmt: skip
def test_every_fitted_spend_is_finite_and_positive(population, x, m):
    """Whatever the population, a fit has q > 1 (a converged one well inside), and the
    expected spend of any customer, refunds making the mean negative included, is finite
    and >= 0; with a year of expected purchases, so is CLV."""
    gg = GammaGamma().fit(*population)
    assert gg.params["q"] > 1
    assert not gg.converged or gg.params["q"] - 1 >= 1e-3
    spend = float(gg.expected_spend(x, m))
    assert math.isfinite(spend) and spend >= 0
    model = ModifiedBGNBD()
    model.params = {"r": 0.8, "alpha": 3.0, "a": 0.9, "b": 2.2}
    state = customer("10.00", [f"{max(m, 0):.2f}"] * min(x, 5))
    clv = ChurnScorer(model, gg).score(state, T0 + 400 * DAY)["predicted_clv_365d"]
    assert clv is not None and math.isfinite(clv) and clv >= 0


@st.composite
def shoppers(draw):
    """A small population of customers: purchase days, amounts (heavy-tailed), refunds."""
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(0, 40))
    rng = np.random.default_rng(seed)
    repeat_rate = draw(st.floats(0.0, 1.0))
    tail = draw(st.floats(0.1, 3.0))
    states = []
    for i in range(n):
        s = CustomerState(f"c{i}")
        start = T0 + int(rng.integers(0, 300)) * DAY
        days = [0] + sorted(rng.choice(np.arange(1, 400), int(rng.poisson(repeat_rate * 4)),
                                       replace=False).tolist())  # fmt: skip
        for k, d in enumerate(days):
            amount = Decimal(str(round(float(np.exp(rng.normal(3, tail))), 2)))
            s.apply_purchase(start + d * DAY, amount, f"o{k}")
        if rng.random() < 0.1:
            s.apply_refund(start + days[-1] * DAY + 1, Decimal("5000"), f"o{len(days) - 1}", "r")
        states.append(s)
    return states


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states=shoppers(), name=st.sampled_from(["bgnbd", "mbgnbd"]))
def test_a_refit_on_any_population_publishes_no_wrong_number(states, name):
    """The whole refit as the leader runs it (fit, fit_health, the spend model dropped when
    it failed): no exception but the documented ValueError for too few customers, and every
    published number finite and in range."""
    from online_models.churn_risk import fit_health

    as_of = T0 + 800 * DAY
    try:
        scorer = fit_churn(states, as_of, name)
    except ValueError as exc:
        assert "need at least 10 customers" in str(exc)
        return
    health = fit_health(scorer)
    if health.spend_error is not None:
        scorer.spend = None
    for s in states:
        score = scorer.score(s, as_of)
        if score is None:  # no purchase left (refunded in full): nothing is published
            continue
        assert 0 <= score["p_alive"] <= 1 and 0 <= score["churn_risk"] <= 1
        assert all(math.isfinite(score[k]) and score[k] >= 0
                   for k in ("expected_purchases_30d", "expected_purchases_90d"))  # fmt: skip
        clv = score["predicted_clv_365d"]
        assert clv is None or (math.isfinite(clv) and clv >= 0)
        assert (clv is None) == (scorer.spend is None)

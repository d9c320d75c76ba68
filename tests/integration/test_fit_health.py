"""Fit health against a real Redis: a churn refit whose fit did not converge leaves the
model in force and says why (model status, `rtba stats`, the metrics); a spend fit that
did not converge publishes the churn model without CLV, saying why.

The populations are built in memory and handed to refit_churn in place of the customers
it would read from Redis (the rest, publishing and recording, is the real path): a shop
of 95% one-time buyers whose repeat buyers all stay active puts MBG/NBD on a parameter
bound, and one where every repeat order costs the same puts Gamma-Gamma on one.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from prometheus_client import generate_latest

from online_models import churn
from online_models.churn import GammaGamma, ModifiedBGNBD
from online_models.churn_risk import ChurnScorer
from online_models.customer import CustomerState
from streams.api.metrics import api_registry
from streams.processing import worker
from streams.read.reader import StateReader
from streams.state.keys import Keys
from streams.state.store import model_status, publish_churn_model, read_churn_model, read_stats
from tests.conftest import json_lines, run_rtba

DAY = 86_400_000
AS_OF = 1_760_000_000_000 // DAY * DAY
IN_FORCE = {"r": 0.8, "alpha": 3.0, "a": 0.9, "b": 2.2}


def shop(seed: int, n: int = 300, one_time: float = 0.95,
         active: float = 0.8) -> list[CustomerState]:  # fmt: skip
    """Customers up to a year old, ``one_time`` of them with a single purchase; the rest
    buy again up to 7 times, every order 20.00, the last one at least ``active`` of their
    age after the first (0.8: nobody seems to drop out, so MBG/NBD's likelihood rises all
    the way to a drop-out parameter of 0, the bound)."""
    rng = np.random.default_rng(seed)
    states = []
    for i in range(n):
        age = int(rng.integers(7, 364))
        state = CustomerState(f"c{i:04d}")
        first = AS_OF - age * DAY
        state.apply_purchase(first, Decimal("20"), "o0")
        if rng.random() >= one_time:
            k = int(rng.integers(1, 8))
            last = int(age * rng.uniform(active, 1.0))
            for j, d in enumerate(np.linspace(last / k, last, k).round().astype(int), 1):
                state.apply_purchase(first + int(d) * DAY, Decimal("20"), f"o{j}")
        states.append(state)
    return states


@pytest.fixture
def population(monkeypatch):
    """Hand refit_churn the given customers instead of reading them from Redis."""
    chosen: list[CustomerState] = []
    monkeypatch.setattr(worker, "customer_pages", lambda client, keys: iter(()))  # no walk
    monkeypatch.setattr(worker, "read_states_sync", lambda client, keys, ids: list(chosen))
    return chosen


def put_in_force(redis_client, settings, spend: GammaGamma | None = None) -> int:
    model = ModifiedBGNBD()
    model.params = dict(IN_FORCE)
    return publish_churn_model(redis_client, Keys(settings.namespace), ChurnScorer(model, spend),
                               {"as_of_ms": AS_OF - DAY, "fitted_at_ms": 1})  # fmt: skip


def test_a_fit_on_a_bound_is_not_put_in_force_and_says_why(settings, redis_client, rtba_env,
                                                           population, monkeypatch):  # fmt: skip
    keys = Keys(settings.namespace)
    # This shop's likelihood rises all the way to a = b = 0, but where L-BFGS-B gives up
    # on that ridge depends on the machine's floating point (b at e^-11.4 on one VM, on
    # the e^-12 bound on another): a box at e^-4 it reaches on every machine.
    monkeypatch.setattr(churn, "_BOUNDS", (-4.0, 12.0))
    version = put_in_force(redis_client, settings)
    population.extend(shop(seed=0))
    with pytest.raises(worker.RefitSkipped, match="not put in force.*parameter bound"):
        worker.refit_churn(settings, AS_OF, "mbgnbd")

    in_force = read_churn_model(redis_client, keys)
    assert in_force.version == version and in_force.model.params == IN_FORCE
    status = model_status(redis_client, keys, AS_OF)["churn"]
    assert status["version"] == version
    assert status["last_error"]["kind"] == "rejected"
    assert "mbgnbd fit not put in force" in status["last_error"]["reason"]
    assert read_stats(redis_client, keys)["refit_rejected:churn"] == 1

    stats = json_lines(run_rtba(rtba_env, "stats", "--json").stdout)[0]
    assert "not put in force" in stats["churn_model"]["last_error"]["reason"]
    assert stats["counters"]["refit_rejected:churn"] == 1
    text = run_rtba(rtba_env, "stats").stdout
    assert f"churn model      v{version}; last refit: mbgnbd fit not put in force" in text
    metrics = generate_latest(api_registry(StateReader(settings, redis_client))).decode()
    assert 'rtba_model_refit_failing{model="churn",part="model"} 1.0' in metrics
    assert 'rtba_model_refit_failures_total{kind="rejected",model="churn"} 1.0' in metrics


def test_a_spend_fit_on_a_bound_publishes_the_churn_model_without_clv(settings, redis_client,
                                                                     population):  # fmt: skip
    keys = Keys(settings.namespace)
    version = put_in_force(redis_client, settings)
    population.extend(shop(seed=1, active=0.3))  # MBG/NBD converges; every order is 20.00
    fitted = worker.refit_churn(settings, AS_OF, "mbgnbd")

    assert fitted["version"] == version + 1 and fitted["gamma_gamma"] is None
    assert fitted["spend_error"].startswith("Gamma-Gamma fit not used (CLV null)")
    in_force = read_churn_model(redis_client, keys)
    assert in_force.version == version + 1 and in_force.spend is None
    status = model_status(redis_client, keys, AS_OF)["churn"]
    assert status["last_error"] is None and status["spend_error"] == fitted["spend_error"]
    assert in_force.score(population[0], AS_OF)["predicted_clv_365d"] is None
    metrics = generate_latest(api_registry(StateReader(settings, redis_client))).decode()
    assert 'rtba_model_refit_failing{model="churn",part="spend"} 1.0' in metrics


def test_a_spend_fit_on_a_bound_keeps_the_spend_model_in_force(settings, redis_client,
                                                              population):  # fmt: skip
    """A good spend model in force stays when the new spend fit fails: CLV goes on with
    it (p * (gamma + x m) / (p x + q - 1), computed here), never null or wrong."""
    good = GammaGamma()
    good.params, good.converged = {"p": 6.0, "q": 4.0, "gamma": 40.0}, True
    version = put_in_force(redis_client, settings, good)
    population.extend(shop(seed=1, active=0.3))
    fitted = worker.refit_churn(settings, AS_OF, "mbgnbd")

    assert fitted["gamma_gamma"]["params"] == {"p": 6.0, "q": 4.0, "gamma": 40.0}
    assert fitted["spend_error"].startswith(
        f"Gamma-Gamma fit not used (the spend model of v{version} stays)"
    )
    in_force = read_churn_model(redis_client, Keys(settings.namespace))
    assert in_force.version == version + 1 and in_force.spend.params == good.params
    week = 7 * DAY
    repeat = next(s for s in population if s.btyd_ms(AS_OF)[0] > 0)
    x, t_x, big_t = repeat.btyd_ms(AS_OF)
    m = float(repeat.repeat_value) / x
    spend = 6.0 * (40.0 + x * m) / (6.0 * x + 4.0 - 1)
    year = in_force.model.expected_purchases(365 / 7, x, t_x / week, big_t / week)
    scored = in_force.score(repeat, AS_OF)
    assert scored["predicted_clv_365d"] == pytest.approx(float(year) * spend, rel=1e-12)

"""The churn refit on the day cells (S10 item 3) against a real Redis: the churn model is
fitted on everyone's cells (counted here from the states, tests/reference_facts.cells, and
put in the cells hashes by hand), Gamma-Gamma on the sample, or on the spend cells when
they are whole; a refit that does not move publishes nothing.

Every purchase is at noon UTC, so the cells hold each customer's (x, t_x, T) exactly and
the fit on them is the fit on the states (to 1e-6).
"""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest

from online_models import churn_risk
from online_models.churn import GammaGamma
from online_models.customer import CustomerState
from streams.processing import worker
from streams.state.claims import claim_whole
from streams.state.keys import Keys
from streams.state.store import read_churn_model, write_due
from tests.reference_facts import cells, spend_cells

pytestmark = pytest.mark.integration

DAY = 86_400_000
AS_OF = 1_760_000_000_000 // DAY * DAY + 15 * 3_600_000
CUSTOMERS = 600
SAMPLE = 200


def shop() -> list[CustomerState]:
    rng = np.random.default_rng(7)
    out = []
    for i in range(CUSTOMERS):
        state = CustomerState(f"s{i:04d}")
        age = int(rng.integers(7, 364))
        first = (AS_OF // DAY - age) * DAY + DAY // 2
        days = [0]
        if rng.random() < 0.4:
            days += sorted(rng.choice(np.arange(1, age + 1), int(rng.integers(1, 7))).tolist())
        for j, d in enumerate(days):
            state.apply_purchase(first + d * DAY, Decimal(str(rng.integers(10, 90))), f"o{j}")
        out.append(state)
    return out


def stored_shop(settings, redis_client, monkeypatch, counting):
    """The shop's customers in the due index and ``counting(states)`` in the cells hashes,
    spread over two shards (the refit sums every shard); the states' reads recorded:
    (states, cells, reads)."""
    keys = Keys(settings.namespace)
    states = shop()
    by_id = {s.customer_id: s for s in states}
    write_due(redis_client, keys, dict.fromkeys(by_id))
    counted = counting(states)
    names = sorted(counted)
    redis_client.hset(keys.cells(0), mapping={n: counted[n] for n in names[::2]})
    redis_client.hset(keys.cells(5), mapping={n: counted[n] for n in names[1::2]})
    reads: list[list[str]] = []

    def read_states(client, keys, wanted):
        reads.append(list(wanted))
        return [by_id[cid] for cid in wanted]

    monkeypatch.setattr(worker, "read_states_sync", read_states)
    return states, counted, reads


def test_the_refit_fits_the_churn_model_on_everyones_cells(settings, redis_client,
                                                           monkeypatch):  # fmt: skip
    states, counted, reads = stored_shop(settings, redis_client, monkeypatch, cells)
    chosen = settings.model_copy(update={"churn_fit_sample": SAMPLE})
    fitted = worker.refit_churn(chosen, AS_OF, "mbgnbd")

    assert fitted["fitted_on"] == "day cells" and fitted["cells"] == len(counted)
    assert fitted["spend_fitted_on"] == "sample"  # no worker claimed spend cells whole
    assert fitted["customers"] == CUSTOMERS and fitted["published"]  # everyone, not the sample
    assert SAMPLE <= len(reads[0]) < CUSTOMERS  # the sample: Gamma-Gamma's only
    want = churn_risk.fit(states, AS_OF, "mbgnbd").model.params
    for name, value in want.items():
        assert math.isclose(fitted["params"][name], value, rel_tol=1e-6), name
    by_id = {s.customer_id: s for s in states}
    sample = [by_id[cid] for cid in reads[0]]
    spend = churn_risk.fit(sample, AS_OF, "mbgnbd").spend.params
    assert fitted["gamma_gamma"]["params"] == spend

    again = worker.refit_churn(chosen, AS_OF, "mbgnbd")
    assert not again["published"] and again["version"] == fitted["version"]
    assert read_churn_model(redis_client, Keys(settings.namespace)).version == fitted["version"]


def test_with_whole_spend_cells_the_refit_reads_no_state(settings, redis_client, monkeypatch):
    """A namespace whose spend cells and cell members are whole (its first worker kept
    them) fits both models on the cells and wakes customers by cell: no customer's state
    is read, even when a fit is published, and Gamma-Gamma is the fit on the spend cells'
    rows repeated."""

    def every_cell(states):
        return {**cells(states), **spend_cells(states)}

    states, counted, reads = stored_shop(settings, redis_client, monkeypatch, every_cell)
    redis_client.hset(Keys(settings.namespace).facts(3), "customers", CUSTOMERS)
    assert all(claim_whole(redis_client, settings.namespace).values())  # no event applied yet
    chosen = settings.model_copy(update={"churn_fit_sample": SAMPLE})
    fitted = worker.refit_churn(chosen, AS_OF, "mbgnbd")
    assert (fitted["fitted_on"], fitted["spend_fitted_on"]) == ("day cells", "spend cells")
    assert fitted["published"] and fitted["rescheduled_by"] == "cells" and reads == []

    repeat = [(int(n.split(":")[1]), float(n.split(":")[2]), k)
              for n, k in counted.items() if n.startswith("gg:")]  # fmt: skip
    x, m, k = (np.array(column, dtype=float) for column in zip(*repeat, strict=True))
    want = GammaGamma().fit(np.repeat(x, k.astype(int)), np.repeat(m, k.astype(int))).params
    for name, value in want.items():
        assert math.isclose(fitted["gamma_gamma"]["params"][name], value, rel_tol=1e-6), name
    # against the fit on every exact mean: this shop's spend hardly varies between
    # customers (q ~ 1,000, a flat ridge), so the mean spend p * gamma / (q - 1) is
    # what is pinned, not p, q, gamma one by one
    exact = churn_risk.fit(states, AS_OF, "mbgnbd").spend.params
    got = fitted["gamma_gamma"]["params"]

    def mean_spend(params):
        return params["p"] * params["gamma"] / (params["q"] - 1)

    assert math.isclose(mean_spend(got), mean_spend(exact), rel_tol=1e-3)

    again = worker.refit_churn(chosen, AS_OF, "mbgnbd")
    assert not again["published"] and reads == []  # unchanged: not one state read
    spenders = sorted(n for n in counted if n.startswith("gg:"))
    assert again["spend_cells"] == len(spenders) and again["cells"] == len(counted) - len(spenders)

    # a spend cell below 0 (a hand edit, or writes by an rtba without spend cells): not
    # whole, so Gamma-Gamma goes back to the sample; the churn model is still fitted
    redis_client.hincrby(Keys(settings.namespace).cells(0), spenders[0], -1_000)
    broken = worker.refit_churn(chosen, AS_OF, "mbgnbd")
    assert (broken["fitted_on"], broken["spend_fitted_on"]) == ("day cells", "sample")
    assert SAMPLE <= len(reads[0]) < CUSTOMERS and broken["params"] == again["params"]

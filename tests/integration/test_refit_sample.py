"""The churn refit against a real Redis (S10): it reads only its sample, the customers of
the first due-index buckets (crc32(id) % 16384, computed here), and a refit whose
parameters are those in force publishes nothing and re-schedules nobody.

The due index is real (ids written with the store's own write); states are built in memory
and handed to the refit for the ids it asks for, so the test sees exactly what it reads.
"""

from __future__ import annotations

import zlib
from decimal import Decimal

import numpy as np
import pytest

from online_models.customer import CustomerState
from streams.processing import worker
from streams.state.keys import Keys
from streams.state.store import read_churn_model, write_due

pytestmark = pytest.mark.integration

DAY = 86_400_000
AS_OF = 1_760_000_000_000 // DAY * DAY
CUSTOMERS = 6_000
SAMPLE = 1_000


def customer(cid: str) -> CustomerState:
    """A customer up to a year old, from its id alone: 40% buy again up to 7 times."""
    rng = np.random.default_rng(zlib.crc32(cid.encode()))
    age = int(rng.integers(7, 364))
    state = CustomerState(cid)
    first = AS_OF - age * DAY
    state.apply_purchase(first, Decimal(str(rng.integers(10, 90))), "o0")
    if rng.random() < 0.4:
        k = int(rng.integers(1, 8))
        last = int(age * rng.uniform(0.3, 1.0))
        for j, d in enumerate(np.linspace(last / k, last, k).round().astype(int), 1):
            state.apply_purchase(first + int(d) * DAY, Decimal(str(rng.integers(10, 90))), f"o{j}")
    return state


def expected_sample(ids: list[str], size: int) -> list[str]:
    """The customers of buckets 0 .. k - 1, k the least with at least ``size`` of them."""
    bucket = {cid: zlib.crc32(cid.encode()) % 16_384 for cid in ids}
    held = 0
    for k in range(16_384):
        held += sum(1 for b in bucket.values() if b == k)
        if held >= size:
            break
    return sorted(cid for cid, b in bucket.items() if b <= k)


@pytest.fixture
def shop(monkeypatch, settings, redis_client):
    """CUSTOMERS ids in the due index; every state read recorded (ids asked for)."""
    ids = [f"s{i:05d}" for i in range(CUSTOMERS)]
    write_due(redis_client, Keys(settings.namespace), dict.fromkeys(ids))
    reads: list[list[str]] = []

    def read_states(client, keys, wanted):
        reads.append(list(wanted))
        return [customer(cid) for cid in wanted]

    monkeypatch.setattr(worker, "read_states_sync", read_states)
    return ids, reads


def test_the_refit_reads_only_its_sample(settings, shop):
    ids, reads = shop
    chosen = settings.model_copy(update={"churn_fit_sample": SAMPLE})
    fitted = worker.refit_churn(chosen, AS_OF, "mbgnbd")

    want = expected_sample(ids, SAMPLE)
    assert SAMPLE <= len(want) < SAMPLE + 20  # whole buckets: ~0.4 customers each here
    assert reads[0] == want
    assert fitted["customers"] == len(want) and fitted["published"]


def test_a_refit_that_does_not_move_publishes_nothing(settings, redis_client, shop,
                                                      monkeypatch):  # fmt: skip
    ids, reads = shop
    chosen = settings.model_copy(update={"churn_fit_sample": SAMPLE})
    first = worker.refit_churn(chosen, AS_OF, "mbgnbd")
    rescheduled = []
    monkeypatch.setattr(worker, "reschedule", lambda *args: rescheduled.append(args) or 0)
    again = worker.refit_churn(chosen, AS_OF, "mbgnbd")
    assert again["version"] == first["version"] and not again["published"]
    # the sample; everyone, a page at a time, to re-schedule under v1 (this namespace's
    # cell members are not whole: no worker claimed them); the sample again
    assert reads[0] == reads[-1] and len(reads) > 3
    assert sorted(cid for page in reads[1:-1] for cid in page) == sorted(ids)
    assert read_churn_model(redis_client, Keys(settings.namespace)).version == first["version"]
    assert rescheduled == []

    # a day later every T is a day longer: the parameters move, and the fit is published
    later = worker.refit_churn(chosen, AS_OF + DAY, "mbgnbd")
    assert later["published"] and later["version"] == first["version"] + 1
    assert rescheduled and sum(len(list(args[2])) for args in rescheduled) == len(ids)

import random
from decimal import Decimal

import pytest

from online_models.customer import MS_PER_DAY, CustomerState
from online_models.quantiles import BucketHistogram, adaptive_edges, rfm_histograms
from online_models.rfm import RFMScorer
from streams.processing.pipeline import histogram_point

T0 = 1_700_000_000_000


def population(n: int, seed: int = 1) -> list[CustomerState]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        s = CustomerState(f"c{i}")
        for k in range(1 + int(rng.expovariate(0.5))):
            ts = T0 + int(rng.uniform(0, 365) * MS_PER_DAY)
            s.apply_purchase(ts, Decimal(f"{rng.lognormvariate(4, 1):.2f}"), f"o{k}")
        out.append(s)
    return out


def histograms_of(states) -> dict[str, BucketHistogram]:
    hists = rfm_histograms()
    for s in states:
        for name, bucket in histogram_point(s).items():
            hists[name].counts[bucket] += 1
    return hists


def test_edges_mean_the_same_at_any_population_size():
    """Ten thousand copies of a population have the very same quintile edges."""
    small = histograms_of(population(1000))
    huge = {name: BucketHistogram(h.kind, h.width, h.alpha) for name, h in small.items()}
    for name, h in small.items():
        for _ in range(10_000 // 100):
            for _ in range(100):
                huge[name] += h
    assert huge["lp"].count == 10_000_000
    as_of = T0 / MS_PER_DAY + 400
    assert adaptive_edges(*small.values(), as_of) == adaptive_edges(*huge.values(), as_of)


def test_monetary_scores_split_the_population_into_fifths():
    states = population(5000)
    edges = adaptive_edges(*histograms_of(states).values(), T0 / MS_PER_DAY + 400)
    scorer = RFMScorer(**edges)
    m_scores = [scorer.score(0, s.purchases, s.monetary)[2] for s in states]
    for score in range(1, 6):
        assert abs(m_scores.count(score) / len(states) - 0.2) < 0.02


def test_fold_deltas_keep_the_population_histograms_exact():
    from tests.unit.test_pipeline import purchase, rec, run

    rng = random.Random(4)
    history = {}
    hists = rfm_histograms()
    offset = 0
    for _ in range(30):  # batches touching overlapping customers
        batch = []
        for _ in range(20):
            cid = f"c{rng.randrange(15)}"
            amount = f"{rng.randint(1, 900)}.00"
            ts = T0 + rng.randrange(400) * MS_PER_DAY
            batch.append(rec(offset, purchase(offset, cid=cid, amount=amount, ts=ts)))
            offset += 1
        states = {r: history.get(r) for r in {f"c{i}" for i in range(15)}}
        states = {c: s if s is not None else CustomerState(c) for c, s in states.items()}
        out, _ = run(batch, states)
        for delta in out.histogram_deltas.values():
            for (name, bucket), n in delta.items():
                hists[name].counts[bucket] += n
        history.update(out.states)
    direct = histograms_of(history.values())
    for name in hists:
        assert +hists[name].counts == direct[name].counts  # unary + drops zero buckets


def tied_population(order_counts: dict[int, int], zero_share: float, seed: int):
    """Customers with the given number of orders (count -> customers); a share buy free."""
    rng = random.Random(seed)
    out, i = [], 0
    for orders, customers in order_counts.items():
        for _ in range(customers):
            s = CustomerState(f"c{i}")
            i += 1
            free = rng.random() < zero_share
            for k in range(orders):
                amount = "0" if free else f"{rng.choice([10, 10, 10, 25, 25, 60, 99])}.00"
                s.apply_purchase(T0 + k * MS_PER_DAY, Decimal(amount), f"o{k}")
            out.append(s)
    return out


@pytest.mark.parametrize(
    "order_counts",
    [
        {1: 860, 2: 80, 3: 30, 4: 20, 7: 10},  # 86% one-time buyers, five distinct values
        {1: 700, 2: 290, 3: 10},  # three distinct values
        {1: 500, 2: 1, 3: 1, 4: 1, 5: 1, 9: 496},  # a gap in the middle
        {2: 990, 3: 10},  # nobody with one order
    ],
)
def test_every_score_the_data_can_support_is_used(order_counts):
    states = tied_population(order_counts, zero_share=0.3, seed=len(order_counts))
    edges = adaptive_edges(*histograms_of(states).values(), T0 / MS_PER_DAY + 400)
    scorer = RFMScorer(**edges)
    f_scores = {s.purchases: scorer.score(0, s.purchases, s.monetary)[1] for s in states}
    m_scores = {s.monetary: scorer.score(0, s.purchases, s.monetary)[2] for s in states}
    for values_to_scores in (f_scores, m_scores):
        distinct = sorted(values_to_scores)
        used = [values_to_scores[v] for v in distinct]
        assert len(set(used)) == min(5, len(distinct))  # as many scores as distinct values
        assert used == sorted(used)  # more never scores lower
        assert used[0] == 1 and used[-1] == 5  # the least scores 1, the most 5
    assert m_scores[Decimal(0)] == 1  # a free-order customer is never lifted by a 0 edge

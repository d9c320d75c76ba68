import itertools
import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from online_models.customer import MS_PER_DAY, CustomerState
from online_models.quantiles import BucketHistogram, adaptive_edges, fair_cuts, rfm_histograms
from online_models.rfm import RFMScorer
from streams.state.facts import histogram_point

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
        for delta in out.fact_deltas.values():  # their hist:<name>:<bucket> fields
            for field, n in delta.items():
                head, name, bucket = (field.split(":") + ["", ""])[:3]
                if head == "hist":
                    hists[name].counts[int(bucket)] += n
        for state in out.states.values():  # stored: the next fold reads it at a version
            state.version += 1
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


# -- the fair split (docs/segments.md, "Ties"), against a brute force over every split --


def fairest_groups(counts: list[int]) -> list[int]:
    """Customers per score (1 .. 5) of the fairest split of a row of tied values, by trying
    every split: ties never split, no score empty, the least sum of squared score sizes,
    then the lowest cuts (last cut first). Fewer than five values: one score each, 1 .. k-1,
    and the highest value scores 5."""
    k = len(counts)
    if k < 5:
        return counts[:-1] + [0] * (5 - k) + counts[-1:]
    best = None
    for cuts in itertools.combinations(range(1, k), 4):
        bounds = (0, *cuts, k)
        sizes = [sum(counts[bounds[s] : bounds[s + 1]]) for s in range(5)]
        key = (sum(n * n for n in sizes), cuts[::-1])
        if best is None or key < best[0]:
            best = (key, sizes)
    return best[1]


def shares(scores: list[int]) -> list[int]:
    return [scores.count(s) for s in range(1, 6)]


def buyers(last_days: list[int], orders: list[int], amounts: list[str]) -> list[CustomerState]:
    """One customer per entry: ``orders`` purchases of ``amount`` each, the last on ``day``."""
    out = []
    for i, (day, n, amount) in enumerate(zip(last_days, orders, amounts, strict=True)):
        s = CustomerState(f"c{i}")
        for k in range(n):
            s.apply_purchase(T0 + (day - n + 1 + k) * MS_PER_DAY, Decimal(amount), f"o{k}")
        out.append(s)
    return out


def scores_of(states: list[CustomerState], as_of_day: float) -> list[tuple[int, int, int]]:
    edges = adaptive_edges(*histograms_of(states).values(), as_of_day)
    scorer = RFMScorer(**edges)
    return [
        scorer.score(as_of_day - s.last_purchase_ms / MS_PER_DAY, s.purchases, s.monetary)
        for s in states
    ]


def test_a_sale_day_holding_45_percent_leaves_no_recency_score_empty():
    """45% last bought on one sale day (day 29, the latest), the rest spread over 29 days:
    quintile edges left R = 4 empty and R = 5 at 48%; the fair split uses every score."""
    rng = random.Random(45)
    days = [29] * 450 + [rng.randrange(29) for _ in range(550)]
    states = buyers(days, [1] * 1000, ["10.00"] * 1000)
    r = [score[0] for score in scores_of(states, T0 / MS_PER_DAY + 30)]
    per_day = [days.count(d) for d in range(30)]
    assert shares(r) == fairest_groups(per_day)  # oldest days score 1
    assert shares(r)[3] > 0 and shares(r)[4] == 450  # the sale day alone is R = 5


def test_a_middle_score_is_not_starved():
    """Orders 1: 60%, 2: 25%, 3: 1%, 4: 5%, 5-7: 3% each: the quantile rule gave F = 3
    to the 1% with three orders; the fair split gives every score at least 3%."""
    order_counts = {1: 600, 2: 250, 3: 10, 4: 50, 5: 30, 6: 30, 7: 30}
    orders = [n for n, customers in order_counts.items() for _ in range(customers)]
    states = buyers([n for n in orders], orders, ["10.00"] * len(orders))
    f = [score[1] for score in scores_of(states, T0 / MS_PER_DAY + 30)]
    assert shares(f) == fairest_groups(list(order_counts.values()))
    assert min(shares(f)) >= 30


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cdnow_like_population_splits_fairly_on_r_f_and_m(seed):
    """86% one-time buyers, spend in round amounts, a few dozen distinct last days: each of
    R, F and M is the fairest split of its distinct values."""
    rng = random.Random(seed)
    n = 600
    orders = [1 if rng.random() < 0.86 else 2 + int(rng.expovariate(0.6)) for _ in range(n)]
    days = [min(30, int(rng.expovariate(0.08))) for _ in range(n)]
    amounts = [rng.choice(["5.00", "12.00", "12.00", "20.00", "35.00", "35.00", "60.00",
                           "99.00", "150.00", "400.00"]) for _ in range(n)]  # fmt: skip
    states = buyers([30 - d for d in days], orders, amounts)
    scores = scores_of(states, T0 / MS_PER_DAY + 31)
    monetary = [Decimal(a) * o for a, o in zip(amounts, orders, strict=True)]
    for axis, values in ((0, [-d for d in days]), (1, orders), (2, monetary)):
        counts = [values.count(v) for v in sorted(set(values))]
        assert shares([s[axis] for s in scores]) == fairest_groups(counts), axis


# -- M scores under a change of money unit --


def m_scores(amounts: list[Decimal]) -> list[int]:
    states = []
    for i, amount in enumerate(amounts):
        s = CustomerState(f"c{i}")
        s.apply_purchase(T0, amount, "o1")
        states.append(s)
    return [score[2] for score in scores_of(states, T0 / MS_PER_DAY + 1)]


@pytest.mark.parametrize("seed", [5, 6])
def test_m_scores_do_not_change_with_the_money_unit(seed):
    """The same spend in cents, or in thousands, scores the same M for every customer: the
    log buckets were anchored at 1 and moved ~1% of customers across an edge."""
    rng = random.Random(seed)
    amounts = [Decimal(f"{rng.lognormvariate(4, 1.2):.2f}") for _ in range(4000)]
    base = m_scores(amounts)
    assert m_scores([a * 100 for a in amounts]) == base  # cents
    assert m_scores([a / 1000 for a in amounts]) == base  # thousands


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=1, max_size=9))
def test_fair_cuts_are_the_brute_force_fairest(counts):
    cuts = fair_cuts(counts)
    bounds = (0, *cuts, len(counts))
    sizes = [sum(counts[bounds[s] : bounds[s + 1]]) for s in range(5)]
    if len(counts) >= 5:
        assert sizes == fairest_groups(counts)
    else:  # one value per score, the highest at 5
        assert [n for n in sizes if n] == counts and sizes[4] == counts[-1]


def test_a_first_day_of_trade_scores_everyone_recent():
    """Twenty-five buyers all on one day (a new shop): R = 5 for all, F and M = 1, as the
    reference says; the fair split alone would have made them all R = 1 (Lost)."""
    from tests.reference import reference_scores

    states = buyers([3] * 25, [1] * 25, ["10.00"] * 25)
    assert scores_of(states, T0 / MS_PER_DAY + 3.5) == [(5, 1, 1)] * 25
    rows = [{"last_purchase_ms": s.last_purchase_ms, "purchases": 1, "monetary": s.monetary}
            for s in states]  # fmt: skip
    assert reference_scores(rows) == [(5, 1, 1)] * 25


@pytest.mark.parametrize("zone", ["America/New_York", "Australia/Lord_Howe"])
def test_in_the_shops_time_zone_a_sale_day_is_one_recency_tie(zone):
    """45% of a shop last bought on its Black Friday evening, which straddles UTC midnight
    (New York) or a day with a half-hour DST change nearby (Lord Howe): everyone who last
    bought on one local date shares an R score, whatever its hour, and each score is a
    run of whole local dates. The dates are the test's own (datetime + zoneinfo)."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from online_models.days import days_in

    tz, rng = ZoneInfo(zone), random.Random(7)
    sale = datetime(2024, 11, 29, 17, 0, tzinfo=tz)
    states = []
    for i in range(1000):
        s = CustomerState(f"c{i}")
        if i < 450:  # the sale's evening, 17:00 to 23:59 local
            at = sale.timestamp() + rng.uniform(0, 7 * 3600 - 60)
        else:  # any time in the 60 days before
            at = sale.timestamp() - rng.uniform(3600, 60 * 86_400)
        s.apply_purchase(int(at * 1000), Decimal("20"), "o1")
        states.append(s)
    days = days_in(zone)
    hists = rfm_histograms()
    for s in states:
        for name, bucket in histogram_point(s, days).items():
            hists[name].counts[bucket] += 1
    as_of_ms = int(datetime(2024, 12, 2, 12, 0, tzinfo=tz).timestamp() * 1000)
    scorer = RFMScorer(**adaptive_edges(*hists.values(), as_of_ms / MS_PER_DAY, days=days))

    def local_date(s):
        return datetime.fromtimestamp(s.last_purchase_ms / 1000, UTC).astimezone(tz).date()

    r_of = {}
    for s in states:
        r = scorer.score((as_of_ms - s.last_purchase_ms) / MS_PER_DAY, 1, Decimal(20))[0]
        r_of.setdefault(local_date(s), set()).add(r)
    assert all(len(rs) == 1 for rs in r_of.values()), {d: rs for d, rs in r_of.items()
                                                       if len(rs) > 1}  # fmt: skip
    by_date = [next(iter(r_of[d])) for d in sorted(r_of)]
    assert by_date == sorted(by_date) and by_date[-1] == 5  # older dates never score higher
    assert len(r_of[sale.date()]) == 1 and r_of[sale.date()] == {5}

"""What `rtba profile` and `rtba segments` show: pure functions of a customer state, or
of the population facts, and an as-of time."""

from __future__ import annotations

from online_models.churn_risk import ChurnScorer
from online_models.clusters import ClusterSnapshot
from online_models.customer import MS_PER_DAY, CustomerState
from online_models.rfm import RFMScorer
from streams.processing.pipeline import rfm_features
from streams.processing.schemas import iso


def _cluster(state: CustomerState, clusters: ClusterSnapshot | None) -> dict:
    if state.cluster_id is None:
        return {"id": None, "label": None}
    label = None
    if clusters is not None and state.cluster_id in clusters.ids:
        label = clusters.profile(state.cluster_id)["label"]
    return {"id": state.cluster_id, "label": label}


def profile(
    state: CustomerState,
    as_of_ms: int,
    scorer: RFMScorer,
    churn: ChurnScorer | None = None,
    clusters: ClusterSnapshot | None = None,
) -> dict:
    """One customer's profile as of ``as_of_ms`` (keys as DESIGN.md lists them).

    Churn fields stay null until a churn model has been fitted; the cluster is the one
    assigned at the customer's last evaluation (null before the first snapshot).
    """
    risk = churn.score(state, as_of_ms) if churn is not None else None
    features = rfm_features(state, as_of_ms, scorer)
    scores = None
    segment = None
    if features:
        scores = {k: features[k] for k in ("r", "f", "m")}
        segment = scorer.at(as_of_ms).segment(features["recency_days"], state.purchases,
                                              state.monetary)  # fmt: skip
    top = sorted(state.categories.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    return {
        "customer_id": state.customer_id,
        "as_of": iso(as_of_ms),
        "first_purchase": iso(state.first_purchase_ms),
        "last_purchase": iso(state.last_purchase_ms),
        "last_event": iso(state.last_event_ms),
        "purchases": state.purchases,
        "purchase_days": state.purchase_days,
        "monetary": float(state.monetary),
        "repeat_value": float(state.repeat_value),
        "recency_days": state.recency_days(as_of_ms),
        "btyd": state.btyd(as_of_ms),
        "scores": scores,
        "segment": segment,
        "cluster": _cluster(state, clusters),
        "p_alive": risk["p_alive"] if risk else None,
        "churn_risk": risk["churn_risk"] if risk else None,
        "expected_purchases_30d": risk["expected_purchases_30d"] if risk else None,
        "expected_purchases_90d": risk["expected_purchases_90d"] if risk else None,
        "predicted_clv_365d": risk["predicted_clv_365d"] if risk else None,
        "churn_model": f"{churn.model.name} v{churn.version}" if churn else None,
        "clicks": dict(sorted(state.clicks.items())),
        "top_categories": [c for c, _ in top],
        # as of the customer's last evaluation (its latest event or due time)
        "audiences": {aid: iso(at) for aid, at in sorted(state.audiences.items())},
    }


SEGMENT_SUMS = ("lp_ms", "purchases", "cents")  # the per-segment sums the facts keep


def segment_sums(facts: dict[str, int]) -> dict[str, dict[str, int]]:
    """``seg:<name>`` and ``seg:<name>:<sum>`` fields by segment name."""
    by_name: dict[str, dict[str, int]] = {}
    for field, value in facts.items():
        if not field.startswith("seg:"):
            continue
        name, _, tail = field[4:].rpartition(":")
        if tail in SEGMENT_SUMS and name:
            by_name.setdefault(name, {})[tail] = value
        else:  # the count field: the whole rest is the name
            by_name.setdefault(field[4:], {})["n"] = value
    return by_name


def _segment_row(name: str, sums: dict[str, int], as_of_ms: int) -> dict:
    """A segment's size and means from its sums. Means of an empty segment are None,
    never a division by zero; the mean recency is taken from the mean last purchase and
    clamped at 0 (a mean, so no customer's own recency is clamped: docs/api.md)."""
    n = sums.get("n", 0)
    if n <= 0:
        return {"segment": name, "customers": max(n, 0), "mean_recency_days": None,
                "mean_frequency": None, "mean_monetary": None}  # fmt: skip
    mean_last_ms = sums.get("lp_ms", 0) / n
    return {
        "segment": name,
        "customers": n,
        "mean_recency_days": max(0.0, (as_of_ms - mean_last_ms) / MS_PER_DAY),
        "mean_frequency": sums.get("purchases", 0) / n,
        "mean_monetary": sums.get("cents", 0) / n / 100,
    }


def summary_from_facts(
    facts: dict[str, int],
    as_of_ms: int,
    scorer: RFMScorer,
    clusters: ClusterSnapshot | None = None,
) -> dict:
    """Size and mean R/F/M of every named segment, and every cluster's size, from the
    population facts (streams.state.facts: counters the workers keep with each write).

    Sizes count each customer's stored segment and cluster, those of its last evaluation
    (its latest event, or the tick that re-scored it as the watermark passed its due
    time). ``as_of_ms`` moves the mean recency only. Reads nothing but ``facts``: the
    cost does not grow with the population.
    """
    by_name = segment_sums(facts)
    # the names of the segment map in force, in its order; a stored name it lacks (none
    # expected: the map is the namespace's) still shows, after them
    names = [*scorer.segments, *sorted(set(by_name) - set(scorer.segments))]
    return {
        "as_of": iso(as_of_ms),
        "customers": facts.get("customers", 0),
        "without_purchase": facts.get("without_purchase", 0),
        "rfm": [_segment_row(name, by_name.get(name, {}), as_of_ms) for name in names],
        "clusters": cluster_rows(facts, clusters),
    }


def cluster_sizes(facts: dict[str, int]) -> dict[int, int]:
    """Cluster id -> customers whose stored cluster it is."""
    sizes = {}
    for field, value in facts.items():
        head, _, tail = field.partition(":")
        if head == "cluster" and tail.lstrip("-").isdigit() and value > 0:
            sizes[int(tail)] = value
    return sizes


def cluster_rows(facts: dict[str, int], clusters: ClusterSnapshot | None) -> list[dict]:
    """Every cluster of the snapshot, and any a customer still has, with its size."""
    if clusters is None:
        return []
    sizes = cluster_sizes(facts)
    rows = []
    for cluster_id in sorted(set(clusters.ids) | set(sizes)):
        row = (
            clusters.profile(cluster_id)
            if cluster_id in clusters.ids
            else {
                "id": cluster_id,
                "label": None,
                "centroid": None,  # died since, members not yet moved
            }
        )
        rows.append({**row, "customers": sizes.get(cluster_id, 0)})
    return rows


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _date(text: str | None) -> str:
    return text[:10] if text else "-"


def profile_text(row: dict) -> str:
    """A profile for a person: three lines, ISO dates, the churn risk and cluster label, and
    a fourth with its audiences when it is in some.

    >>> print(profile_text({"customer_id": "c1", "segment": "Champions", "purchases": 3,
    ...     "purchase_days": 2, "monetary": 1250.5, "first_purchase": "2026-01-02T10:00:00+00:00",
    ...     "last_purchase": "2026-11-30T09:00:00+00:00", "recency_days": 3.04, "churn_risk": 0.12,
    ...     "p_alive": 0.88, "expected_purchases_90d": 1.5, "predicted_clv_365d": 410.0,
    ...     "cluster": {"id": 2, "label": "frequent, big baskets"}, "top_categories": ["toys"],
    ...     "audiences": {"gift-browsers": "2026-11-29T18:00:00+00:00"}}))
    c1  Champions  cluster 2 (frequent, big baskets)
      3 purchases on 2 days, 1,250.50 spent; first 2026-01-02, last 2026-11-30 (3.0 days ago)
      churn risk 0.12 (alive 0.88), 1.5 purchases expected in 90 days, CLV 410.00; top: toys
      audiences: gift-browsers (since 2026-11-29)
    """
    cluster = row.get("cluster") or {}
    if cluster.get("id") is None:
        where = "no cluster yet"
    else:
        where = f"cluster {cluster['id']}" + (
            f" ({cluster['label']})" if cluster.get("label") else ""
        )
    recency = row.get("recency_days")
    ago = "" if recency is None else f" ({recency:.1f} days ago)"
    expected = row.get("expected_purchases_90d")
    if row.get("churn_risk") is None:
        risk = "no churn model yet"
    else:
        risk = f"churn risk {_share(row['churn_risk'])} (alive {_share(row.get('p_alive'))})"
        if expected is not None:
            risk += f", {expected:.1f} purchases expected in 90 days"
        risk += f", CLV {_money(row.get('predicted_clv_365d'))}"
    top = ", ".join(row.get("top_categories") or []) or "-"
    audiences = row.get("audiences") or {}
    inside = ", ".join(f"{aid} (since {_date(at)})" for aid, at in audiences.items())
    return (
        f"{row['customer_id']}  {row.get('segment') or 'no purchase yet'}  {where}\n"
        f"  {_plural(row['purchases'], 'purchase')} on {_plural(row['purchase_days'], 'day')}, "
        f"{_money(row['monetary'])} spent; first {_date(row['first_purchase'])}, "
        f"last {_date(row['last_purchase'])}{ago}\n"
        f"  {risk}; top: {top}" + (f"\n  audiences: {inside}" if inside else "")
    )


def table(rows: list[list[str]], header: list[str]) -> str:
    """Plain columns: text left, numbers right.

    >>> print(table([["events", "1,024"], ["dlq", "3"]], ["counter", "value"]))
    counter   value
    events    1,024
    dlq           3
    """
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def numeric(cell: str) -> bool:
        return cell.replace(",", "").replace(".", "").replace("-", "").isdigit()

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "   ".join(c.rjust(w) if numeric(c) and i else c.ljust(w) for i, (c, w) in pairs)

    return "\n".join(line([str(c) for c in r]).rstrip() for r in [header, *rows])

"""Reading what the pipeline keeps in Redis, for the CLI and the API: states, the models in
force, the as-of time, segment and cluster sizes from the population facts (a few small
hashes, whatever the population), member and money-ranking pages from the index the
writers keep (streams.read.ranking), the ranking by churn risk from the day cells
(streams.read.risk_ranking), and, for what neither holds (a ranking by CLV, members as
of another time), a walk over every customer a page at a time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from online_models.customer import CustomerState
from streams.processing.schemas import iso
from streams.processing.worker import current_models
from streams.read import ranking, risk_ranking
from streams.read.views import profile, summary_from_facts
from streams.settings import Settings
from streams.state.claims import is_whole
from streams.state.facts import namespace_days, read_facts
from streams.state.keys import Keys
from streams.state.store import all_customer_ids, connect, read_marks, read_states

PAGE = 1000  # customers read per round trip while walking everyone


class StateReader:
    """One Redis client and the key names of one namespace; models are read on each call
    so that a long-lived reader (the API) follows refits and new snapshots."""

    def __init__(self, settings: Settings, client=None):
        self.settings = settings
        self.client = (
            client
            if client is not None
            else connect(settings.redis_url, **settings.redis_options())
        )
        self.keys = Keys(settings.namespace)

    def models(self):
        return current_models(self.client, self.keys, self.settings)

    def as_of(self, given: int | None = None) -> int:
        """``given``, else the watermark, else now."""
        if given is not None:
            return given
        watermark = read_marks(self.client, self.keys).watermark()
        return watermark if watermark is not None else int(time.time() * 1000)

    def states(self, ids: list[str]) -> list[CustomerState]:
        return read_states(self.client, self.keys, ids)

    def everyone(self) -> Iterator[CustomerState]:
        """Every customer's state in customer-id order, a page at a time."""
        ids = all_customer_ids(self.client, self.keys)
        for start in range(0, len(ids), PAGE):
            yield from self.states(ids[start : start + PAGE])

    def profiles(self, as_of_ms: int, models=None) -> Iterator[dict]:
        models = models or self.models()
        for state in self.everyone():
            yield profile(state, as_of_ms, models.rfm, models.churn, models.clusters)

    def profile(self, state: CustomerState, as_of_ms: int, models=None) -> dict:
        models = models or self.models()
        return profile(state, as_of_ms, models.rfm, models.churn, models.clusters)

    def summary(self, as_of_ms: int, models=None) -> dict:
        """Every segment's and cluster's size and profile from the population facts, no
        walk (streams.read.views.summary_from_facts): sizes as of each customer's last
        evaluation, which the leader's tick keeps up with the watermark (also given);
        ``as_of_ms`` moves the mean recency."""
        models = models or self.models()
        facts = read_facts(self.client, self.keys)
        out = summary_from_facts(facts, as_of_ms, models.rfm, models.clusters)
        watermark = read_marks(self.client, self.keys).watermark()
        return {**out, "watermark": None if watermark is None else iso(watermark)}

    def indexed(self, prefix: str, as_of_ms: int, limit: int, after: str | None = None,
                offset: int = 0) -> tuple[list[dict], str | None]:  # fmt: skip
        """A page of the member and ranking index (streams.read.ranking) as profiles as of
        ``as_of_ms``, and the cursor of the next page: no walk."""
        found = ranking.page(self.client, self.keys, prefix, limit, after, offset)
        models = self.models()
        rows = [self.profile(state, as_of_ms, models) for state in self.states(found.ids)]
        return rows, found.next

    def by_churn_risk(self, as_of_ms: int, limit: int, after: str | None = None,
                      offset: int = 0) -> tuple[list[dict], str | None, int] | None:  # fmt: skip
        """A page of the ranking by churn risk (P(alive) ascending, then id) as profiles,
        the next page's cursor and how many are ranked, from the day cells
        (streams.read.risk_ranking): no walk. None where the cells cannot serve it (the
        index does not hold every cell's members: a namespace older than them until
        ``rtba verify --repair``); ([], None, 0) before a churn model is fitted."""
        models = self.models()
        if models.churn is None:
            return [], None, 0
        if not is_whole(self.client, self.settings.namespace, "cell_members"):
            return None
        days = namespace_days(self.client, self.keys, self.settings.days())
        found = risk_ranking.page(self.client, self.keys, models.churn, days, as_of_ms, limit,
                                  after, offset)  # fmt: skip
        rows = [self.profile(state, as_of_ms, models) for state in found.states]
        return rows, found.next, found.total

    def members(self, keep: Callable[[dict], bool], as_of_ms: int) -> Iterator[dict]:
        """The profiles ``keep`` accepts, in customer-id order."""
        return (row for row in self.profiles(as_of_ms) if keep(row))

    def close(self) -> None:
        self.client.close()

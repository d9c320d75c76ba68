"""Every Redis key name rtba uses, built in this one place.

A customer's keys share the hash tag ``{customer_id}`` so that one script call
touching all of them stays in one Redis Cluster slot. Redis takes the tag from the
first ``{`` to the next ``}``, so an id holding a brace would end the tag early (or
leave it empty, and then each key hashes whole, to different slots): ``%``, ``{``
and ``}`` are percent-encoded inside the tag. Every other id is its own tag.
"""

from __future__ import annotations

# Shards of the due index (due_summary): each its own hash tag, so the index spreads over
# a Cluster's slots, and each worker re-scores the shards of its own partitions
# (streams.state.due_index.shards_of). Fixed: a customer's shard is part of its keys' names.
DUE_SHARDS = 64
# Shards of the counters (stats_shard): fewer than the due index's, since a reader sums them.
STATS_SHARDS = 16

_TAG_ESCAPES = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D"})


def hash_tag(customer_id: str) -> str:
    """The customer's hash tag, braces included: one per id, and free of braces inside.

    >>> hash_tag("c000001"), hash_tag("}{"), hash_tag("50%{off}")
    ('{c000001}', '{%7D%7B}', '{50%25%7Boff%7D}')
    """
    return "{" + customer_id.translate(_TAG_ESCAPES) + "}"


_SLOT_TAGS: list[str] = []


def slot_tag(slot: int) -> str:
    """A hash tag, braces included, whose keys go to Cluster slot ``slot`` (0..16383): the
    first of the hex numbers 0, 1, 2, ... that hashes there (made once, in ~0.2 s).

    >>> from redis.crc import key_slot
    >>> all(key_slot(f"x{slot_tag(s)}".encode()) == s for s in (0, 1, 16383))
    True
    """
    if not _SLOT_TAGS:
        from redis.crc import key_slot

        found: dict[int, str] = {}
        n = 0
        while len(found) < 16_384:
            tag = format(n, "x")
            found.setdefault(key_slot(tag.encode()), tag)
            n += 1
        _SLOT_TAGS.extend("{" + found[s] + "}" for s in range(16_384))
    return _SLOT_TAGS[slot]


class Keys:
    def __init__(self, namespace: str):
        self.namespace = namespace

    def customer(self, customer_id: str) -> str:
        """String: the customer's RFM and behaviour state and its orders within the order
        horizon, ``<version>|<payload>`` (streams.state.state_codec)."""
        return f"{self.namespace}:c:{hash_tag(customer_id)}"

    def outbox(self, customer_id: str) -> str:
        """Hash: event id -> output event not yet acknowledged by Kafka
        (streams.processing.outbox)."""
        return f"{self.namespace}:c:{hash_tag(customer_id)}:outbox"

    def outbox_index(self, shard: int) -> str:
        """Sorted set: one shard of the outbox index, customers whose outbox may hold
        entries, scored by the version of the write that last added some (an index, so
        recovery needs no scan). A customer is in its due-index shard's
        (streams.state.due_index.customer_shard); each shard has its own hash tag, so the
        index, written at every batch that emits, spreads over DUE_SHARDS slots."""
        return f"{self.namespace}:outbox:{{{self.namespace}:outbox:{shard}}}"

    @property
    def unsharded_outbox_index(self) -> str:
        """Sorted set: the outbox index as rtba kept it before it was sharded. Only read to
        move it to the shards (streams.state.store.reshard_indexes)."""
        return f"{self.namespace}:outbox"

    @property
    def watermark(self) -> str:
        """Hash: max_event_ts and explicit watermark, epoch ms."""
        return f"{self.namespace}:watermark"

    def due_summary(self, shard: int) -> str:
        """Sorted set: one due-index shard's summary, bucket number -> the least due time
        (ms) in that bucket (streams.state.due_index). The shard's keys share the tag
        ``{<ns>:due:<shard>}``: a call over several of its buckets stays in one Cluster
        slot, and the DUE_SHARDS shards spread the index over slots."""
        return f"{self.namespace}:due:{{{self.namespace}:due:{shard}}}"

    def due_bucket(self, bucket: int) -> str:
        """Sorted set: one bucket of the due index, customer id -> the event time (ms) it
        is next due for re-scoring, ``+inf`` while nothing is due. The buckets list every
        customer with state; bucket b is in shard b % DUE_SHARDS."""
        return f"{self.due_summary(bucket % DUE_SHARDS)}:{bucket}"

    @property
    def unsharded_due(self) -> str:
        """Sorted set: the summary of the due index as rtba kept it before it was sharded
        (one hash tag for the whole index); its buckets were this name + ``:<bucket>``.
        Only read to move such an index to the shards (streams.state.due_index.reshard)."""
        return f"{self.namespace}:due:{{{self.namespace}:due}}"

    @property
    def churn_model(self) -> str:
        """Hash: ``version`` and ``json`` of the fitted churn and spend models."""
        return f"{self.namespace}:model:churn"

    def facts(self, shard: int) -> str:
        """Hash: one shard of the population facts, field -> int (streams.state.facts). Its
        hash tag maps to Cluster slot ``shard``: on a Cluster a customer's contribution is
        in its own slot's shard (written in its write's script call); a single server has
        shards 0..15."""
        return f"{self.namespace}:facts:{slot_tag(shard)}"

    def cells(self, shard: int) -> str:
        """Hash: one shard of the day cells, ``<x>:<first purchase day>:<last purchase
        day>`` -> customers (streams.state.facts, the churn refit's population). Sharded
        and written as :meth:`facts` (same slot tag, same script call), but a hash of its
        own: /segments reads the facts, which stay small."""
        return f"{self.namespace}:cells:{slot_tag(shard)}"

    def index(self, shard: int) -> str:
        """Sorted set, every score 0: one shard of the member and ranking index, entries
        ``s:<segment>:<id>``, ``k:<cluster>:<id>``, ``m:<inverted money>:<id>`` read by
        lexical range (streams.read.ranking). Sharded and written as :meth:`facts`
        (same slot tag, same script call), so it stays exact as the facts do."""
        return f"{self.namespace}:index:{slot_tag(shard)}"

    @property
    def rfm_model(self) -> str:
        """Hash: ``version`` and ``json`` of the adaptive RFM edges in force."""
        return f"{self.namespace}:model:rfm"

    @property
    def cluster_model(self) -> str:
        """Hash: ``version``, ``json`` (the snapshot workers assign with) and ``learner``
        (the trainer's StableClusterer as JSON, ``to_dict``: never a pickle; so ids survive
        a restart)."""
        return f"{self.namespace}:model:clusters"

    @property
    def cluster_sweep(self) -> str:
        """Hash: the leader's progress assigning customers to a new cluster snapshot
        (``sweeping`` version, the pass's ``cursor`` bucket and ``after`` order key:
        streams.state.sweep, last fully ``swept`` version)."""
        return f"{self.namespace}:sweep:clusters"

    @property
    def audiences(self) -> str:
        """Hash: ``version`` (raised by each `rtba audience apply`), ``json`` (the
        definitions in force, streams.audiences.definitions) and ``applied_at_ms``."""
        return f"{self.namespace}:audiences"

    def audience_members(self, audience_id: str) -> str:
        """Sorted set: the audience's members, customer id -> when it entered (event time,
        ms). A view of the memberships in the customers' states, kept by the writers."""
        return f"{self.namespace}:audience:{audience_id}"

    @property
    def audience_sweep(self) -> str:
        """Hash: the leader's backfill of new audience definitions (``sweeping`` version,
        ``cursor`` and ``after`` as the cluster sweep's, last fully ``swept`` version,
        customers ``done`` of ``total``)."""
        return f"{self.namespace}:sweep:audiences"

    @property
    def pseudonym(self) -> str:
        """String: the fingerprint of the RTBA_PSEUDONYM_KEY the namespace's ids are
        pseudonymised with (streams.privacy.fingerprint; never the key), or ``none``: raw
        ids. Set by the first worker (streams.privacy.claim_key)."""
        return f"{self.namespace}:pseudonym"

    @property
    def timezone(self) -> str:
        """String: the IANA zone the namespace counts purchase days in (RTBA_TIMEZONE), set
        by its first worker (streams.state.timezone)."""
        return f"{self.namespace}:timezone"

    @property
    def segment_map(self) -> str:
        """String: the segment map (RTBA_SEGMENT_MAP) the namespace's segment names are
        given under, set by its first worker (streams.state.claims)."""
        return f"{self.namespace}:segment_map"

    @property
    def spend_cells(self) -> str:
        """String: ``kept`` when the namespace's spend cells (streams.state.facts) hold
        every customer: its first worker started with them, or `rtba verify --repair`
        made them whole; ``missing`` (or absent) otherwise, and the churn refit fits
        Gamma-Gamma on the customer sample (streams.state.claims)."""
        return f"{self.namespace}:spend_cells"

    @property
    def cell_members(self) -> str:
        """String: ``kept`` when every customer with a purchase has its day cell's ``d:``
        entry in the index (streams.state.facts.index_entries), so a new churn model can
        wake customers by cell (streams.state.due_cells); ``missing`` (or absent): the
        refit's re-schedule walks everyone (streams.state.claims)."""
        return f"{self.namespace}:cell_members"

    @property
    def due_cells(self) -> str:
        """Sorted set: ``<shard>:<day cell>`` -> the event time (ms) the cell's members in
        that index shard are due for re-scoring under a new churn model (streams.state.
        due_cells). One key: a refit writes an entry per cell, the leader's tick takes them.
        Its name is from before the due index was sharded."""
        return f"{self.namespace}:due:{{{self.namespace}:due}}:cells"

    @property
    def erased(self) -> str:
        """Hash: ``salt`` (random, made once) and, per erased customer, ``h:`` + the
        HMAC-SHA256 of its id under the salt -> when it was erased (wall clock, ms): how
        `rtba dlq --redrive` knows whom to skip without keeping an id
        (streams.state.erase)."""
        return f"{self.namespace}:erased"

    @property
    def audit(self) -> str:
        """Stream: the audit log of erasures (who, when, from where, the id's hash, the
        outcome), capped at streams.audit.MAX_ENTRIES."""
        return f"{self.namespace}:audit"

    @property
    def aof_rewrite(self) -> str:
        """String: set for a minute when an erase starts an AOF rewrite (the rate limit)."""
        return f"{self.namespace}:aof-rewrite"

    @property
    def aof_rewrite_retention(self) -> str:
        """String: set for an hour when a retention erase starts an AOF rewrite."""
        return f"{self.namespace}:aof-rewrite:retention"

    @property
    def topic(self) -> str:
        """Hash: the events topic's Kafka ``id`` and its ``epoch`` (incarnation number)."""
        return f"{self.namespace}:topic"

    @property
    def dashboard_history(self) -> str:
        """List: the API's dashboard samples (segment and cluster sizes, counters, lag), JSON,
        newest first, capped at RTBA_DASHBOARD_HISTORY."""
        return f"{self.namespace}:dashboard:history"

    @property
    def dashboard_lease(self) -> str:
        """String: the API process taking this interval's dashboard sample (SET NX PX)."""
        return f"{self.namespace}:dashboard:lease"

    @property
    def stats(self) -> str:
        """Hash: counters (events applied, duplicates, dlq and dlq:<reason>): the rare ones
        (refit failures) and every count made before the counters were sharded. A counter's
        value is its sum over :meth:`stats_keys`."""
        return f"{self.namespace}:stats"

    def stats_shard(self, shard: int) -> str:
        """Hash: one of STATS_SHARDS shards of the counters, each its own hash tag: a batch
        or a tick adds its counts to one shard, taken in turns, so the counters written at
        every batch spread over slots (streams.state.store.read_stats sums them)."""
        return f"{self.namespace}:stats:{{{self.namespace}:stats:{shard}}}"

    @property
    def stats_keys(self) -> list[str]:
        """Every hash a counter's value is summed over."""
        return [self.stats, *(self.stats_shard(s) for s in range(STATS_SHARDS))]

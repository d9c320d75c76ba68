"""Keyed pseudonymisation of customer ids at ingestion (docs/privacy.md).

With ``RTBA_PSEUDONYM_KEY`` set, a worker replaces each event's ``customer_id``, and the
``order_id`` and ``event_id`` it keeps for de-duplication (producers often build those
from the customer id), by HMAC-SHA256 under the key, before anything is folded. Redis and
the output topics then hold only pseudonyms. The mapping is deterministic, so
de-duplication, refunds and replays work as before; without the key no one can go from
a pseudonym back to the id, nor compute the pseudonym of an id.

Ingestion pseudonymises every id, one that looks like a pseudonym (``p_`` + 32 hex) too,
and lookups do the same: commands and API routes take the id the producers sent. A
stored pseudonym (as read off an output event) is named explicitly, ``pseudonym:p_...``,
a form no customer id may take (streams.processing.schemas).

The key's fingerprint (an HMAC of a fixed label under the key, never the key) is kept in
the namespace by the first worker, or ``none`` when that worker has no key or the
namespace applied events before fingerprints were kept (its ids are raw). A worker,
command or route with another key, with none where the namespace has one, or with one
where the namespace holds raw ids, stops with one line instead of answering "not found"
for every customer (or storing real ids beside pseudonyms).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from streams.errors import ConfigError
from streams.processing.schemas import STORED_PSEUDONYM, canonical_id

PREFIX = "p_"
_FINGERPRINT_LABEL = b"rtba-key-fingerprint"
RAW = "none"  # the namespace's marker for raw ids: no fingerprint starts so (they take k_)

OTHER_KEY = (
    "this namespace's ids are pseudonymised with another key: set RTBA_PSEUDONYM_KEY to the "
    "key the workers use"
)
NO_KEY = (
    "this namespace's ids are pseudonymised and RTBA_PSEUDONYM_KEY is not set: set it (or "
    "RTBA_PSEUDONYM_KEY_FILE) to the key the workers use"
)


def raw_ids(namespace: str) -> str:
    """The one line for a key used on a namespace of raw ids."""
    return (
        f"namespace {namespace!r} holds raw ids: unset RTBA_PSEUDONYM_KEY, or replay into a "
        "fresh namespace"
    )


class PseudonymKeyError(ConfigError):
    """The key in use is not the one the namespace's ids were pseudonymised with (exit 2)."""


class Pseudonyms:
    """``pseudonyms(value)``: the pseudonym of one id under the key.

    >>> p = Pseudonyms("a-key-of-16-chars-or-more")
    >>> p("c000001") == p("c000001") != p("c000002"), p("c000001")[:2], len(p("c000001"))
    (True, 'p_', 34)
    >>> p.lookup("c000001") == p("c000001") == p.lookup("pseudonym:" + p("c000001"))
    True
    >>> p.lookup(p("c000001")) == p(p("c000001"))  # a raw id that looks like one
    True
    """

    def __init__(self, key: str):
        self._key = key.encode()

    def __call__(self, value: str) -> str:
        digest = hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()
        return PREFIX + digest[:32]  # 128 bits: no collision in any real population

    def lookup(self, given: str) -> str:
        """The id a customer is stored under: the pseudonym of ``given``, as ingestion
        computes it, or the pseudonym ``given`` names as ``pseudonym:p_...``."""
        named = STORED_PSEUDONYM.match(given)
        return named.group(1) if named else self(given)


def fingerprint(key: str) -> str:
    """What the namespace keeps to recognise its key: 64 bits of HMAC-SHA256 of a fixed
    label under the key. It tells keys apart and gives nothing to find the key with.

    >>> fingerprint("a-key-of-16-chars-or-more") == fingerprint("a-key-of-16-chars-or-more")
    True
    >>> len(fingerprint("a-key-of-16-chars-or-more")), fingerprint("another-key-of-16-chars")[:2]
    (18, 'k_')
    """
    return "k_" + hmac.new(key.encode(), _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:16]


def key_problem(stored: str | None, key: str | None, namespace: str = "") -> str | None:
    """Why ``key`` cannot look up (or write) a namespace that keeps ``stored``, or None.

    A namespace no worker has claimed takes any key, or none; one marked ``none`` (raw
    ids) takes none only.

    >>> key_problem(None, None), key_problem(None, "k" * 16), key_problem(fingerprint("k" * 16), "k" * 16)
    (None, None, None)
    >>> key_problem(fingerprint("k" * 16), None) == NO_KEY, key_problem(fingerprint("k" * 16), "j" * 16) == OTHER_KEY
    (True, True)
    >>> key_problem(RAW, None), key_problem(RAW, "k" * 16, "shop") == raw_ids("shop")
    (None, True)
    """  # noqa: E501
    if stored is None:
        return None
    if stored == RAW:
        return None if key is None else raw_ids(namespace)
    if key is None:
        return NO_KEY
    return None if hmac.compare_digest(stored, fingerprint(key)) else OTHER_KEY


def _raise_if_unfit(stored: str | None, key: str | None, namespace: str) -> None:
    if problem := key_problem(stored, key, namespace):
        raise PseudonymKeyError(problem)


def check_key(settings, client) -> None:
    """Raise PseudonymKeyError when this process's key does not fit the namespace."""
    from streams.state.claims import stored
    from streams.state.keys import Keys

    key = settings.secret("pseudonym_key")
    namespace = settings.namespace
    _raise_if_unfit(stored(client, Keys(namespace).pseudonym), key, namespace)


def claim_key(settings, client) -> None:
    """A worker's start: the first one stores its key's fingerprint, or ``none`` without a
    key (streams.state.claims: SET NX, so two workers starting at once agree on one); a
    namespace that applied events before fingerprints were kept holds raw ids (``none``).
    A worker whose key does not fit refuses."""
    from streams.state.claims import claim
    from streams.state.keys import Keys

    key = settings.secret("pseudonym_key")
    namespace = settings.namespace
    mine = fingerprint(key) if key is not None else RAW
    _raise_if_unfit(claim(client, namespace, Keys(namespace).pseudonym, mine, RAW), key, namespace)


def customer_refs(settings, client) -> Callable[[str], str]:
    """For one command or request: the function from an id as given on the command line
    or in a URL to the id it is stored under (after checking the key fits the namespace).

    This is the one place where lookups spell an id the way ingestion stores it: blanks
    dropped, NFC, then pseudonymised when the key is set.
    """
    check_key(settings, client)
    key = settings.secret("pseudonym_key")
    pseudonyms = Pseudonyms(key) if key else None

    def ref(given: str) -> str:
        given = canonical_id(given)
        return pseudonyms.lookup(given) if pseudonyms else given

    return ref


def customer_ref(settings, client, given: str) -> str:
    """The id one customer given on the command line or in a URL is stored under."""
    return customer_refs(settings, client)(given)

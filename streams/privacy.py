"""Keyed pseudonymisation of customer ids at ingestion (docs/privacy.md).

With ``RTBA_PSEUDONYM_KEY`` set, a worker replaces each event's ``customer_id``, and the
``order_id`` and ``event_id`` it keeps for de-duplication (producers often build those
from the customer id), by HMAC-SHA256 under the key, before anything is folded. Redis and
the output topics then hold only pseudonyms. The mapping is deterministic, so
de-duplication, refunds and replays work as before; without the key no one can go from
a pseudonym back to the id, nor compute the pseudonym of an id.

Commands and API routes that take a customer id take the real one (or the pseudonym
itself) and look it up by its pseudonym.
"""

from __future__ import annotations

import hashlib
import hmac
import re

PREFIX = "p_"
_PSEUDONYM = re.compile(r"^p_[0-9a-f]{32}$")


class Pseudonyms:
    """``pseudonyms(value)``: the pseudonym of one id under the key.

    >>> p = Pseudonyms("a-key-of-16-chars-or-more")
    >>> p("c000001") == p("c000001") != p("c000002"), p("c000001")[:2], len(p("c000001"))
    (True, 'p_', 34)
    >>> p.lookup(p("c000001")) == p("c000001") == p.lookup("c000001")
    True
    """

    def __init__(self, key: str):
        self._key = key.encode()

    def __call__(self, value: str) -> str:
        digest = hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()
        return PREFIX + digest[:32]  # 128 bits: no collision in any real population

    def lookup(self, given: str) -> str:
        """The id a customer is stored under: ``given``'s pseudonym, or ``given`` when
        it is one already (as read off an output event)."""
        return given if _PSEUDONYM.match(given) else self(given)


def customer_ref(settings, given: str) -> str:
    """The id a customer given on the command line or in a URL is stored under."""
    key = settings.secret("pseudonym_key")
    return Pseudonyms(key).lookup(given) if key else given

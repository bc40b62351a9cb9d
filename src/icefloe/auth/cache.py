"""Verified keys for a few seconds, so a model call or API request needs no database read.

Entries are found by the SHA-256 of the presented secret (never the secret itself); a miss
is verified against the store (salted hash, constant-time compare). Refused secrets are
remembered apart from good ones, so a flood of bad keys cannot push good keys out.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

from icefloe.auth import digests, keys
from icefloe.auth.principals import Principal
from icefloe.errors import InvalidInputError
from icefloe.store.db import Database

Scope = MutableMapping[str, Any]


def presented_secret(scope: Scope) -> str | None:
    """The secret of a request's ``Authorization: Bearer`` header, or None.

    Raises:
        InvalidInputError: The request has more than one Authorization header (which one a
            proxy and this server would each believe is not for us to guess).
    """
    found: bytes | None = None
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            if found is not None:
                raise InvalidInputError("the request has more than one Authorization header")
            found = value
    if found is None:
        return None
    scheme, _, token = found.decode("latin-1").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class KeyCache:
    """Principals of recently verified secrets.

    Args:
        db: The platform DB holding keys and run tokens.
        ttl: Seconds a good key stays cached (revoking through this process clears it).
        max_entries: Good keys kept at most; refused ones have a bound of their own.
    """

    def __init__(self, db: Database, ttl: float = 10.0, max_entries: int = 10_000) -> None:
        self.db = db
        self.ttl = ttl
        self.max_entries = max_entries
        self._good: dict[bytes, tuple[float, Principal]] = {}
        self._bad: dict[bytes, float] = {}

    def verify(self, presented: str, *, lookup: bool = True) -> Principal | None:
        """The principal of a presented secret, or None.

        Args:
            presented: The secret as sent.
            lookup: Ask the store on a cache miss (False: cached good keys only, for a
                source that is being slowed down after many refusals).
        """
        digest = digests.cache_digest(presented)
        now = time.monotonic()
        hit = self._good.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        refused_until = self._bad.get(digest)
        if not lookup or (refused_until is not None and refused_until > now):
            return None
        with self.db.session() as s:
            principal = keys.verify(s, presented)
        if principal is None:
            if len(self._bad) >= self.max_entries:
                self._bad = {}
            self._bad[digest] = now + 1.0  # briefly: a flood of one bad key stays cheap
            return None
        if len(self._good) >= self.max_entries:
            self._good = {d: e for d, e in self._good.items() if e[0] > now}
            if len(self._good) >= self.max_entries:
                self._good = {}
        # A run token is cached only briefly: it must stop working when its run ends.
        ttl = self.ttl if principal.run_id is None else min(self.ttl, 1.0)
        self._good[digest] = (now + ttl, principal)
        return principal

    def from_scope(self, scope: Scope, *, lookup: bool = True) -> Principal | None:
        """The principal of a request's bearer secret, or None.

        Raises:
            InvalidInputError: More than one Authorization header.
        """
        presented = presented_secret(scope)
        return self.verify(presented, lookup=lookup) if presented is not None else None

    def forget_run(self, run_id: str) -> None:
        """Forget a run's token at once (its run has ended)."""
        self._good = {d: e for d, e in self._good.items() if e[1].run_id != run_id}

    def clear(self) -> None:
        """Forget every entry (after a key was revoked or a run ended)."""
        self._good, self._bad = {}, {}

"""Verified keys for a few seconds, so a model call or API request needs no database read.

Entries are found by the SHA-256 of the presented secret (never the secret itself).
:meth:`KeyCache.cached` answers from memory only and never waits (the event loop calls it
for every request); a miss is verified against the store (salted hash, constant-time
compare) by :meth:`KeyCache.check`, off the event loop in a small thread pool, with one
lookup per secret however many requests wait for it. Refused secrets are remembered apart
from good ones, so a flood of bad keys cannot push good keys out.

A good key is checked again once ``ttl`` seconds have passed, in the background: until that
check answers the key keeps working, for at most ``stale`` seconds more, so a database that
is slow or locked does not stall callers whose keys are known. Revoking through this process
and the end of a run forget keys at once; a key revoked elsewhere stops working within
``ttl`` seconds (``ttl + stale`` while the database does not answer). Run tokens and access
tokens are trusted for a second at most and never used stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import threading
import time
from collections.abc import Callable, MutableMapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from icefloe.auth import digests, keys
from icefloe.auth.principals import Principal
from icefloe.errors import InvalidInputError, UnavailableError
from icefloe.store.db import Database

Scope = MutableMapping[str, Any]
log = logging.getLogger(__name__)
MAX_LOOKUPS = 1000  # distinct secrets waiting for the store at once; more are answered 503


class Miss(enum.Enum):
    """The answer of :meth:`KeyCache.cached` for a secret it does not know."""

    MISS = "miss"


MISS: Final = Miss.MISS


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
        ttl: Seconds a good key is trusted before it is checked again (revoking through
            this process clears it).
        max_entries: Good keys kept at most; refused ones have a bound of their own.
        stale: Seconds past ``ttl`` a good API key keeps working while its new check waits
            for the database.
        threads: Threads that ask the database (never the event loop).
        verify: How the store checks a secret (API keys and tokens; the web UI's cache
            checks session cookies).
    """

    def __init__(self, db: Database, ttl: float = 10.0, max_entries: int = 10_000,
                 stale: float = 60.0, threads: int = 4,
                 verify: Callable[[Session, str], Principal | None] = keys.verify) -> None:
        self.db = db
        self._verify = verify
        self.ttl = ttl
        self.max_entries = max_entries
        self.stale = stale
        # digest -> (trusted until, principal, usable until while being checked again).
        # Read without a lock (one dict lookup each); changed and iterated only under _lock.
        self._good: dict[bytes, tuple[float, Principal, float]] = {}
        self._bad: dict[bytes, float] = {}
        self._lock = threading.Lock()
        self._generation = 0  # bumped when keys are forgotten: older lookups are not kept
        self._lookups: dict[tuple[bytes, int], Future[Principal | None]] = {}
        self._lookups_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="icefloe-keys")

    # -- the event loop's side: memory only ----------------------------------------------------

    def cached(self, presented: str) -> Principal | None | Miss:
        """The principal of a secret if known, None if recently refused, else :data:`MISS`.

        Never waits for the database. A good key past its ``ttl`` is still answered (within
        ``stale``) while a check of it starts in the background.
        """
        digest = digests.cache_digest(presented)
        now = time.monotonic()
        hit = self._good.get(digest)
        if hit is not None:
            if hit[0] > now:
                return hit[1]
            if hit[2] > now:
                self._refresh(digest, presented, hit, now)
                return hit[1]
        refused_until = self._bad.get(digest)
        if refused_until is not None and refused_until > now:
            return None
        return MISS

    async def check(self, presented: str) -> Principal | None:
        """Verify a secret :meth:`cached` did not know, in the thread pool; the event loop
        goes on meanwhile. Requests presenting the same secret share one lookup.

        Raises:
            UnavailableError: The database did not answer, or too many checks wait for it.
        """
        future = self._lookup(digests.cache_digest(presented), presented)
        # Shielded: a caller that goes away must not cancel the lookup others wait for.
        return await asyncio.shield(asyncio.wrap_future(future))

    def _refresh(self, digest: bytes, presented: str, hit: tuple[float, Principal, float],
                 now: float) -> None:
        """Check a key again in the background; trusted a moment longer meanwhile, so the
        calls until the answer stay on the fast path."""
        with self._lock:
            if self._good.get(digest) is hit:
                self._good[digest] = (min(now + 1.0, hit[2]), hit[1], hit[2])
        # Too many lookups waiting: the next call after the moment tries again.
        with contextlib.suppress(UnavailableError):
            self._lookup(digest, presented)

    # -- the pool's side: the database ----------------------------------------------------------

    def _lookup(self, digest: bytes, presented: str) -> Future[Principal | None]:
        with self._lookups_lock:
            # Keyed by generation too: a request after a revocation never shares a lookup
            # that read the key before it.
            key = (digest, self._generation)
            future = self._lookups.get(key)
            if future is None:
                if len(self._lookups) >= MAX_LOOKUPS:
                    raise UnavailableError("too many key checks are waiting for the platform "
                                           "database; try again")
                future = self._pool.submit(self._look_up, digest, presented, key[1])
                self._lookups[key] = future
        return future

    def _look_up(self, digest: bytes, presented: str, generation: int) -> Principal | None:
        try:
            try:
                with self.db.session() as s:
                    principal = self._verify(s, presented)
            except SQLAlchemyError as exc:
                log.warning("a key check failed: the platform database did not answer (%s)",
                            type(exc).__name__)
                raise UnavailableError("the platform database did not answer the key "
                                       "check; try again") from None
            self._remember(digest, principal, generation)
            return principal
        finally:
            with self._lookups_lock:
                self._lookups.pop((digest, generation), None)

    def _remember(self, digest: bytes, principal: Principal | None, generation: int) -> None:
        now = time.monotonic()
        with self._lock:
            if generation != self._generation:
                return  # keys were forgotten while this one was looked up: do not keep it
            if principal is None:
                self._good.pop(digest, None)  # revoked elsewhere, found on a new check
                if len(self._bad) >= self.max_entries:
                    self._bad = {}
                self._bad[digest] = now + 1.0  # briefly: a flood of one bad key stays cheap
                return
            if digest not in self._good and len(self._good) >= self.max_entries:
                self._good = {d: e for d, e in self._good.items() if e[2] > now}
                if len(self._good) >= self.max_entries:
                    self._good = {}
            # Run and access tokens are trusted only briefly and never stale: they must stop
            # working when their run ends or they expire.
            if not principal.short_lived:
                self._good[digest] = (now + self.ttl, principal, now + self.ttl + self.stale)
            else:
                until = now + min(self.ttl, 1.0)
                self._good[digest] = (until, principal, until)

    # -- for code that may wait (not the event loop) -------------------------------------------

    def verify(self, presented: str, *, lookup: bool = True) -> Principal | None:
        """The principal of a presented secret, or None; waits for the database on a miss
        (never call it on the event loop: use :meth:`cached` and :meth:`check`).

        Args:
            presented: The secret as sent.
            lookup: Ask the store on a cache miss (False: cached keys only).
        """
        found = self.cached(presented)
        if found is not MISS:
            return found
        if not lookup:
            return None
        return self._lookup(digests.cache_digest(presented), presented).result()

    def forget_run(self, run_id: str) -> None:
        """Forget a run's token at once (its run has ended)."""
        with self._lock:
            self._generation += 1
            self._good = {d: e for d, e in self._good.items() if e[1].run_id != run_id}

    def clear(self) -> None:
        """Forget every entry (after a key was revoked or a run ended)."""
        with self._lock:
            self._generation += 1
            self._good, self._bad = {}, {}

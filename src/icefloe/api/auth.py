"""Bearer API keys and roles, as plain ASGI middleware: every route is authenticated unless
its path is on :data:`PUBLIC_PATHS`. Model calls (``/model``) never reach this middleware:
the model gateway in front checks the same keys through the same :class:`KeyCache`.

Unknown, malformed and revoked keys all get the same 401 body; the key is never logged.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from icefloe.store import repo
from icefloe.store.db import Database

PUBLIC_PATHS = frozenset({"/api/v2/health"})
WRITE_ROLES = frozenset({"admin", "editor"})
UNAUTHORIZED = {"error": {"type": "Unauthorized", "message": "missing or invalid API key"}}
FORBIDDEN = {"error": {"type": "Forbidden", "message": "this key's role may not do that"}}

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
                   Awaitable[None]]


async def send_json(send: Callable[[Any], Awaitable[None]], status: int, body: dict) -> None:
    """Send a whole JSON response (401s carry ``WWW-Authenticate: Bearer``)."""
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()),
                            (b"www-authenticate", b"Bearer")] if status == 401 else
                [(b"content-type", b"application/json"),
                 (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


class KeyCache:
    """Verified API keys for a few seconds, so a model call needs no database read.

    Entries are found by the SHA-256 of the presented key (never the key itself); a miss is
    verified against the store (salted hash, constant-time compare). Revoking a key through
    this control plane clears the cache at once.
    """

    def __init__(self, db: Database, ttl: float = 10.0, max_entries: int = 10_000) -> None:
        self.db = db
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[bytes, tuple[float, repo.Principal | None]] = {}

    def verify(self, token: str) -> repo.Principal | None:
        """The principal of a presented key, or None."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        now = time.monotonic()
        hit = self._entries.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        with self.db.session() as s:
            principal = repo.verify_api_key(s, token)
        if len(self._entries) >= self.max_entries:
            self._entries = {}
        # Unknown keys are remembered briefly too, so a flood of bad keys stays cheap.
        self._entries[digest] = (now + (self.ttl if principal else 1.0), principal)
        return principal

    def from_scope(self, scope: Scope) -> repo.Principal | None:
        """The principal of a request's ``Authorization: Bearer`` header, or None."""
        for name, value in scope.get("headers") or ():
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                token = token.strip()
                if scheme.lower() == "bearer" and token:
                    return self.verify(token)
                return None
        return None

    def clear(self) -> None:
        """Forget every entry (after a key was revoked)."""
        self._entries = {}


class ApiKeyMiddleware:
    """Resolve ``Authorization: Bearer <key>`` to a principal in ``scope["icefloe.principal"]``.

    GET/HEAD need any valid key; other methods need an admin or editor key (403 otherwise).
    """

    def __init__(self, app: ASGIApp, keys: KeyCache) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        principal = self.keys.from_scope(scope)
        if principal is None:
            await send_json(send, 401, UNAUTHORIZED)
            return
        if scope["method"] not in ("GET", "HEAD") and principal.role not in WRITE_ROLES:
            with self.keys.db.session() as s:
                repo.audit(s, principal.user, f"{scope['method']} {scope['path']}",
                           scope["path"], "denied", f"role {principal.role}")
            await send_json(send, 403, FORBIDDEN)
            return
        scope["icefloe.principal"] = principal
        await self.app(scope, receive, send)


def actor(scope: Scope) -> str:
    """Who a request acts as, for audit events and run triggers."""
    principal = scope.get("icefloe.principal")
    return principal.user if principal else "anonymous"

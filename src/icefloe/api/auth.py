"""Bearer API keys and roles, as plain ASGI middleware: every route is authenticated unless
its path is on :data:`PUBLIC_PATHS`.

Unknown, malformed and revoked keys all get the same 401 body; the key is never logged.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from icefloe.store import repo
from icefloe.store.db import Database

PUBLIC_PATHS = frozenset({"/api/v2/health"})
MODEL_PATHS = frozenset({"/model", "/model/batch"})
WRITE_ROLES = frozenset({"admin", "editor"})
UNAUTHORIZED = {"error": {"type": "Unauthorized", "message": "missing or invalid API key"}}
FORBIDDEN = {"error": {"type": "Forbidden", "message": "this key's role may not do that"}}

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
                   Awaitable[None]]


async def _send_json(send: Callable[[Any], Awaitable[None]], status: int, body: dict) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()),
                            (b"www-authenticate", b"Bearer")] if status == 401 else
                [(b"content-type", b"application/json"),
                 (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


class ApiKeyMiddleware:
    """Resolve ``Authorization: Bearer <key>`` to a principal in ``scope["icefloe.principal"]``.

    GET/HEAD need any valid key; other methods need an admin or editor key (403 otherwise).
    """

    def __init__(self, app: ASGIApp, db: Database) -> None:
        self.app = app
        self.db = db

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        principal = None
        if scheme.lower() == "bearer" and token.strip():
            with self.db.session() as s:
                principal = repo.verify_api_key(s, token.strip())
        if scope["path"] in MODEL_PATHS:
            # Model calls: any valid key (viewers too); the route decides whether the
            # deployment may be called without one.
            scope["icefloe.principal"] = principal
            await self.app(scope, receive, send)
            return
        if principal is None:
            await _send_json(send, 401, UNAUTHORIZED)
            return
        if scope["method"] not in ("GET", "HEAD") and principal.role not in WRITE_ROLES:
            with self.db.session() as s:
                repo.audit(s, principal.user, f"{scope['method']} {scope['path']}",
                           scope["path"], "denied", f"role {principal.role}")
            await _send_json(send, 403, FORBIDDEN)
            return
        scope["icefloe.principal"] = principal
        await self.app(scope, receive, send)


def actor(scope: Scope) -> str:
    """Who a request acts as, for audit events and run triggers."""
    principal = scope.get("icefloe.principal")
    return principal.user if principal else "anonymous"

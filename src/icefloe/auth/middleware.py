"""Bearer authentication for every route, as plain ASGI middleware.

Every route is authenticated unless its path is on :data:`PUBLIC_PATHS`. Model calls
(``/model``) never reach this layer: the model gateway in front checks the same keys through
the same :class:`~icefloe.auth.cache.KeyCache`: a cached key is answered at once, any other
is checked in the cache's thread pool, so a slow or locked database never stalls the event
loop. Unknown, malformed and revoked keys all get the same 401 body; the key is never
logged. Denials are audited through a queue (``audit`` must not wait for the database).
Refusals are counted per source and minute and a source that keeps failing is answered 429
(see :mod:`icefloe.auth.refusals`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from icefloe.auth.cache import MISS, KeyCache, presented_secret
from icefloe.auth.principals import Principal
from icefloe.auth.refusals import Refusals, source_of
from icefloe.errors import IcefloeError
from icefloe.store.repo import ACTING_KEY

# The token route checks its own (HTTP Basic) credentials: see icefloe.api.cde.
PUBLIC_PATHS = frozenset({"/api/v2/health", "/api/v0/auth/access-keys/token"})
# POSTs that only read (a viewer's key may send them; the route refuses what would write).
READING_POSTS = frozenset({"/api/v2/sql"})
UNAUTHORIZED = {"error": {"type": "Unauthorized", "message": "missing or invalid API key"}}
FORBIDDEN = {"error": {"type": "Forbidden", "message": "this key's role may not do that"}}


def read_only(role: str) -> dict[str, Any]:
    """The 403 body of a change asked with a key that only reads."""
    return {"error": {"type": "Forbidden",
                      "message": f"this key's role ({role}) only reads; it may not change "
                                 "anything"}}

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
                   Awaitable[None]]
AuditSink = Callable[[dict[str, Any]], None]  # queues an audit row; never waits


def json_response(status: int, body: dict[str, Any],
                  headers: list[tuple[bytes, bytes]] | None = None) -> tuple[dict, dict]:
    """The two ASGI messages of a whole JSON response (401s carry ``WWW-Authenticate``)."""
    payload = json.dumps(body).encode()
    extra = list(headers or [])
    if status == 401:
        extra.append((b"www-authenticate", b"Bearer"))
    return ({"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(payload)).encode()), *extra]},
            {"type": "http.response.body", "body": payload})


async def send_json(send: Callable[[Any], Awaitable[None]], status: int, body: dict[str, Any],
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send a whole JSON response."""
    start, body_message = json_response(status, body, headers)
    await send(start)
    await send(body_message)


def too_many(retry_after: int) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
    """The 429 answer to a source that is being slowed down."""
    return (429, {"error": {"type": "TooManyRequests",
                            "message": f"too many refused requests from this address; "
                                       f"retry after {retry_after} s"}},
            [(b"retry-after", str(retry_after).encode())])


class ApiKeyMiddleware:
    """Resolve ``Authorization: Bearer <key>`` to a principal in ``scope["icefloe.principal"]``.

    GET/HEAD need any valid key; other methods need an admin or editor key (403 otherwise,
    recorded through ``audit``).
    """

    def __init__(self, app: ASGIApp, keys: KeyCache, refusals: Refusals,
                 audit: AuditSink) -> None:
        self.app = app
        self.keys = keys
        self.refusals = refusals
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        signed_in = scope.get("icefloe.principal")
        if signed_in is not None:
            # Only code in this process puts a principal in a scope (the web UI, for the user
            # its session acts as): the same role rules apply from here on.
            await self._admit(signed_in, scope, receive, send)
            return
        source = source_of(scope)
        wait = self.refusals.retry_after(source)
        try:
            presented = presented_secret(scope)
            principal = None
            if presented is not None:
                found = self.keys.cached(presented)
                if found is not MISS:
                    principal = found
                elif not wait:  # a slowed source is heard only with a key known good
                    principal = await self.keys.check(presented)
        except IcefloeError as exc:
            await send_json(send, exc.http_status, exc.to_dict())
            return
        if principal is None:
            if wait:
                status, body, headers = too_many(wait)
                await send_json(send, status, body, headers)
                return
            self.refusals.count(source, "auth")
            await send_json(send, 401, UNAUTHORIZED)
            return
        await self._admit(principal, scope, receive, send)

    async def _admit(self, principal: Principal, scope: Scope, receive: Any, send: Any
                     ) -> None:
        """Pass a known principal's request on, unless its key's role may not send it."""
        if not principal.may(scope["method"]) and not (
                scope["method"] == "POST" and scope["path"] in READING_POSTS):
            self.audit({"actor": principal.actor, "action": f"{scope['method']} "
                        f"{scope['path']}"[:64], "target": scope["path"], "outcome": "denied",
                        "detail": f"role {principal.role}", "key_id": principal.key_id})
            await send_json(send, 403, read_only(principal.role))
            return
        scope["icefloe.principal"] = principal
        ACTING_KEY.set(principal.key_id)
        await self.app(scope, receive, send)


def principal_of(scope: Scope) -> Principal | None:
    """The principal the middleware put on a request (None on public routes)."""
    return scope.get("icefloe.principal")


def actor(scope: Scope) -> str:
    """Who a request acts as, for audit events and run triggers."""
    principal = scope.get("icefloe.principal")
    return principal.actor if principal else "anonymous"

"""The web UI as plain ASGI middleware: sign-in sessions, CSRF, pages under ``/ui``.

It sits in front of the API's authentication layer and answers ``/ui`` (and ``/``, which
leads there) itself; every other path goes on to the API untouched. A page acts as the
session's user through :class:`~icefloe.ui.calls.Api`, so the API's rules and audit apply.

Public (no session needed): only the sign-in page and the static assets listed in
:data:`PUBLIC`. Every other page needs a session; a change needs a POST that carries the
session's CSRF token; an API change a role may not make is refused by the API (403), and
the page shows that refusal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Router

from icefloe.auth.cache import MISS, KeyCache
from icefloe.auth.principals import Principal
from icefloe.auth.refusals import Refusals, source_of
from icefloe.auth.sessions import csrf_matches, csrf_token, verify_session
from icefloe.config import Settings
from icefloe.store.db import Database
from icefloe.ui.calls import Api, ApiError, ASGIApp

Scope = MutableMapping[str, Any]
COOKIE = "icefloe_session"
PUBLIC = ("/ui/signin", "/ui/static/")
HEADERS = {
    # Everything the pages use is served from here: no inline script, no other origin.
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}


@dataclass
class UiContext:
    """What pages reach: the stores, the API below the gateway, the session's user."""

    db: Database
    settings: Settings
    api_app: ASGIApp
    lakehouse: Any  # icefloe.api.lake.LazyLakehouse
    supervisor: Any  # icefloe.serving.supervisor.Supervisor
    sessions: KeyCache
    refusals: Refusals


def ui_of(request: Request) -> UiContext:
    """The UI context of a request."""
    context: UiContext = request.scope["icefloe.ui"]
    return context


def principal(request: Request) -> Principal:
    """The signed-in principal of a page request (pages behind sign-in only)."""
    found: Principal = request.scope["icefloe.ui.principal"]
    return found


def api(request: Request) -> Api:
    """The API as the signed-in user."""
    return Api(ui_of(request).api_app, principal(request))


def csrf(request: Request) -> str:
    """The CSRF token forms of this session carry."""
    return csrf_token(request.scope["icefloe.ui.session"])


class CsrfError(Exception):
    """A form without this session's CSRF token."""


MAX_FORM = 256 * 1024  # the SQL box is the largest field


class FormError(Exception):
    """A form body that is too large or not URL-encoded."""


async def fields_of(request: Request) -> dict[str, str]:
    """The fields of a URL-encoded form body (the only kind the pages send), read up to
    :data:`MAX_FORM` bytes (this layer is in front of the API's body limit)."""
    from urllib.parse import parse_qsl

    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise FormError(f"the form is over {MAX_FORM} bytes")
    if body and kind != "application/x-www-form-urlencoded":
        raise FormError("a form must be sent URL-encoded")
    pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True,
                      max_num_fields=100)
    return dict(pairs)


async def form(request: Request) -> dict[str, str]:
    """A POSTed form's fields, after checking its CSRF token (:class:`CsrfError` if it is
    missing or not this session's)."""
    fields = await fields_of(request)
    session = request.scope.get("icefloe.ui.session")
    if not session or not csrf_matches(session, fields.get("csrf", "")):
        raise CsrfError("the form's CSRF token is missing or belongs to another session")
    return fields


def secure(request: Request) -> bool:
    """Whether the browser reached us over https (the cookie is then Secure)."""
    return request.url.scheme == "https"


class UiMiddleware:
    """Answer ``/ui`` pages; pass everything else to ``app`` (the API).

    Args:
        app: The app below (the API's authentication layer first).
        context: What pages reach (its ``api_app`` is set to ``app`` here).
        router: The page routes.
    """

    def __init__(self, app: ASGIApp, context: UiContext, router: Router) -> None:
        self.app = app
        self.context = context
        self.context.api_app = app
        # Pages and assets are compressed (a page of log or a long table shrinks ~7x).
        self.router = GZipMiddleware(router, minimum_size=1024)

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/" or path == "/ui"
                                           or path.startswith("/ui/")):
            await self.app(scope, receive, send)
            return
        scope.pop("icefloe.principal", None)  # only the session below may set who acts
        if path in ("/", "/ui"):
            await RedirectResponse("/ui/", status_code=307)(scope, receive, send)
            return
        scope["icefloe.ui"] = self.context
        if not path.startswith(PUBLIC):
            who = await self._signed_in(scope)
            if who is None:
                await self._to_sign_in(scope, receive, send)
                return
        sending = _with_headers(send)
        try:
            await self.router(scope, receive, sending)
        except (CsrfError, FormError, ApiError) as exc:
            # Raised before a page answers: the refusal is the answer (403 for a forged
            # or stale form, the API's own status for what it refused).
            from icefloe.ui.render import page

            status = (403 if isinstance(exc, CsrfError) else 422 if isinstance(exc, FormError)
                      else exc.http_status)
            await page(Request(scope), "error.html", status=status,
                       message=str(exc))(scope, receive, sending)

    async def _signed_in(self, scope: Scope) -> Principal | None:
        cookie = Request(scope).cookies.get(COOKIE, "")
        if not cookie or len(cookie) > 200:
            return None
        found = self.context.sessions.cached(cookie)
        if found is MISS:
            source = source_of(scope)
            if self.context.refusals.retry_after(source):
                return None
            found = await self.context.sessions.check(cookie)
            if found is None:
                self.context.refusals.count(source, "auth")
        if found is None:
            return None
        scope["icefloe.ui.principal"] = found
        scope["icefloe.ui.session"] = cookie
        return found

    async def _to_sign_in(self, scope: Scope, receive: Any, send: Any) -> None:
        request = Request(scope)
        if request.method in ("GET", "HEAD"):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            response: Response = RedirectResponse(
                f"/ui/signin?next={_quote(target)}", status_code=303)
        else:
            response = Response("sign in first: this session is over or was never opened",
                                status_code=401, media_type="text/plain")
        await response(scope, receive, _with_headers(send))


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="")


def _with_headers(send: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    """``send`` that adds the UI's security headers to each response."""

    async def wrapped(message: Any) -> None:
        if message["type"] == "http.response.start":
            names = {name.lower() for name, _ in message.get("headers", [])}
            extra = [(k.encode(), v.encode()) for k, v in HEADERS.items()
                     if k.encode() not in names]
            if b"cache-control" not in names:  # pages show live, per-user data
                extra.append((b"cache-control", b"no-store"))
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped


def sessions_cache(db: Database) -> KeyCache:
    """The cache of session cookies: a session is trusted a second at most (it acts as its
    key, which may be revoked)."""
    return KeyCache(db, ttl=1.0, stale=0.0, verify=verify_session, threads=2)


def run(fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
    """Run blocking store or lakehouse reads off the event loop."""
    return asyncio.to_thread(fn, *args)

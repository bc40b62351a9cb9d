"""Sign in (with an API key or a one-time code), sign out, and the audit log."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from icefloe.auth import keys, sessions
from icefloe.auth.refusals import source_of
from icefloe.store import repo
from icefloe.store.orm import ApiKey
from icefloe.ui.calls import ApiError
from icefloe.ui.pages.jobs import refused
from icefloe.ui.render import PAGE_SIZE, page
from icefloe.ui.site import COOKIE, api, fields_of, form, run, secure, ui_of

REFUSED = "that key or code is not valid (or has expired)"


def _next(target: str | None) -> str:
    """Where to go after signing in: a path of this UI only (never another site)."""
    parts = urlsplit(target or "")
    if parts.scheme or parts.netloc or not parts.path.startswith("/ui/"):
        return "/ui/"
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _same_origin(request: Request) -> bool:
    """A sign-in form posted from a page of this server (a login CSRF is refused)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return request.headers.get("sec-fetch-site") in (None, "same-origin", "none")
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def sign_in(request: Request) -> Response:
    """GET: the form (a ``code`` in the URL fills it). POST: check the key or code, open a
    session, set its cookie."""
    if request.method == "GET":
        return page(request, "signin.html", next=_next(request.query_params.get("next")),
                    code=request.query_params.get("code", "")[:200], problem="")
    ui = ui_of(request)
    source = source_of(request.scope)
    wait = ui.refusals.retry_after(source)
    data = await fields_of(request)
    secret = data.get("secret", "").strip()[:300]
    target = _next(data.get("next", ""))
    if wait or not _same_origin(request):
        return page(request, "signin.html", status=429 if wait else 403, next=target, code="",
                    problem=f"too many refused sign-ins; retry after {wait} s" if wait
                    else "this form was not sent from this server's page")

    def open_one() -> tuple[str, str] | None:
        with ui.db.session() as s:
            key_id: str | None = None
            if secret.startswith("ifc_"):
                key_id = sessions.redeem_sign_in_code(s, secret)
            elif secret.startswith("ifk_"):
                found = keys.verify(s, secret)
                key_id = found.key_id if found is not None else None
            if key_id is None:
                return None
            key = s.get(ApiKey, key_id)
            if key is None:
                return None
            cookie, _ = sessions.open_session(s, key_id)
            who = keys.key_principal(s, key)
            repo.audit(s, who.actor, "session.open", f"key/{key_id}", "ok",
                       "web UI sign-in", key_id=key_id)
            return cookie, who.user

    opened = await run(open_one)
    if opened is None:
        ui.refusals.count(source, "auth")
        return page(request, "signin.html", status=401, next=target, code="", problem=REFUSED)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, opened[0], max_age=int(sessions.SESSION_LIFE.total_seconds()),
                        httponly=True, samesite="strict", secure=secure(request), path="/ui")
    return response


async def sign_out(request: Request) -> Response:
    """End the session (its cookie stops working everywhere) and forget the cookie."""
    await form(request)
    ui = ui_of(request)
    cookie = request.scope["icefloe.ui.session"]

    def close() -> None:
        with ui.db.session() as s:
            sessions.close_session(s, cookie)

    await run(close)
    ui.sessions.clear()
    response = RedirectResponse("/ui/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict",
                           secure=secure(request))
    return response


async def audit(request: Request) -> Response:
    """Who did what when, filtered by person, key, resource and action (admins only, as on
    the API)."""
    args = request.query_params
    try:
        listed = await api(request).get(
            "/api/v2/audit", page_size=PAGE_SIZE, page_token=args.get("page") or None,
            actor=args.get("actor") or None, key=args.get("key") or None,
            target=args.get("target") or None, action=args.get("action") or None)
    except ApiError as exc:
        return refused(request, exc)
    return page(request, "audit.html", events=listed["events"],
                next_page=listed.get("next_page_token") or "")


ROUTES = [
    Route("/ui/signin", sign_in, methods=["GET", "POST"]),
    Route("/ui/signout", sign_out, methods=["POST"]),
    Route("/ui/audit", audit),
]

"""Limits on REST request bodies, as plain ASGI middleware in front of the routes.

A body over ``max_bytes`` is refused with 413 before the app reads it: at once when its
``Content-Length`` says so, else as soon as the bytes received pass the limit (it is never
held whole). A JSON body is then parsed once here and refused with 422 naming the problem
when it is malformed or holds what JSON allows but the store, a hash or a float cannot take:
nesting deeper than :data:`~icefloe.serving.schema.MAX_DEPTH`, a lone surrogate or a NUL in a
string or field name, a number of more than 4300 digits, an integer too large for a float, a
number that overflows to infinity (see :func:`icefloe.serving.schema.parse_body`). The app
behind sees the same bytes. Model calls (``/model``) never reach this layer: the gateway in
front applies the same checks with its own limit.
"""

from __future__ import annotations

from typing import Any

from icefloe.auth.middleware import ASGIApp, Scope, send_json
from icefloe.errors import IcefloeError
from icefloe.serving.schema import RequestTooLarge, parse_body, size_text


def is_json(scope: Scope) -> bool:
    """Whether FastAPI would parse this request's body as JSON (no content type, or
    ``application/json`` or ``application/*+json``)."""
    for name, value in scope.get("headers") or ():
        if name == b"content-type":
            kind = value.decode("latin-1").split(";", 1)[0].strip().lower()
            main, _, sub = kind.partition("/")
            return main == "application" and (sub == "json" or sub.endswith("+json"))
    return True


def declared_length(scope: Scope) -> int | None:
    """The ``Content-Length`` of a request, or None when it has none (or a garbled one)."""
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() and len(text) < 20 else None
    return None


class BodyLimits:
    """Refuse REST bodies over ``max_bytes`` (413) and hostile JSON (422) before the app."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def too_large(self, size: int | None = None) -> RequestTooLarge:
        """The 413 error, with the size when it is known."""
        told = f"{size:,} bytes" if size is not None else "over the limit"
        return RequestTooLarge(f"request body is {told}; the limit is "
                               f"{size_text(self.max_bytes)}")

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await send_json(send, 413, self.too_large(declared).to_dict())
            return
        chunks: list[bytes] = []
        size, more = 0, True
        first: dict[str, Any] | None = None  # what the app receives first
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                first = message  # the caller left mid-body: the app hears so, as without us
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await send_json(send, 413, self.too_large().to_dict())
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if first is None and body and is_json(scope):
            try:
                parse_body(body, self.max_bytes, strict=True)
            except IcefloeError as exc:
                await send_json(send, exc.http_status, exc.to_dict())
                return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return first or {"type": "http.request", "body": body, "more_body": False}
            return dict(await receive())

        await self.app(scope, replay, send)

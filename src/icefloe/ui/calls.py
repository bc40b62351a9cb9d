"""In-process calls of the REST API as the signed-in user.

A page reads and changes through the very routes the API serves, below the key check: the
principal of the session is put in the request's scope, and the API's authentication layer
applies the same role rules to it as to a key (a viewer's change is refused 403 and
audited). So the UI can never allow what the API refuses, and each change it makes is the
audit event of its API twin.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlencode

from icefloe.auth.principals import Principal
from icefloe.errors import IcefloeError

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
                   Awaitable[None]]


class ApiError(IcefloeError):
    """An API call of a page answered with an error (its status and message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = status


class Api:
    """The REST API as one principal sees it.

    Args:
        app: The ASGI app below the model gateway (the API's authentication layer first).
        principal: Who the calls act as.
    """

    def __init__(self, app: ASGIApp, principal: Principal) -> None:
        self.app = app
        self.principal = principal

    async def get(self, path: str, **params: Any) -> Any:
        """GET a route; ``params`` with None values are left out."""
        return await self.call("GET", path, params=params)

    async def post(self, path: str, body: Any = None, **params: Any) -> Any:
        """POST a JSON body to a route."""
        return await self.call("POST", path, body=body, params=params)

    async def call(self, method: str, path: str, *, body: Any = None,
                   params: dict[str, Any] | None = None) -> Any:
        """Call a route and answer its JSON (None for an empty body).

        Raises:
            ApiError: The route answered an error; its message is the API's.
        """
        query = urlencode({k: v for k, v in (params or {}).items() if v is not None},
                          doseq=True)
        payload = b"" if body is None else json.dumps(body).encode()
        headers = [(b"host", b"icefloe"), (b"content-length", str(len(payload)).encode())]
        if body is not None:
            headers.append((b"content-type", b"application/json"))
        scope: Scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
            "root_path": "", "query_string": query.encode(), "headers": headers,
            "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 0),
            "icefloe.principal": self.principal,
        }
        sent = False
        status = 500
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        raw = b"".join(chunks)
        data: Any = None
        if raw:
            try:
                data = json.loads(raw)
            except ValueError:
                data = raw.decode("utf-8", "replace")
        if status >= 400:
            message = (data.get("error", {}).get("message") if isinstance(data, dict)
                       else None) or f"HTTP {status}"
            raise ApiError(status, str(message))
        return data

"""``POST /model`` and ``/model/batch``: the model calls, answered before the REST app.

A plain ASGI layer in front of the API (no routing or request objects on the hot path):
it checks the API key (cached), finds the deployment by the hash of its access key, sends
the body to the least busy ready replica over its Unix socket and records the predictions
the replica reports. Replicas have no side effects, so when one dies mid-request the
request is sent again to another; when none is ready the call waits a few seconds for the
supervisor to bring one up before answering 503.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from icefloe.auth.cache import KeyCache
from icefloe.auth.digests import access_key_hash
from icefloe.auth.middleware import ASGIApp, Scope, too_many
from icefloe.auth.refusals import Refusals, source_of
from icefloe.errors import (
    AuthError,
    BusyError,
    IcefloeError,
    InvalidInputError,
    UnavailableError,
)
from icefloe.serving.predictions import PredictionLog
from icefloe.serving.protocol import BATCH, PREDICT, read_reply, request_frame
from icefloe.serving.schema import MAX_BODY_BYTES, RequestTooLarge, parse_body
from icefloe.serving.supervisor import Replica, Route, Supervisor

MODEL_PATHS = {"/model": PREDICT, "/model/batch": BATCH}
MAX_INFLIGHT = 256  # per replica; beyond it a call is answered 429 rather than queued
MAX_ATTEMPTS = 20  # replicas tried for one call before it is answered 503
DENIED = "missing or invalid API key or access key"
_JSON = [(b"content-type", b"application/json")]


async def _read_body(receive: Any) -> bytes | None:
    """The request body, or None when it is over the limit (the rest is read and dropped)."""
    chunks: list[bytes] = []
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= MAX_BODY_BYTES:
            chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks) if size <= MAX_BODY_BYTES else None


async def _exchange(replica: Replica, frame: bytes) -> tuple[int, bytes, bytes]:
    loop = asyncio.get_running_loop()
    pool = replica.pools.get(loop)
    if pool is None:
        pool = replica.pools[loop] = []
    if pool:
        reader, writer = pool.pop()
    else:
        reader, writer = await asyncio.open_unix_connection(replica.socket)
    try:
        writer.write(frame)
        await writer.drain()
        reply = await read_reply(reader)
    except BaseException:
        writer.close()
        raise
    pool.append((reader, writer))
    return reply


async def forward(route: Route, kind: int, body: bytes,
                  wait: float = 10.0) -> tuple[int, bytes, bytes]:
    """Send a request to a ready replica of the route, retrying on a replica that died.

    Raises:
        UnavailableError: No replica was ready for ``wait`` seconds, or
            :data:`MAX_ATTEMPTS` replicas failed in a row.
        BusyError: Every ready replica already has :data:`MAX_INFLIGHT` requests.
    """
    frame = request_frame(kind, body)
    deadline = time.monotonic() + wait
    for _ in range(MAX_ATTEMPTS):
        while not route.replicas:
            if time.monotonic() > deadline:
                raise UnavailableError(f"deployment {route.deployment_id} has no ready "
                                       f"replica; see its replica logs")
            await asyncio.sleep(0.02)
        replica = min(route.replicas, key=lambda r: r.inflight)
        if replica.inflight >= MAX_INFLIGHT:
            raise BusyError(f"deployment {route.deployment_id} is busy: "
                            f"{replica.inflight} requests in flight per replica")
        replica.inflight += 1
        try:
            return await _exchange(replica, frame)
        except (OSError, asyncio.IncompleteReadError):
            pass  # the replica died, hung and was killed, or is stopping: try another
        finally:
            replica.inflight -= 1
        # The wait for a ready replica starts again: this call may have sat on a hung one.
        deadline = time.monotonic() + wait
        await asyncio.sleep(0.02)
    raise UnavailableError(f"deployment {route.deployment_id}: {MAX_ATTEMPTS} replicas failed "
                           f"to answer this call; see their replica logs")


class ModelGateway:
    """Answers the model paths; passes every other request to the app behind it."""

    def __init__(self, app: ASGIApp, keys: KeyCache, supervisor: Supervisor,
                 predictions: PredictionLog, refusals: Refusals) -> None:
        self.app = app
        self.keys = keys
        self.supervisor = supervisor
        self.predictions = predictions
        self.refusals = refusals

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        kind = MODEL_PATHS.get(scope["path"]) if scope["type"] == "http" else None
        if kind is None:
            await self.app(scope, receive, send)
            return
        scope["icefloe.route"] = scope["path"]
        extra: list[tuple[bytes, bytes]] = []
        if scope["method"] != "POST":
            status, payload = 405, json.dumps({"success": False, "error": {
                "type": "MethodNotAllowed", "message": "use POST"}}).encode()
        else:
            status, payload, extra = await self._answer(scope, receive, kind)
        await send({"type": "http.response.start", "status": status,
                    "headers": [*_JSON, (b"content-length", str(len(payload)).encode()),
                                *([(b"www-authenticate", b"Bearer")] if status == 401 else []),
                                *extra]})
        await send({"type": "http.response.body", "body": payload})

    async def _answer(self, scope: Scope, receive: Any,
                      kind: int) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        started = time.perf_counter()
        source = source_of(scope)
        wait = self.refusals.retry_after(source)
        try:
            principal = self.keys.from_scope(scope, lookup=not wait)
        except IcefloeError as exc:
            return exc.http_status, json.dumps({"success": False, **exc.to_dict()}).encode(), []
        if principal is None and wait:
            status, error, headers = too_many(wait)
            return status, json.dumps({"success": False, **error}).encode(), headers
        caller = principal.actor if principal else "anonymous"
        body = await _read_body(receive)
        try:
            try:
                if body is None:
                    raise RequestTooLarge("request body is over the limit of 5 MB")
                doc = parse_body(body)
                access_key = doc.get("accessKey") if isinstance(doc, dict) else None
                if not isinstance(access_key, str):
                    raise InvalidInputError("field 'accessKey' is required")
            except IcefloeError:
                if principal is None:  # say nothing about the body to an unknown caller
                    self.refusals.count(source, "model.call")
                    raise AuthError(DENIED) from None
                raise
            route = self.supervisor.route(access_key_hash(access_key))
            if route is None or (route.auth_enabled and principal is None):
                self.refusals.count(source, "model.call")
                raise AuthError(DENIED)
            scope["icefloe.deployment"] = route.deployment_id
            status, response, log = await forward(route, kind, body)
        except IcefloeError as exc:
            return (exc.http_status, json.dumps({"success": False, **exc.to_dict()}).encode(),
                    [])
        if status == 200:
            done = json.loads(log)
            latency = (time.perf_counter() - started) * 1000
            for uuid, inputs, outputs, metrics in done["items"]:
                self.predictions.record((
                    uuid, route.deployment_id, done["build"], route.model_name,
                    done["model_version"], done["timestamp_ms"], caller, inputs, outputs,
                    latency, metrics))
        return status, response, []

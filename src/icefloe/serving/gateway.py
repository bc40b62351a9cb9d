"""``POST /model`` and ``/model/batch``: the model calls, answered before the REST app.

A plain ASGI layer in front of the API (no routing or request objects on the hot path):
it checks the API key (cached; a key not cached is checked in a thread pool, never on the
event loop), finds the deployment by the hash of its access key, sends the body to the
least busy ready replica over its Unix socket and records the predictions the replica
reports. Replicas have no side effects, so when one dies mid-request the request is sent
again to another; when none is ready the call waits a few seconds for the supervisor to
bring one up before answering 503.

The gateway does not parse the body: it finds the access key with a pattern and sends it
along; the replica parses the body anyway (to validate it) and scores only if the body's
own ``accessKey`` is that key. Anything else (no match, a key nested or escaped, duplicated
keys, malformed JSON) is answered :data:`~icefloe.serving.protocol.UNCONFIRMED` and the
gateway decides the slow way: it parses the body itself and answers exactly as it would
have without the shortcut.

A 200 is written to the prediction journal (one ``os.write``) before it is sent, so an
answered prediction survives a crash of this process (see
:mod:`icefloe.serving.predictions`).

With several nodes, a call whose deployment has no replica on this node is relayed as it
came (body and ``Authorization``) to a node that holds one, which checks and answers it
and journals the prediction; a relayed call is marked and never relayed again.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import weakref
from collections.abc import Callable
from typing import Any

from icefloe.auth.cache import MISS, KeyCache, presented_secret
from icefloe.auth.digests import access_key_hash
from icefloe.auth.middleware import ASGIApp, Scope, too_many
from icefloe.auth.principals import Principal
from icefloe.auth.refusals import Refusals, source_of
from icefloe.errors import (
    AuthError,
    BusyError,
    IcefloeError,
    InvalidInputError,
    UnavailableError,
)
from icefloe.serving.journal import journal_prefix
from icefloe.serving.predictions import PredictionLog
from icefloe.serving.protocol import (
    BATCH,
    MAX_KEY_BYTES,
    PREDICT,
    UNCONFIRMED,
    ReplicaChannel,
    open_channel,
    request_frame,
)
from icefloe.serving.schema import MAX_BODY_BYTES, RequestTooLarge, parse_body
from icefloe.serving.supervisor import Replica, Route, Supervisor

MODEL_PATHS = {"/model": PREDICT, "/model/batch": BATCH}
MAX_INFLIGHT = 256  # per replica; beyond it a call is answered 429 rather than queued
MAX_ATTEMPTS = 20  # replicas tried for one call before it is answered 503
DENIED = ("missing or invalid API key or access key, or an API key that does not reach the "
          "deployment's project")
# A candidate only: the replica confirms it is the body's top-level "accessKey".
_ACCESS_KEY = re.compile(rb'"accessKey"[ \t\r\n]*:[ \t\r\n]*"([^"\\]{1,512})"')
_JSON = (b"content-type", b"application/json")
FORWARDED = b"x-icefloe-forwarded"
RELAY_TIMEOUT_S = 30.0
RELAY_CONNECT_S = 1.0  # a node that does not accept within this is taken for gone


class _Elsewhere(Exception):  # noqa: N818 - a signal inside the gateway, not an error
    """The call's deployment has no replica here; these nodes hold some."""

    def __init__(self, urls: tuple[str, ...]) -> None:
        super().__init__("elsewhere")
        self.urls = urls


_NOT_ALLOWED = json.dumps({"success": False, "error": {"type": "MethodNotAllowed",
                                                       "message": "use POST"}}).encode()


async def _read_body(receive: Any) -> bytes | None:
    """The request body, or None when it is over the limit (the rest is read and dropped)."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):  # the usual case: one message
        return body if len(body) <= MAX_BODY_BYTES else None
    chunks = [body]
    size, more = len(body), True
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


async def _channel(replica: Replica) -> ReplicaChannel:
    """The replica's pipelined connection for this event loop (opened on first use)."""
    loop = asyncio.get_running_loop()
    entry = replica.channels.get(loop)
    if isinstance(entry, ReplicaChannel) and not entry.closed:
        return entry
    if not isinstance(entry, asyncio.Future):  # none yet, or it was lost: open one
        entry = replica.channels[loop] = asyncio.ensure_future(open_channel(replica.socket))
    try:
        channel: ReplicaChannel = await asyncio.shield(entry)
    except BaseException:
        if replica.channels.get(loop) is entry:
            del replica.channels[loop]
        raise
    if replica.channels.get(loop) is entry:
        replica.channels[loop] = channel
    return channel


async def forward(route: Route, kind: int, body: bytes, wait: float = 10.0,
                  key: bytes = b"") -> tuple[int, bytes, bytes]:
    """Send a request to a ready replica of the route, retrying on a replica that died.

    Args:
        route: The deployment's route.
        kind: ``PREDICT`` or ``BATCH``.
        body: The HTTP body as received.
        wait: Seconds to wait for a ready replica.
        key: The access key the call was routed by (UTF-8); the replica answers
            ``UNCONFIRMED`` unless the body's ``accessKey`` is this key.

    Raises:
        UnavailableError: No replica was ready for ``wait`` seconds, or
            :data:`MAX_ATTEMPTS` replicas failed in a row.
        BusyError: Every ready replica already has :data:`MAX_INFLIGHT` requests.
    """
    frame = request_frame(kind, body, key)
    deadline = time.monotonic() + wait
    for _ in range(MAX_ATTEMPTS):
        while not route.replicas:
            if time.monotonic() > deadline:
                raise UnavailableError(f"deployment {route.deployment_id} has no ready "
                                       f"replica; see its replica logs")
            await asyncio.sleep(0.02)
        replicas = route.replicas
        replica = replicas[0] if len(replicas) == 1 else min(replicas, key=_inflight)
        if replica.inflight >= MAX_INFLIGHT:
            raise BusyError(f"deployment {route.deployment_id} is busy: "
                            f"{replica.inflight} requests in flight per replica")
        replica.inflight += 1
        try:
            channel = replica.channels.get(asyncio.get_running_loop())
            if not isinstance(channel, ReplicaChannel) or channel.closed:
                channel = await _channel(replica)
            return await channel.request(frame)
        except OSError:
            pass  # the replica died, hung and was killed, or is stopping: try another
        finally:
            replica.inflight -= 1
        # The wait for a ready replica starts again: this call may have sat on a hung one.
        deadline = time.monotonic() + wait
        await asyncio.sleep(0.02)
    raise UnavailableError(f"deployment {route.deployment_id}: {MAX_ATTEMPTS} replicas failed "
                           f"to answer this call; see their replica logs")


def _inflight(replica: Replica) -> int:
    return replica.inflight


def allowed(route: Route, principal: Principal | None) -> bool:
    """Whether a caller may call a deployment: anyone with its access key when its auth is
    off; else a key or token that reaches the deployment's project (any role)."""
    if not route.auth_enabled:
        return True
    return principal is not None and principal.reaches(route.project_id)


def _error(exc: IcefloeError) -> bytes:
    return json.dumps({"success": False, **exc.to_dict()}).encode()


class ModelGateway:
    """Answers the model paths; passes every other request to the app behind it."""

    def __init__(self, app: ASGIApp, keys: KeyCache, supervisor: Supervisor,
                 predictions: PredictionLog, refusals: Refusals,
                 peers: Callable[[str], tuple[str, ...]] | None = None) -> None:
        self.app = app
        # The other nodes holding replicas of an access key's deployment (multi-node).
        self.peers = peers
        self._relays: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._turn = 0
        self.keys = keys
        self.supervisor = supervisor
        self.predictions = predictions
        self.refusals = refusals
        # Journal line starts per (deployment, model, caller): encoded once, not per call.
        self._prefixes: dict[tuple[str, str, str], bytes] = {}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        kind = MODEL_PATHS.get(scope["path"]) if scope["type"] == "http" else None
        if kind is None:
            await self.app(scope, receive, send)
            return
        scope["icefloe.route"] = scope["path"]
        extra: list[tuple[bytes, bytes]] = []
        if scope["method"] != "POST":
            status, payload = 405, _NOT_ALLOWED
        else:
            status, payload, extra = await self._answer(scope, receive, kind)
            deployment = scope.get("icefloe.deployment")
            if status >= 400 and deployment is not None:  # for monitoring's error rate
                self.predictions.count_failure(deployment, status)
        headers = [_JSON, (b"content-length", b"%d" % len(payload))]
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": status,
                    "headers": headers + extra if extra else headers})
        await send({"type": "http.response.body", "body": payload})

    async def _answer(self, scope: Scope, receive: Any,
                      kind: int) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        started = time.perf_counter()
        source = source_of(scope)
        wait = self.refusals.retry_after(source)
        try:
            presented = presented_secret(scope)
            principal = None
            if presented is not None:
                found = self.keys.cached(presented)  # memory only: the usual case
                if found is not MISS:
                    principal = found
                elif not wait:  # a slowed source is heard only with a key known good
                    principal = await self.keys.check(presented)  # off the event loop
        except IcefloeError as exc:
            return exc.http_status, _error(exc), []
        if principal is None and wait:
            status, error, headers = too_many(wait)
            return status, json.dumps({"success": False, **error}).encode(), headers
        body = await _read_body(receive)
        try:
            reply = None
            candidate = self._candidate(body, principal)
            if candidate is not None:
                route, key = candidate
                scope["icefloe.deployment"] = route.deployment_id
                reply = await forward(route, kind, body or b"", key=key)
                if reply[0] == UNCONFIRMED:
                    del scope["icefloe.deployment"]
                    reply = None
            if reply is None:
                # A caller whose API key was refused is answered here, never relayed.
                route, key = self._route(body, principal, source,
                                         relayed=any(k == FORWARDED for k, _ in scope["headers"]),
                                         may_relay=presented is None or principal is not None)
                scope["icefloe.deployment"] = route.deployment_id
                reply = await forward(route, kind, body or b"", key=key)
                if reply[0] == UNCONFIRMED:  # the replica parsed the body differently
                    raise AuthError(DENIED)
            status, response, log = reply
            if status == 200:
                caller = principal.actor if principal else "anonymous"
                names = (route.deployment_id, route.model_name, caller)
                prefix = self._prefixes.get(names)
                if prefix is None:
                    if len(self._prefixes) >= 10_000:
                        self._prefixes.clear()
                    prefix = self._prefixes[names] = journal_prefix(*names)
                latency = (time.perf_counter() - started) * 1000
                # Written to the journal before the answer leaves; if that fails it does
                # not leave (503): an answered prediction is always recorded.
                self.predictions.record_call(b"%s%.3f,\"r\":%s}\n" % (prefix, latency, log))
        except IcefloeError as exc:
            return exc.http_status, _error(exc), []
        except _Elsewhere as away:
            try:
                status, response = await self._relay(scope, body or b"", away.urls)
            except IcefloeError as exc:
                return exc.http_status, _error(exc), []
        return status, response, []

    async def _relay(self, scope: Scope, body: bytes,
                     urls: tuple[str, ...]) -> tuple[int, bytes]:
        """Send the call as it came to a node holding a replica (the next one if that one
        cannot be reached) and hand back its answer.

        Raises:
            UnavailableError: None of them could be reached.
        """
        import httpx

        loop = asyncio.get_running_loop()
        client = self._relays.get(loop)
        if client is None:
            client = self._relays[loop] = httpx.AsyncClient(
                timeout=httpx.Timeout(RELAY_TIMEOUT_S, connect=RELAY_CONNECT_S))
        headers = {"content-type": "application/json", FORWARDED.decode(): "1"}
        for name, value in scope["headers"]:
            if name == b"authorization":
                headers["authorization"] = value.decode("latin-1")
        self._turn += 1
        for i in range(len(urls)):
            url = urls[(self._turn + i) % len(urls)]
            try:
                answer = await client.post(f"{url}{scope['path']}", content=body,
                                           headers=headers)
            except httpx.ConnectError:
                continue  # nothing was sent: the next node may take it
            except httpx.TransportError as exc:  # it may have been answered: never twice
                raise UnavailableError(f"the node holding this model did not answer: "
                                       f"{type(exc).__name__}") from None
            return answer.status_code, answer.content
        raise UnavailableError("no node holding a replica of this deployment could be "
                               "reached; try again")

    def _candidate(self, body: bytes | None,
                   principal: Principal | None) -> tuple[Route, bytes] | None:
        """The route of the access key the body seems to carry (the replica confirms it),
        or None when the slow way must decide."""
        if body is None:
            return None
        found = _ACCESS_KEY.search(body)
        if found is None:
            return None
        key = found.group(1)
        try:
            route = self.supervisor.route(access_key_hash(key.decode()))
        except UnicodeDecodeError:
            return None
        if route is None or not allowed(route, principal):
            return None
        if self.peers is not None and not any(r.ready for r in route.replicas):
            return None  # none ready here yet: the slow way may relay it to a node that has
        return route, key

    def _route(self, body: bytes | None, principal: Principal | None,
               source: str, *, relayed: bool = False,
               may_relay: bool = True) -> tuple[Route, bytes]:
        """Parse the body and find its deployment: the answer without any shortcut.

        Raises:
            AuthError: Unknown access key, a deployment that needs an API key called
                without one, or a bad body from an unauthenticated caller (nothing is said
                about the body to an unknown caller).
            InvalidInputError: A bad body (413 over the size limit, 422 otherwise).
        """
        try:
            if body is None:
                raise RequestTooLarge("request body is over the limit of 5 MB")
            doc = parse_body(body)
            access_key = doc.get("accessKey") if isinstance(doc, dict) else None
            if not isinstance(access_key, str):
                raise InvalidInputError("field 'accessKey' is required")
        except IcefloeError:
            if principal is None:
                self.refusals.count(source, "model.call")
                raise AuthError(DENIED) from None
            raise
        hashed = access_key_hash(access_key)
        route = self.supervisor.route(hashed)
        if self.peers is not None and (route is None or not any(
                r.ready for r in route.replicas)):
            if relayed and route is None:  # it moved since the relaying node looked
                raise UnavailableError("this node no longer holds the model; try again")
            holders = () if relayed or not may_relay else self.peers(hashed)
            if holders:  # none here (or none ready yet): a node that holds one answers
                raise _Elsewhere(holders)
        key = access_key.encode("utf-8", "surrogatepass")
        if route is None or not allowed(route, principal) or len(key) > MAX_KEY_BYTES:
            self.refusals.count(source, "model.call")
            raise AuthError(DENIED)
        return route, key

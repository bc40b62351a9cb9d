"""Frames between the control plane and a model replica, over a Unix socket (pure).

A request is ``kind (1 byte) | key length (2) | body length (4) | access key | HTTP body``;
a reply is ``status (2) | response length (4) | log length (4) | response JSON | log JSON``.
The access key is the one the control plane routed the call by: the replica parses the body
and answers :data:`UNCONFIRMED` (without scoring) unless the body's own ``accessKey`` is that
key, so a call can never be answered by the deployment of a key it does not carry. The log
part lists what the control plane records for each answered prediction.

A connection is pipelined: the control plane may send several requests without waiting and
the replica answers them in order (several at once when they arrive together, scored in one
model run). Replicas have no side effects, so a request whose replica died mid-way can be
sent again to another one.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import struct

PREDICT, BATCH, PING = 1, 2, 3
# A model host's (see icefloe.serving.host): serve a build under an access key's hash, stop.
ATTACH, DETACH = 4, 5
UNCONFIRMED = 0  # reply status: the body's accessKey is not the key the call was routed by
REQUEST = struct.Struct("!BHI")
REPLY = struct.Struct("!HII")
MAX_KEY_BYTES = 0xFFFF


def request_frame(kind: int, body: bytes, key: bytes = b"") -> bytes:
    """Encode a request (``key``: the access key the call was routed by, UTF-8)."""
    return REQUEST.pack(kind, len(key), len(body)) + key + body


def reply_frame(status: int, response: bytes, log: bytes = b"") -> bytes:
    """Encode a reply."""
    return REPLY.pack(status, len(response), len(log)) + response + log


def split_requests(buffer: bytearray) -> list[tuple[int, bytes, bytes]]:
    """Take every complete request off the front of ``buffer``: ``(kind, key, body)`` each.

    What is left in ``buffer`` is the start of a request still arriving.
    """
    out: list[tuple[int, bytes, bytes]] = []
    offset, size, head = 0, len(buffer), REQUEST.size
    while size - offset >= head:
        kind, n_key, n_body = REQUEST.unpack_from(buffer, offset)
        start = offset + head
        end = start + n_key + n_body
        if end > size:
            break
        out.append((kind, bytes(buffer[start:start + n_key]),
                    bytes(buffer[start + n_key:end])))
        offset = end
    if offset:
        del buffer[:offset]
    return out


class ReplicaChannel(asyncio.Protocol):
    """One pipelined connection to a replica, as seen from the control plane.

    :meth:`request` writes a frame and returns a future of its reply; replies come back in
    the order the requests went out. When the connection is lost every waiting request fails
    with :class:`ConnectionError` (the caller sends it again to another replica).

    A request to an idle replica is written at once. Under load, requests are sent in
    batches (one write, one wake-up and one model run in the replica for them all), with at
    most :attr:`depth` batches unanswered: the replica always has the next batch waiting
    when it finishes one, and what arrives meanwhile gathers into the batch after it.
    """

    depth = 2

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._waiting: collections.deque[asyncio.Future[tuple[int, bytes, bytes]]] = \
            collections.deque()
        self._buffer = bytearray()
        self._outgoing: list[bytes] = []  # frames not written yet
        self._batches: collections.deque[int] = collections.deque()  # unanswered, per write
        self._soon = False  # a write of _outgoing is scheduled

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        self.transport = transport  # type: ignore[assignment]

    def request(self, frame: bytes) -> asyncio.Future[tuple[int, bytes, bytes]]:
        """Send one request frame; the future resolves to ``(status, response, log)``."""
        if self.closed or self.transport is None:
            raise ConnectionError("the replica connection is closed")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append(future)
        self._outgoing.append(frame)
        if not self._batches:  # the replica is idle: at once
            self._send()
        elif len(self._batches) < self.depth and not self._soon:
            self._soon = True  # after this pass of the loop, with whatever else comes
            loop.call_soon(self._send_soon)
        return future

    def _send_soon(self) -> None:
        self._soon = False
        if len(self._batches) < self.depth:
            self._send()

    def _send(self) -> None:
        frames = self._outgoing
        if not frames or self.closed or self.transport is None:
            return
        self._outgoing = []
        self.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))
        self._batches.append(len(frames))

    def data_received(self, data: bytes) -> None:  # noqa: D102
        buffer = self._buffer
        if buffer:
            buffer += data
            data = bytes(buffer)
            buffer.clear()
        offset, size, head = 0, len(data), REPLY.size
        batches = self._batches
        while size - offset >= head:
            status, n_response, n_log = REPLY.unpack_from(data, offset)
            start = offset + head
            end = start + n_response + n_log
            if end > size:
                break
            future = self._waiting.popleft()
            if not future.done():  # a cancelled caller: its reply is dropped
                future.set_result((status, data[start:start + n_response],
                                   data[start + n_response:end]))
            offset = end
            batches[0] -= 1
            if not batches[0]:
                batches.popleft()
        if offset < size:
            buffer += data[offset:]
        if self._outgoing and len(batches) < self.depth:
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        self.closed = True
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(ConnectionError("the replica closed the connection"))

    def close(self) -> None:
        """Close the connection (waiting requests fail)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()


async def open_channel(path: str) -> ReplicaChannel:
    """Connect to a replica's socket."""
    _, channel = await asyncio.get_running_loop().create_unix_connection(ReplicaChannel, path)
    return channel


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise ConnectionError("replica closed the connection")
        chunks.extend(chunk)
    return bytes(chunks)


def exchange(path: str, kind: int, body: bytes = b"", timeout: float = 2.0
             ) -> tuple[int, bytes]:
    """Send one request to a replica and wait for its reply (blocking): status, response."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(request_frame(kind, body))
        status, n_response, n_log = REPLY.unpack(_recv_exactly(sock, REPLY.size))
        payload = _recv_exactly(sock, n_response + n_log)
    return status, payload[:n_response]


def ping(path: str, timeout: float = 2.0) -> bytes:
    """Ask a replica whether it is ready (blocking); returns its JSON status."""
    status, payload = exchange(path, PING, timeout=timeout)
    if status != 200:
        raise ConnectionError(f"replica answered {status}: {payload[:200]!r}")
    return payload

"""Frames between the control plane and a model replica, over a Unix socket (pure).

A request is ``kind (1 byte) | length (4) | HTTP body``; a reply is
``status (2) | response length (4) | log length (4) | response JSON | log JSON``. The log
part lists what the control plane records for each answered prediction. Replicas have no
side effects, so a request whose replica died mid-way can be sent again to another one.
"""

from __future__ import annotations

import asyncio
import socket
import struct

PREDICT, BATCH, PING = 1, 2, 3
REQUEST = struct.Struct("!BI")
REPLY = struct.Struct("!HII")


def request_frame(kind: int, body: bytes) -> bytes:
    """Encode a request."""
    return REQUEST.pack(kind, len(body)) + body


def reply_frame(status: int, response: bytes, log: bytes = b"") -> bytes:
    """Encode a reply."""
    return REPLY.pack(status, len(response), len(log)) + response + log


async def read_request(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one request; raises ``asyncio.IncompleteReadError`` at end of stream."""
    kind, length = REQUEST.unpack(await reader.readexactly(REQUEST.size))
    return kind, await reader.readexactly(length) if length else b""


async def read_reply(reader: asyncio.StreamReader) -> tuple[int, bytes, bytes]:
    """Read one reply."""
    status, n_response, n_log = REPLY.unpack(await reader.readexactly(REPLY.size))
    payload = await reader.readexactly(n_response + n_log)
    return status, payload[:n_response], payload[n_response:]


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise ConnectionError("replica closed the connection")
        chunks.extend(chunk)
    return bytes(chunks)


def ping(path: str, timeout: float = 2.0) -> bytes:
    """Ask a replica whether it is ready (blocking); returns its JSON status."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(request_frame(PING, b""))
        status, n_response, n_log = REPLY.unpack(_recv_exactly(sock, REPLY.size))
        payload = _recv_exactly(sock, n_response + n_log)
    if status != 200:
        raise ConnectionError(f"replica answered {status}: {payload[:200]!r}")
    return payload[:n_response]

"""The gateway's answers when no replica can take a call: 503 after waiting or after too many
failed replicas, 429 when full; and the pipelined connection to a replica."""

import asyncio
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from icefloe.errors import BusyError, UnavailableError
from icefloe.serving.gateway import MAX_ATTEMPTS, MAX_INFLIGHT, forward
from icefloe.serving.protocol import (
    PREDICT,
    open_channel,
    reply_frame,
    request_frame,
    split_requests,
)
from icefloe.serving.supervisor import Replica, Route


def test_no_ready_replica_waits_then_503_and_a_full_one_is_429(tmp_path: Path) -> None:
    route = Route("dep-1", "m", True, 1, "b1", str(tmp_path))
    started = time.monotonic()
    with pytest.raises(UnavailableError, match="dep-1 has no ready replica"):
        asyncio.run(forward(route, PREDICT, b"{}", wait=0.3))
    assert time.monotonic() - started >= 0.3

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        full = Replica("r1", "b1", str(tmp_path / "r1.sock"), proc, tmp_path / "r1.log",
                       ready=True, inflight=MAX_INFLIGHT)
        route.replicas = (full,)
        with pytest.raises(BusyError, match="dep-1 is busy"):
            asyncio.run(forward(route, PREDICT, b"{}", wait=0.3))
        assert full.inflight == MAX_INFLIGHT  # nothing leaked

        broken = Replica("r2", "b1", str(tmp_path / "missing.sock"), proc,
                         tmp_path / "r2.log", ready=True)
        route.replicas = (broken,)
        with pytest.raises(UnavailableError, match=f"{MAX_ATTEMPTS} replicas failed"):
            asyncio.run(forward(route, PREDICT, b"{}", wait=0.3))
        assert broken.inflight == 0
    finally:
        proc.kill()
        proc.wait()


def test_pipelined_requests_get_their_own_replies_however_the_bytes_arrive(
        tmp_path: Path) -> None:
    """A replica-side server that answers each frame with its own body, in pieces of random
    sizes (replies split and merged across reads); then it hangs up with calls in flight."""
    path = str(tmp_path / "r.sock")
    rng = random.Random(7)

    async def go() -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            buffer, answered = bytearray(), 0
            while answered < 200:
                buffer += await reader.read(rng.randint(1, 300))
                frames = split_requests(buffer)
                answered += len(frames)
                out = b"".join(reply_frame(200, body, key) for _, key, body in frames)
                while out:
                    cut = rng.randint(1, 64)
                    writer.write(out[:cut])
                    out = out[cut:]
                    await writer.drain()
            writer.close()  # the replica dies: whatever is still waiting fails

        server = await asyncio.start_unix_server(serve, path=path)
        channel = await open_channel(path)
        bodies = [f"body-{i}-{'x' * rng.randint(0, 500)}".encode() for i in range(200)]
        replies = await asyncio.gather(*[channel.request(
            request_frame(PREDICT, body, body[:7])) for body in bodies])
        assert [(s, r, k) for s, r, k in replies] == [(200, b, b[:7]) for b in bodies]
        late = [channel.request(request_frame(PREDICT, b"late")) for _ in range(3)]
        for future in late:
            with pytest.raises(ConnectionError):
                await future
        with pytest.raises(ConnectionError):
            channel.request(request_frame(PREDICT, b"after"))
        server.close()

    asyncio.run(go())

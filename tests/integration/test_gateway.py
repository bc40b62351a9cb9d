"""The gateway's answers when no replica can take a call: 503 after waiting or after too many
failed replicas, 429 when full; the pipelined connection to a replica; and key checks that
wait for the database off the event loop."""

import asyncio
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from icefloe.api.app import create_app
from icefloe.auth import keys as api_keys
from icefloe.auth.cache import MISS, KeyCache
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
from icefloe.store.db import Database
from tests.postgres import home_settings


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


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _hold_every_connection(db: Database) -> list[Any]:
    """Take every connection of the DB's pool, as requests stuck behind a lock would: any
    other query now waits (up to the pool's 30 s) for one to come back."""
    pool: Any = db.engine.pool
    return [pool.connect() for _ in range(pool.size() + pool._max_overflow)]


def test_a_key_check_waiting_for_the_database_does_not_stall_cached_callers(
        tmp_path: Path) -> None:
    """While the database cannot answer, requests whose API key is not cached wait for their
    check in the key cache's threads (REST and /model alike); requests with a cached key go
    on being answered on the event loop, also once the key is past its ttl (it is checked
    again in the background and used meanwhile)."""
    app = create_app(home_settings(tmp_path / "home"), start_runner=False)
    keys: KeyCache = app.state.keys
    keys.ttl = 0.2
    with app.state.db.session() as s:
        _, known = api_keys.create_api_key(s, "known", "viewer")
        _, fresh = api_keys.create_api_key(s, "fresh", "viewer")

    async def go() -> tuple[int, list[int]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t",
                                     timeout=60) as client:
            assert (await client.get("/metrics", headers=_bearer(known))).status_code == 200
            held = _hold_every_connection(app.state.db)
            try:
                waiting = [asyncio.ensure_future(client.get("/metrics",
                                                            headers=_bearer(fresh))),
                           asyncio.ensure_future(client.post(
                               "/model", headers=_bearer(fresh),
                               json={"accessKey": "m" + "0" * 32, "request": {}}))]
                answered = 0
                until = time.monotonic() + 5 * keys.ttl  # well past the cached key's ttl
                while time.monotonic() < until or answered < 20:
                    r = await asyncio.wait_for(client.get("/metrics", headers=_bearer(known)),
                                               timeout=2.0)
                    assert r.status_code == 200, r.text
                    answered += 1
                # Structurally still waiting: no connection came back yet.
                assert not any(w.done() for w in waiting)
            finally:
                for connection in held:
                    connection.close()
            late = await asyncio.wait_for(asyncio.gather(*waiting), timeout=30)
            return answered, [r.status_code for r in late]

    answered, late = asyncio.run(go())
    assert answered >= 20
    # The fresh key was good all along: REST answers, /model refuses only the unknown
    # access key (401 either way, but after the check, not before).
    assert late == [200, 401]
    assert keys.cached(fresh) is not MISS and keys.cached(fresh) is not None


def test_a_flood_of_distinct_bad_keys_does_not_evict_good_ones(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'platform.db'}")
    with db.session() as s:
        _, good = api_keys.create_api_key(s, "good", "viewer")
    keys = KeyCache(db, max_entries=50)
    principal = keys.verify(good)
    assert principal is not None and principal.user == "good"
    # Well-formed keys with prefixes the store does not know: each one is a real lookup.
    bad = [f"ifk_{i:012x}_{'x' * 43}" for i in range(4 * keys.max_entries)]
    assert asyncio.run(_check_all(keys, bad)) == [None] * len(bad)
    assert keys.cached(good) == principal  # still cached: no database needed
    db.dispose()


async def _check_all(keys: KeyCache, secrets: list[str]) -> list[object]:
    return list(await asyncio.gather(*(keys.check(s) for s in secrets)))

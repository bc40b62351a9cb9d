"""A model host: one process that answers prediction frames for many builds.

With ``model_hosts`` set, deployments share a few host processes instead of each having
processes of its own, so hundreds of small models fit on one machine. The supervisor tells
a host which build answers the calls of an access key (``ATTACH``, by the key's hash; and
``DETACH``); a build is loaded on its first call (or at once, to prove it runs, when
attached with ``load``), shared by every key that names it, and evicted after
``--idle-seconds`` without a call. A ``PING`` answers with the memory each loaded model took
(the host's resident memory before and after loading it). Like a replica it has no side
effects and exits on SIGTERM or when its parent goes away.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import json
import os
import resource
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from icefloe.auth.digests import access_key_hash
from icefloe.errors import UnavailableError
from icefloe.serving.protocol import ATTACH, DETACH, PING, reply_frame, split_requests
from icefloe.serving.replica import answer_many, probe_record
from icefloe.serving.scorer import BuildScorer

PAGE = resource.getpagesize()
EVICT_EVERY_S = 5.0


def resident_bytes() -> int:
    """This process's resident memory, now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def _give_back() -> None:
    """Return freed memory to the OS (glibc keeps it otherwise)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@dataclass
class _Model:
    """A build this host may answer with: its scorer while loaded."""

    path: str
    build_id: str
    version: int
    scorer: BuildScorer | None = None
    memory: int = 0  # resident bytes loading it took
    last_used: float = field(default_factory=time.monotonic)
    loads: int = 0


class Models:
    """The builds of a host, by path, and which access-key hash uses which."""

    def __init__(self, idle_seconds: float) -> None:
        self.idle_seconds = idle_seconds
        self.by_path: dict[str, _Model] = {}
        self.by_key: dict[str, _Model] = {}

    def attach(self, key_hash: str, path: str, load: bool) -> None:
        """Answer the calls of ``key_hash`` with a build (loaded now when ``load``)."""
        model = self.by_path.get(path)
        if model is None:
            manifest = json.loads((Path(path) / "manifest.json").read_text())
            model = _Model(path, manifest["build"], int(manifest["version"]))
        if load:
            self.loaded(model)
        self.by_path[path] = model
        self.by_key[key_hash] = model
        self._forget_unused()

    def detach(self, key_hash: str) -> None:
        """Stop answering the calls of ``key_hash``."""
        self.by_key.pop(key_hash, None)
        self._forget_unused()

    def _forget_unused(self) -> None:
        used = {id(m) for m in self.by_key.values()}
        for path, model in list(self.by_path.items()):
            if id(model) not in used:
                del self.by_path[path]

    def loaded(self, model: _Model) -> BuildScorer:
        """The model's scorer, loaded (and proved with a probe record) if it is not."""
        model.last_used = time.monotonic()
        if model.scorer is None:
            before = resident_bytes()
            scorer = BuildScorer.load(Path(model.path))
            scorer.predict([probe_record(scorer.schema)])
            model.scorer, model.loads = scorer, model.loads + 1
            model.memory = max(0, resident_bytes() - before)
        return model.scorer

    def evict_idle(self) -> int:
        """Unload the models no call used for ``idle_seconds``; how many."""
        now, evicted = time.monotonic(), 0
        for model in self.by_path.values():
            if model.scorer is not None and now - model.last_used > self.idle_seconds:
                model.scorer = None
                evicted += 1
        if evicted:
            _give_back()
        return evicted

    def status(self) -> bytes:
        """What a PING answers: the host's memory and each model's."""
        now = time.monotonic()
        return json.dumps({
            "host": True, "pid": os.getpid(), "rss_mb": round(resident_bytes() / 2**20, 1),
            "models": {m.build_id: {"loaded": m.scorer is not None, "loads": m.loads,
                                    "memory_mb": round(m.memory / 2**20, 1),
                                    "idle_s": round(now - m.last_used, 1)}
                       for m in self.by_path.values()}}).encode()


def _control(models: Models, kind: int, body: bytes) -> tuple[int, bytes, bytes]:
    try:
        doc = json.loads(body)
        if kind == ATTACH:
            models.attach(doc["key_hash"], doc["build"], bool(doc.get("load")))
        else:
            models.detach(doc["key_hash"])
    except Exception as exc:  # a build that does not load is refused, the host goes on
        message = json.dumps({"error": f"{type(exc).__name__}: {exc}"[:2000]}).encode()
        return 500, message, b""
    return 200, b"{}", b""


_UNKNOWN = UnavailableError("this model is not attached to its replica yet; try again")
_UNKNOWN_REPLY = (503, json.dumps({"success": False, **_UNKNOWN.to_dict()}).encode(), b"")


def answer(models: Models, requests: list[tuple[int, bytes, bytes]]
           ) -> list[tuple[int, bytes, bytes]]:
    """Answer requests in order: consecutive ones for the same model are scored together."""
    out: list[tuple[int, bytes, bytes]] = []
    run: list[tuple[int, bytes, bytes]] = []
    current: _Model | None = None

    def flush() -> None:
        if run and current is not None:
            try:
                scorer = models.loaded(current)
            except Exception as exc:  # noqa: BLE001 - answered, the host goes on
                print(f"host: build {current.path} failed to load: {exc!r}", file=sys.stderr,
                      flush=True)
                out.extend([(500, b'{"success": false, "error": {"type": "Internal", '
                             b'"message": "the model failed to load"}}', b"")] * len(run))
            else:
                out.extend(answer_many(scorer, current.version, run))
        run.clear()

    for kind, key, body in requests:
        if kind in (ATTACH, DETACH):
            flush()
            out.append(_control(models, kind, body))
            continue
        if kind == PING:
            flush()
            out.append((200, models.status(), b""))
            continue
        model = models.by_key.get(access_key_hash(key.decode("utf-8", "surrogatepass")))
        if model is not current:
            flush()
            current = model
        if model is None:
            out.append(_UNKNOWN_REPLY)
            continue
        run.append((kind, key, body))
    flush()
    return out


class _Connection(asyncio.Protocol):
    def __init__(self, models: Models) -> None:
        self.models = models
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        requests = split_requests(self.buffer)
        if requests and self.transport is not None:
            self.transport.write(b"".join(reply_frame(*r) for r in answer(self.models,
                                                                           requests)))


async def serve(models: Models, path: str, parent: int) -> None:
    """Answer frames on ``path`` until SIGTERM/SIGINT or the parent process is gone."""
    if os.path.exists(path):
        os.unlink(path)
    loop = asyncio.get_running_loop()
    server = await loop.create_unix_server(lambda: _Connection(models), path=path)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def tend() -> None:
        while os.getppid() == parent:
            await asyncio.sleep(EVICT_EVERY_S if models.idle_seconds > EVICT_EVERY_S else 1.0)
            models.evict_idle()
        stop.set()

    tender = asyncio.create_task(tend())
    await stop.wait()
    tender.cancel()
    server.close()
    if os.path.exists(path):
        os.unlink(path)


def main(argv: list[str] | None = None) -> int:
    """Entry point of a model host process."""
    parser = argparse.ArgumentParser(prog="icefloe-host")
    parser.add_argument("--socket", required=True, help="Unix socket path to listen on")
    parser.add_argument("--parent", type=int, required=True, help="exit when this pid is gone")
    parser.add_argument("--idle-seconds", type=float, default=600.0,
                        help="unload a model after this long without a call")
    args = parser.parse_args(argv)
    gc.collect()
    gc.freeze()
    asyncio.run(serve(Models(args.idle_seconds), args.socket, args.parent))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

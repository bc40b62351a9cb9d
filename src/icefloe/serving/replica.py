"""A model replica: one process that answers prediction frames for one build.

Started by the supervisor as ``python -m icefloe.serving.replica``; it loads the build
(checksum verified), scores a probe record to prove the model runs, then listens on a Unix
socket. It has no side effects: the control plane records predictions, so a replica may die
at any moment without losing anything. It exits on SIGTERM or when its parent goes away.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from icefloe.errors import IcefloeError, InvalidInputError
from icefloe.serving.protocol import BATCH, PING, read_request, reply_frame
from icefloe.serving.schema import InputSchema, parse_body
from icefloe.serving.scorer import BuildScorer


def probe_record(schema: InputSchema) -> dict[str, Any]:
    """A record every build accepts (zeros and the first training category)."""
    return {f.name: 0.0 if f.kind == "number" else (f.levels[0] if f.levels else "")
            for f in schema.fields}


def _error(exc: IcefloeError) -> tuple[int, bytes, bytes]:
    return exc.http_status, json.dumps({"success": False, **exc.to_dict()}).encode(), b""


def answer(scorer: BuildScorer, model_version: int, kind: int,
           body: bytes) -> tuple[int, bytes, bytes]:
    """Validate and score one request body; returns status, response JSON and log JSON."""
    try:
        doc = parse_body(body)
        if not isinstance(doc, dict):
            raise InvalidInputError("the body must be a JSON object")
        if kind == BATCH:
            records = doc.get("requests")
            if not isinstance(records, list):
                raise InvalidInputError("field 'requests' must be a list of records")
        else:
            if "request" not in doc:
                raise InvalidInputError("field 'request' is required")
            records = [doc["request"]]
        results = scorer.predict(records)
    except IcefloeError as exc:
        return _error(exc)
    responses, items = [], []
    for record, (result, metrics) in zip(records, results, strict=True):
        pid = str(uuid.uuid4())
        responses.append({**result, "uuid": pid, "model_version": model_version,
                          "build": scorer.build_id})
        # Each part already as JSON text: the control plane stores it without re-encoding.
        items.append([pid, json.dumps(record), json.dumps(result), json.dumps(metrics)])
    out = ({"success": True, "responses": responses} if kind == BATCH
           else {"success": True, "response": responses[0]})
    log = {"build": scorer.build_id, "model_version": model_version,
           "timestamp_ms": int(time.time() * 1000), "items": items}
    return 200, json.dumps(out).encode(), json.dumps(log).encode()


async def serve(scorer: BuildScorer, model_version: int, path: str, parent: int) -> None:
    """Answer frames on ``path`` until SIGTERM/SIGINT or the parent process is gone."""
    status = json.dumps({"build": scorer.build_id, "model_version": model_version,
                         "pid": os.getpid()}).encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                kind, body = await read_request(reader)
                if kind == PING:
                    writer.write(reply_frame(200, status))
                else:
                    try:
                        writer.write(reply_frame(*answer(scorer, model_version, kind, body)))
                    except Exception as exc:  # a bug must not kill the replica
                        print(f"replica error: {exc!r}", file=sys.stderr, flush=True)
                        writer.write(reply_frame(500, json.dumps({"success": False, "error": {
                            "type": "Internal", "message": "the model failed to answer"}})
                            .encode()))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    if os.path.exists(path):
        os.unlink(path)
    server = await asyncio.start_unix_server(handle, path=path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def watch_parent() -> None:
        while os.getppid() == parent:
            await asyncio.sleep(1.0)
        stop.set()

    watcher = asyncio.create_task(watch_parent())
    await stop.wait()
    watcher.cancel()
    server.close()
    if os.path.exists(path):
        os.unlink(path)


def main(argv: list[str] | None = None) -> int:
    """Entry point of a replica process."""
    parser = argparse.ArgumentParser(prog="icefloe-replica")
    parser.add_argument("--build", required=True, help="READY build folder")
    parser.add_argument("--socket", required=True, help="Unix socket path to listen on")
    parser.add_argument("--parent", type=int, required=True, help="exit when this pid is gone")
    args = parser.parse_args(argv)
    try:
        scorer = BuildScorer.load(Path(args.build))
        manifest = json.loads((Path(args.build) / "manifest.json").read_text())
        scorer.predict([probe_record(scorer.schema)])
    except Exception as exc:
        print(f"replica could not load build {args.build}: {exc}", file=sys.stderr, flush=True)
        return 1
    gc.collect()
    gc.freeze()  # the loaded model and modules never die: keep collections short
    coroutine = serve(scorer, int(manifest["version"]), args.socket, args.parent)
    try:
        import uvloop
    except ImportError:  # uvloop is optional (not on Windows)
        asyncio.run(coroutine)
    else:
        uvloop.run(coroutine)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

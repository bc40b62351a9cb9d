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
from pathlib import Path
from typing import Any

from icefloe.errors import IcefloeError, InvalidInputError
from icefloe.serving.protocol import BATCH, PING, UNCONFIRMED, reply_frame, split_requests
from icefloe.serving.schema import InputSchema, parse_body
from icefloe.serving.scorer import BuildScorer


def probe_record(schema: InputSchema) -> dict[str, Any]:
    """A record every build accepts (zeros and the first training category)."""
    return {f.name: 0.0 if f.kind == "number" else (f.levels[0] if f.levels else "")
            for f in schema.fields}


def _error(exc: IcefloeError) -> tuple[int, bytes, bytes]:
    return exc.http_status, json.dumps({"success": False, **exc.to_dict()}).encode(), b""


_FAILED = (500, json.dumps({"success": False, "error": {
    "type": "Internal", "message": "the model failed to answer"}}).encode(), b"")
_NOT_CONFIRMED = (UNCONFIRMED, b"", b"")
_text = json.encoder.encode_basestring_ascii  # a str as JSON, as json.dumps writes it
_NO_METRICS = _text("{}")


class _Call:
    """One request being answered: its records, validated, waiting to be scored."""

    __slots__ = ("kind", "clean", "tracked", "records", "reply")

    def __init__(self, kind: int) -> None:
        self.kind = kind
        self.records: list[Any] = []
        self.clean: list[dict[str, Any]] = []
        self.tracked: list[dict[str, Any]] = []
        self.reply: tuple[int, bytes, bytes] | None = None


def _check(scorer: BuildScorer, kind: int, key: bytes, body: bytes) -> _Call:
    """Parse a request body, confirm its access key and validate its records."""
    call = _Call(kind)
    try:
        doc = parse_body(body)
        given = doc.get("accessKey") if isinstance(doc, dict) else None
        if not isinstance(given, str) or given.encode("utf-8", "surrogatepass") != key:
            # Not the key the control plane routed by (or no key, or not JSON): it decides.
            call.reply = _NOT_CONFIRMED
            return call
        if kind == BATCH:
            records = doc.get("requests")
            if not isinstance(records, list):
                raise InvalidInputError("field 'requests' must be a list of records")
        else:
            if "request" not in doc:
                raise InvalidInputError("field 'request' is required")
            records = [doc["request"]]
        many = len(records) > 1
        for i, record in enumerate(records):
            clean, metrics = scorer.validate(record, f"record {i}" if many else "request")
            call.clean.append(clean)
            call.tracked.append(metrics)
        call.records = records
    except IcefloeError as exc:
        call.reply = _error(exc)
    except Exception as exc:  # a bug must not kill the replica (nor its connection)
        print(f"replica error: {exc!r}", file=sys.stderr, flush=True)
        call.reply = _FAILED
    return call


def _finish(scorer: BuildScorer, model_version: int, call: _Call,
            answers: list[dict[str, Any]]) -> tuple[int, bytes, bytes]:
    """The reply to a validated call, given the answers to its records.

    The JSON is put together from parts (what ``json.dumps`` of the whole would write): the
    response, and the log with each record's inputs, outputs and metrics as JSON text that
    the control plane stores without decoding or encoding it again.
    """
    tail = f', "model_version": {model_version}, "build": {_text(scorer.build_id)}}}'
    responses, items = [], []
    for pid, record, result, metrics in zip(uuid_strings(len(answers)), call.records,
                                            answers, call.tracked, strict=True):
        output = json.dumps(result)
        responses.append(f'{output[:-1]}, "uuid": "{pid}"{tail}')
        items.append(f'["{pid}", {_text(json.dumps(record))}, {_text(output)}, '
                     f'{_text(json.dumps(metrics)) if metrics else _NO_METRICS}]')
    out = (f'{{"success": true, "responses": [{", ".join(responses)}]}}' if call.kind == BATCH
           else f'{{"success": true, "response": {responses[0]}}}')
    log = (f'{{"build": {_text(scorer.build_id)}, "model_version": {model_version}, '
           f'"timestamp_ms": {int(time.time() * 1000)}, "items": [{", ".join(items)}]}}')
    return 200, out.encode(), log.encode()


def answer_many(scorer: BuildScorer, model_version: int,
                requests: list[tuple[int, bytes, bytes]]) -> list[tuple[int, bytes, bytes]]:
    """Answer requests that arrived together: ``(kind, access key, body)`` each.

    Each is parsed and validated on its own (an invalid one is answered 422 and never
    scored); the valid ones are scored in one model run. Returns status, response JSON and
    log JSON per request, in order.
    """
    calls = [_check(scorer, kind, key, body) for kind, key, body in requests]
    ready = [c for c in calls if c.reply is None]
    if ready:
        try:
            answers = scorer.score([clean for c in ready for clean in c.clean])
        except Exception as exc:  # a bug must not kill the replica: score them one by one
            print(f"replica error: {exc!r}", file=sys.stderr, flush=True)
            for call in ready:
                try:
                    call.reply = _finish(scorer, model_version, call, scorer.score(call.clean))
                except Exception as again:
                    print(f"replica error: {again!r}", file=sys.stderr, flush=True)
                    call.reply = _FAILED
        else:
            at = 0
            for call in ready:
                n = len(call.clean)
                try:
                    call.reply = _finish(scorer, model_version, call, answers[at:at + n])
                except Exception as exc:
                    print(f"replica error: {exc!r}", file=sys.stderr, flush=True)
                    call.reply = _FAILED
                at += n
    return [c.reply or _FAILED for c in calls]


def uuid_strings(n: int) -> list[str]:
    """``n`` new prediction ids: time-ordered UUIDs (version 7, RFC 9562) as text.

    A millisecond timestamp, then 74 random bits from the OS (one read for all ``n``).
    Time order keeps the store's primary-key index growing at its end: with random (version
    4) ids every insert lands on a random page of a large index, several times the work.
    """
    now = int(time.time() * 1000).to_bytes(6, "big")
    raw = os.urandom(10 * n)
    out = []
    for i in range(n):
        b = bytearray(now + raw[10 * i:10 * i + 10])
        b[6] = (b[6] & 0x0F) | 0x70
        b[8] = (b[8] & 0x3F) | 0x80
        h = b.hex()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


class _Connection(asyncio.Protocol):
    """One connection from the control plane: requests are answered in order, and the ones
    that arrived together are scored together and answered with one write."""

    def __init__(self, scorer: BuildScorer, model_version: int, status: bytes) -> None:
        self.scorer = scorer
        self.model_version = model_version
        self.status = status
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        requests = split_requests(self.buffer)
        if not requests or self.transport is None:
            return
        replies: list[bytes] = []
        pending: list[tuple[int, bytes, bytes]] = []
        for kind, key, body in requests:
            if kind == PING:
                replies.extend(reply_frame(*r) for r in answer_many(
                    self.scorer, self.model_version, pending))
                pending = []
                replies.append(reply_frame(200, self.status))
            else:
                pending.append((kind, key, body))
        replies.extend(reply_frame(*r) for r in answer_many(self.scorer, self.model_version,
                                                            pending))
        self.transport.write(b"".join(replies))


async def serve(scorer: BuildScorer, model_version: int, path: str, parent: int) -> None:
    """Answer frames on ``path`` until SIGTERM/SIGINT or the parent process is gone."""
    status = json.dumps({"build": scorer.build_id, "model_version": model_version,
                         "pid": os.getpid()}).encode()
    if os.path.exists(path):
        os.unlink(path)
    loop = asyncio.get_running_loop()
    server = await loop.create_unix_server(
        lambda: _Connection(scorer, model_version, status), path=path)
    stop = asyncio.Event()
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

"""The prediction journal's format and files (see :mod:`icefloe.serving.predictions`).

A journal line is one answered call: ``{"d": deployment, "m": model name, "c": caller,
"l": latency ms, "r": the replica's log}``. Segment files are locked (flock) while the
process that writes them may still append, so a replay by another process never takes a
live one.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JOURNAL_ENV = "ICEFLOE_PREDICTION_JOURNAL"
SEGMENT_SUFFIX = ".journal"
_RECORD_START = b'{"d":'  # every journal line starts so; nowhere else can it appear unescaped
_segment_numbers = itertools.count()


def journal_prefix(deployment_id: str, model_name: str, caller: str) -> bytes:
    """The start of a journal line, up to the latency (the gateway caches it per caller).

    A line is ``{"d": deployment, "m": model name, "c": caller, "l": latency ms, "r": the
    replica's log}``; the log is ``{"build", "model_version", "timestamp_ms", "items":
    [[uuid, inputs JSON, outputs JSON, metrics JSON], ...]}`` as the replica sent it.
    """
    return b'{"d":%s,"m":%s,"c":%s,"l":' % tuple(
        json.dumps(value).encode() for value in (deployment_id, model_name, caller))


def journal_line(row: tuple[Any, ...]) -> bytes:
    """One prediction (the values of :data:`icefloe.serving.predictions.COLUMNS`) as a line."""
    uuid, deployment, build, model, version, timestamp_ms, caller, inputs, outputs, \
        latency, metrics = row
    replica_log = json.dumps({"build": build, "model_version": version,
                              "timestamp_ms": timestamp_ms,
                              "items": [[uuid, inputs, outputs, metrics]]})
    return b'%s%s,"r":%s}\n' % (journal_prefix(deployment, model, caller),
                                json.dumps(latency).encode(), replica_log.encode())


def rows_of(line: bytes) -> list[tuple[Any, ...]]:
    """The predictions of one journal line, as rows of ``predictions.COLUMNS``.

    Raises:
        ValueError: The line is not a whole journal record (e.g. torn by a crash).
    """
    try:
        doc = json.loads(line)
        r = doc["r"]
        return [(uuid, doc["d"], r["build"], doc["m"], r["model_version"], r["timestamp_ms"],
                 doc["c"], inputs, outputs, doc["l"], metrics)
                for uuid, inputs, outputs, metrics in r["items"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a journal record: {exc}") from None


def parse_segment(data: bytes) -> tuple[list[tuple[Any, ...]], int]:
    """The rows of a journal segment's bytes and the number of torn lines skipped.

    A write cut short by a crash leaves a torn line (whose call was never answered: the
    gateway answers only once the whole line is written); a later line appended after it is
    still found, from the last record start in the line.
    """
    rows: list[tuple[Any, ...]] = []
    torn = 0
    for line in data.split(b"\n"):
        if not line:
            continue
        try:
            rows.extend(rows_of(line))
            continue
        except ValueError:
            torn += 1
        start = line.rfind(_RECORD_START)
        if start > 0:
            with contextlib.suppress(ValueError):
                rows.extend(rows_of(line[start:]))
    return rows, torn


@dataclass
class Replay:
    """What the start-up replay of a journal found."""

    segments: int = 0  # segment files read
    rows: int = 0  # predictions in them
    inserted: int = 0  # of those, missing from the store and written now
    torn: int = 0  # torn lines skipped
    kept: int = 0  # segments left in place (the store was unavailable; replayed next start)
    busy: int = 0  # segments of another running control plane, left alone


@dataclass(eq=False)
class Segment:
    """A journal segment file, locked (flock) while its process may still append to it."""

    path: Path
    fd: int


def open_segment(folder: Path) -> Segment:
    """A new segment, locked before it is visible under its final name (a replay by
    another process skips locked segments, so it can never take a live one)."""
    name = f"{time.time_ns():020d}-{os.getpid()}-{next(_segment_numbers)}"
    making = folder / f".{name}.new"
    fd = os.open(making, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC,
                 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path = folder / f"{name}{SEGMENT_SUFFIX}"
        os.rename(making, path)
    except BaseException:
        os.close(fd)
        making.unlink(missing_ok=True)
        raise
    return Segment(path, fd)

"""The prediction journal: what a crashed process left is replayed, exactly once, at start.

Real components only: a SQLite store (and Postgres when ICEFLOE_TEST_POSTGRES_URL is set),
real segment files, and processes that are really SIGKILLed while they record.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from icefloe.errors import UnavailableError
from icefloe.serving.journal import SEGMENT_SUFFIX, journal_line
from icefloe.serving.predictions import PredictionLog
from icefloe.store.db import Database
from tests.store.conftest import db  # noqa: F401  (the store suite's fixture: both backends)

ROOT = Path(__file__).resolve().parents[2]


def _row(uuid: str, caller: str = "ann") -> tuple:
    return (uuid, "d1", "b1", "m", 1, 1000, caller, '{"x": 1}', '{"probability": 0.5}', 0.2,
            "{}")


def _uuids(database: Database) -> list[str]:
    with database.engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT uuid FROM predictions"))]


def _segments(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"*{SEGMENT_SUFFIX}"))


def _child(script: str, db_url: str, folder: Path) -> subprocess.Popen[str]:
    """A process that records predictions and prints each uuid once ``record`` returned
    (the moment a gateway would send the answer)."""
    return subprocess.Popen([sys.executable, "-c", script, db_url, str(folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})


def _read_until(proc: subprocess.Popen[str], done: str | int, timeout: float = 60) -> list[str]:
    """Lines the child printed, until the line ``done`` or that many lines."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while True:
        assert time.monotonic() < deadline, f"the child stalled: {lines[-3:]}"
        line = proc.stdout.readline()
        assert line, f"the child exited early: {proc.stderr.read() if proc.stderr else ''}"
        if line.strip() == done or (isinstance(done, int) and len(lines) + 1 >= done):
            lines.append(line.strip())
            return lines
        lines.append(line.strip())


KILLED_AFTER_A_FLUSH = """
import sys, time
from pathlib import Path
from icefloe.serving.predictions import PredictionLog
from icefloe.store.db import Database
log = PredictionLog(Database(sys.argv[1]), journal_dir=Path(sys.argv[2]),
                    flush_interval=3600, rotate_every=3600)
row = lambda u: (u, "d1", "b1", "m", 1, 1000, "ann", '{"x": 1}', '{"p": 0.5}', 0.2, "{}")
for i in range(10):
    log.record(row(f"stored-{i}"))
log.flush()                      # these ten are in the store (and still in the journal)
for i in range(5):
    log.record(row(f"journal-only-{i}"))
print("ready", flush=True)
time.sleep(600)                  # SIGKILLed here: five rows only in the journal
"""


def test_replay_after_a_crash_inserts_exactly_the_missing_rows(
        db: Database, tmp_path: Path) -> None:  # noqa: F811
    folder = tmp_path / "journal"
    child = _child(KILLED_AFTER_A_FLUSH, db.url, folder)
    try:
        _read_until(child, "ready")
        assert len(_uuids(db)) == 10
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert len(_segments(folder)) == 1

    log = PredictionLog(db, journal_dir=folder)  # the start of the next control plane
    try:
        assert (log.replay.segments, log.replay.rows, log.replay.inserted,
                log.replay.torn) == (1, 15, 5, 0)
        assert sorted(_uuids(db)) == sorted([f"stored-{i}" for i in range(10)]
                                            + [f"journal-only-{i}" for i in range(5)])
        assert [p.name for p in _segments(folder)] == [log._segment.path.name]  # its own
    finally:
        log.close()
    assert _segments(folder) == []  # shutdown leaves no segment behind

    again = PredictionLog(db, journal_dir=folder)  # nothing left to replay
    again.close()
    assert (again.replay.segments, again.replay.rows) == (0, 0)
    assert len(_uuids(db)) == 15


def test_a_torn_line_is_skipped_and_counted(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    store = Database(f"sqlite:///{tmp_path / 'platform.db'}")
    folder = tmp_path / "journal"
    folder.mkdir()
    whole = [journal_line(_row(f"u{i}")) for i in range(4)]
    # A write cut short (disk full) and the next call's line after it on the same line;
    # then a last line torn by a kill in the middle of its write.
    (folder / f"00000000000000000001-1-0{SEGMENT_SUFFIX}").write_bytes(
        whole[0] + whole[1][:40] + whole[2] + whole[3] + journal_line(_row("torn"))[:-30])
    (folder / f"00000000000000000002-1-0{SEGMENT_SUFFIX}").write_bytes(b"")  # killed at once
    (folder / ".00000000000000000003-1-0.new").write_bytes(whole[1])  # never made visible

    log = PredictionLog(store, journal_dir=folder)
    log.close()
    assert (log.replay.segments, log.replay.rows, log.replay.inserted, log.replay.torn) == (
        2, 3, 3, 2)
    assert sorted(_uuids(store)) == ["u0", "u2", "u3"]
    assert "skipped 2 torn line(s)" in caplog.text
    assert list(folder.iterdir()) == []


def test_rotation_under_concurrent_recording_loses_and_duplicates_nothing(
        tmp_path: Path) -> None:
    store = Database(f"sqlite:///{tmp_path / 'platform.db'}")
    folder = tmp_path / "journal"
    # A new segment on every wake-up of the writer: as many switches as possible.
    log = PredictionLog(store, journal_dir=folder, spill_dir=tmp_path / "logs",
                        flush_interval=0.001, rotate_every=0.0)
    counts = [0] * 4
    deadline = time.monotonic() + 60

    def call(worker: int) -> None:  # records until the journal has switched segments often
        while (log.rotations < 50 or counts[worker] < 1000) and time.monotonic() < deadline:
            for _ in range(5):  # bursts, as calls arrive (slower than the writer writes)
                log.record(_row(f"w{worker}-{counts[worker]}"))
                counts[worker] += 1
            time.sleep(0.001)

    workers = [threading.Thread(target=call, args=(w,)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    log.flush()
    assert log.rotations >= 50, "the writer did not switch segments"
    uuids = _uuids(store)
    assert len(uuids) == len(set(uuids)) == sum(counts)
    assert not (tmp_path / "logs").exists()  # nothing refused (a duplicate would be)
    log.close()
    assert _segments(folder) == []


RECORDING_UNTIL_KILLED = """
import sys, threading
from pathlib import Path
from icefloe.serving.predictions import PredictionLog
from icefloe.store.db import Database
log = PredictionLog(Database(sys.argv[1]), journal_dir=Path(sys.argv[2]),
                    flush_interval=0.001, rotate_every=0.0)
lock = threading.Lock()
def call(worker):
    for i in range(10**9):
        u = f"w{worker}-{i}"
        log.record((u, "d1", "b1", "m", 1, 1000, "ann", '{"x": 1}', '{"p": 0.5}', 0.2, "{}"))
        with lock:  # "answered": record returned
            sys.stdout.write(u + "\\n")
            sys.stdout.flush()
for w in range(4):
    threading.Thread(target=call, args=(w,), daemon=True).start()
threading.Event().wait()
"""


def test_a_process_killed_while_recording_and_rotating_loses_no_answered_row(
        tmp_path: Path) -> None:
    for attempt in range(3):  # the kill lands somewhere else in the rotation each time
        store = Database(f"sqlite:///{tmp_path / f'platform-{attempt}.db'}")
        folder = tmp_path / f"journal-{attempt}"
        child = _child(RECORDING_UNTIL_KILLED, store.url, folder)
        try:
            answered = _read_until(child, 3000 + 500 * attempt)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        stored_before = set(_uuids(store))
        assert _segments(folder), "the killed process left no journal"

        log = PredictionLog(store, journal_dir=folder)
        log.close()
        stored = _uuids(store)
        assert set(answered) <= set(stored)
        assert len(stored) == len(set(stored))
        assert log.replay.inserted == len(stored) - len(stored_before)
        assert log.replay.torn <= 1  # at most the one write the kill cut
        assert _segments(folder) == []
        store.dispose()


def test_a_call_that_cannot_be_journaled_is_refused_not_lost(tmp_path: Path) -> None:
    store = Database(f"sqlite:///{tmp_path / 'platform.db'}")
    folder = tmp_path / "journal"
    log = PredictionLog(store, journal_dir=folder)
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    segment = _segments(folder)[0]
    assert oct(segment.stat().st_mode & 0o777) == "0o600"
    log.record(_row("kept"))
    os.close(log._segment.fd)  # the journal fails under the log (a disk error)
    with pytest.raises(UnavailableError, match="could not be recorded"):
        log.record(_row("refused"))
    log._segment.fd = os.open(segment, os.O_WRONLY | os.O_APPEND)
    log.close()
    assert _uuids(store) == ["kept"]
    with pytest.raises(UnavailableError, match="closed"):
        log.record(_row("late"))


def test_audit_rows_and_periodic_sources_still_flow(tmp_path: Path) -> None:
    store = Database(f"sqlite:///{tmp_path / 'platform.db'}")
    asked: list[bool] = []

    def source(everything: bool = False) -> list[dict]:
        asked.append(everything)
        return [{"actor": "anonymous", "action": "model.call.refused",
                 "target": "source/10.0.0.9", "outcome": "denied", "detail": "2"}] \
            if everything else []

    log = PredictionLog(store, journal_dir=tmp_path / "journal", flush_interval=0.01,
                        periodic=[source])
    log.audit({"actor": "ann", "action": "x", "target": "t", "outcome": "ok"})
    log.record(_row("p1"))
    log.close()
    assert asked[-1] is True
    with store.engine.connect() as conn:
        actions = sorted(r[0] for r in conn.execute(text("SELECT action FROM audit_events")))
    assert actions == ["model.call.refused", "x"] and _uuids(store) == ["p1"]
    assert json.loads(journal_line(_row("p1")))["c"] == "ann"

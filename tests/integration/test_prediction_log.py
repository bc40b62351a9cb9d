"""The prediction log loses nothing when the store refuses writes (SQLite here).

An unavailable store (OperationalError) keeps the rows and retries them (and keeps their
journal segment: a crash now would replay them); rows the store refuses for good go to a
spill file, as does everything still unwritten at shutdown.
"""

import json
import time
from pathlib import Path

from sqlalchemy import text

from icefloe.serving.predictions import PredictionLog
from icefloe.store.db import Database


def _row(uuid: str) -> tuple:
    return (uuid, "d1", "b1", "m", 1, 1000, "ann", '{"x": 1}', '{"probability": 0.5}', 0.2,
            "{}")


def _count(db: Database) -> int:
    with db.engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM predictions")).scalar_one()


def _rename(db: Database, old: str, new: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))


def test_rows_wait_out_an_outage_and_refused_or_leftover_rows_are_spilled(
        tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'platform.db'}")
    spill = tmp_path / "logs"
    journal = tmp_path / "journal"
    log = PredictionLog(db, flush_interval=0.01, spill_dir=spill, journal_dir=journal,
                        rotate_every=0.0)

    _rename(db, "predictions", "predictions_away")  # the store "goes away"
    for i in range(50):
        log.record(_row(f"a{i}"))
    log.flush(timeout=0.5)  # gives up waiting; the rows are kept, not dropped
    segments = list(journal.iterdir())  # kept while their rows are not written
    assert sum(p.read_bytes().count(b"\n") for p in segments) == 50
    _rename(db, "predictions_away", "predictions")
    log.flush()
    assert _count(db) == 50
    deadline = time.monotonic() + 10
    while any(p.exists() for p in segments):  # written: deleted at the next switch
        assert time.monotonic() < deadline, "the written segment was kept"
        log.record(_row(f"x{time.monotonic_ns()}"))
        log.flush()

    written = _count(db)
    log.record(_row("a3"))  # a duplicate uuid: refused for good, the others still land
    log.record(_row("b1"))
    log.flush()
    assert _count(db) == written + 1

    _rename(db, "predictions", "predictions_away")
    log.record(_row("c1"))
    log.close()  # shutdown while the store is away: to the spill file
    lines = [json.loads(x) for x in (spill / "predictions-unwritten.jsonl").read_text()
             .splitlines()]
    assert [(x["table"], x["row"]["uuid"]) for x in lines] == [("predictions", "a3"),
                                                              ("predictions", "c1")]
    assert lines[1]["row"]["inputs"] == '{"x": 1}'
    assert list(journal.iterdir()) == []  # what was refused is in the spill file

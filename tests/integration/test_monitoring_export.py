"""The prediction log exported to monitoring.predictions: incremental, with ground truth that
arrives later, late journal rows included, and exactly one row per prediction after a killed
export is rerun. Real platform DB (SQLite), real Iceberg table, the real CLI."""

import json
import subprocess
import time
from pathlib import Path

from icefloe.config import Settings
from icefloe.lakehouse import Lakehouse
from icefloe.monitoring.export import TABLE, export_predictions
from icefloe.serving.predictions import track_delayed_metrics
from icefloe.store import repo
from icefloe.store.db import Database
from icefloe.store.orm import Build, Prediction
from tests.conftest import ICEFLOE

SCHEMA = {"fields": [{"name": "mean radius", "kind": "number", "nullable": True},
                     {"name": "score", "kind": "number", "nullable": False},
                     {"name": "größe", "kind": "string", "nullable": True, "levels": ["s"]}]}
START_MS = 1_790_000_000_000


def _log(db: Database, first: int, count: int, *, at: int | None = None) -> list[str]:
    """Record ``count`` answered predictions (as the prediction log writes them)."""
    uuids = []
    with db.session() as s:
        if s.get(Build, "b1") is None:
            s.add(Build(id="b1", model_name="odd", model_version=1, status="BUILD_READY",
                        reason="", path="", checksum="", input_schema=SCHEMA, created_by="",
                        created_at=repo.now()))
        for i in range(first, first + count):
            uuid = f"00000000-0000-7000-8000-{i:012d}"
            s.add(Prediction(
                uuid=uuid, deployment_id="d1", build_id="b1", model_name="odd", model_version=1,
                timestamp_ms=(START_MS + i * 1000) if at is None else at, caller="alice",
                inputs={"mean radius": i / 10, "score": 7.0, "größe": "s" if i % 2 else None},
                outputs={"prediction": i % 2, "probability": (i % 100) / 100},
                latency_ms=0.4, metrics={}))
            uuids.append(uuid)
    return uuids


def _rows(lh: Lakehouse) -> dict[str, dict]:
    table = lh.read(TABLE)
    rows = table.to_pylist()
    assert len(rows) == len({r["uuid"] for r in rows}), "a prediction is in the table twice"
    return {r["uuid"]: r for r in rows}


def test_export_is_incremental_and_takes_late_truth_and_late_rows(settings: Settings) -> None:
    db = Database(settings.resolved_platform_db_url)
    lh = Lakehouse(settings)
    first = _log(db, 0, 300)
    track_delayed_metrics(db, first[0], {"final_label": 1})

    done = export_predictions(db, lh)
    assert (done.added, done.truth_updated, done.rows) == (300, 0, 300)
    rows = _rows(lh)
    one = rows[first[1]]
    assert one["mean radius"] == 0.1 and one["input_score"] == 7.0 and one["größe"] == "s"
    assert one["score"] == 0.01 and one["prediction"] == 1 and one["truth"] is None
    assert rows[first[0]]["truth"] == 1.0 and one["model"] == "odd" and one["deployment"] == "d1"
    sql = lh.sql(f'SELECT count(*) AS n, avg("mean radius") AS m FROM {TABLE}').to_pylist()
    assert sql == [{"n": 300, "m": sum(i / 10 for i in range(300)) / 300}]

    assert export_predictions(db, lh).added == 0  # nothing new: no commit, nothing twice

    for uuid in first[10:60]:
        track_delayed_metrics(db, uuid, {"final_label": 0})
    newer = _log(db, 300, 20)
    late = _log(db, 1000, 5, at=START_MS + 250 * 1000)  # a replayed journal: older times
    done = export_predictions(db, lh)
    assert (done.added, done.truth_updated, done.rows) == (25, 50, 325)
    rows = _rows(lh)
    assert set(rows) == {*first, *newer, *late}
    assert [rows[u]["truth"] for u in first[10:60]] == [0.0] * 50
    assert rows[first[60]]["truth"] is None and rows[first[0]]["truth"] == 1.0
    assert rows[first[10]]["mean radius"] == 1.0  # a replaced row keeps its inputs
    db.dispose()


def test_a_killed_export_rerun_leaves_one_row_per_prediction(settings: Settings,
                                                             tmp_path: Path) -> None:
    db = Database(settings.resolved_platform_db_url)
    lh = Lakehouse(settings)
    logged = _log(db, 0, 2000)
    assert export_predictions(db, lh).added == 2000
    more = _log(db, 2000, 3000)
    for uuid in logged[:100]:
        track_delayed_metrics(db, uuid, {"final_label": 1})

    env = {"ICEFLOE_HOME": str(settings.home), "MLFLOW_DISABLE_TELEMETRY": "true",
           "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([*ICEFLOE, "monitor", "export"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    for line in proc.stderr:  # killed once it has read the log, before or while it commits
        if "log rows read" in line:
            break
        assert time.monotonic() < deadline
    proc.kill()
    proc.wait(timeout=30)

    again = subprocess.run([*ICEFLOE, "monitor", "export", "--json"], env=env, text=True,
                           capture_output=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    rows = _rows(lh)
    assert set(rows) == {*logged, *more} and result["rows"] == 5000
    assert sum(1 for u in logged[:100] if rows[u]["truth"] == 1.0) == 100
    db.dispose()

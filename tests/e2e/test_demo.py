"""The acceptance story as `make demo` runs it (slow: Spark jobs and Airflow DAG runs).

Where the test PostgreSQL is (CI), the story runs as a team that outgrew SQLite runs it: one
PostgreSQL database (``database_url``) for the Iceberg catalog, MLflow and the platform DB;
elsewhere on SQLite, as `make demo` does (every other test covers those stores). Tables and
artifacts on S3 are CI's in tests/integration/test_object_storage.py and
tests/e2e/test_nodes.py: moto's server, in Python, would double the story's time on a
2-core machine; `ICEFLOE_TEST_DEMO_S3=1` puts the story's on it too."""

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from icefloe.config import load_settings
from icefloe.lakehouse import Lakehouse
from tests.conftest import ICEFLOE, run_cli
from tests.e2e.ui_walk import walk_the_demo
from tests.objectstore import SECRET_KEY
from tests.postgres import POSTGRES, fresh_database
from tests.servers import Receiver

# Screenshots of every page the browser walk shows (test artifacts; CI keeps the folder).
SHOTS = Path(os.environ.get("ICEFLOE_TEST_ARTIFACTS",
                            Path(__file__).resolve().parents[2] / "test-artifacts")) / "ui"

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(1200)  # the whole story and a browser walk, on a busy 2-core machine
def test_demo_runs_the_whole_story_and_its_web_ui(tmp_path, airflow_venv, object_store) -> None:
    home = tmp_path / "home"
    with contextlib.ExitStack() as stack:
        grown = _grown_up_stores(stack, home, object_store)
        _story_and_ui(home, airflow_venv, grown, object_store)


def _grown_up_stores(stack: contextlib.ExitStack, home: Path, object_store
                     ) -> tuple[str, str] | None:
    """With the test PostgreSQL: a fresh database and bucket named in the home's config
    file (so every process of the story uses them); ``(database URL, bucket)``."""
    if not POSTGRES:
        return None
    url = stack.enter_context(fresh_database("icefloe_demo"))
    bucket = object_store.bucket() if os.environ.get("ICEFLOE_TEST_DEMO_S3") else ""
    home.mkdir(parents=True)
    lines = [f'database_url = "{url}"'] + [
        f'{name.removeprefix("ICEFLOE_").lower()} = "{value}"'
        for name, value in (object_store.settings_env(bucket) if bucket else {}).items()]
    (home / "config.toml").write_text("[icefloe]\n" + "\n".join(lines) + "\n")
    return url, bucket


def _story_and_ui(home: Path, airflow_venv: Path, grown: tuple[str, str] | None,
                 object_store) -> None:
    """The story once, kept up with --serve: its output, files and stores are checked while
    it serves, then a real browser walks the web UI through its data (the walk rolls the
    table back, so it comes last)."""
    args = ["demo", "--rows", "2000", "--bad-rows", "500", "--airflow-venv", str(airflow_venv)]
    lineage = Receiver()  # OpenLineage events of the story

    def story_checks(out: str) -> None:
        for expected in (
            "1. Land the data",
            "class balance",
            "TrainModel: ENGINE_SUCCEEDED",
            "webhook received: FIRING accuracy",
            "(signature valid)",
            "mlops_success: success",
            "mlops_fail: failed",
            "training failed: the baseline pipeline cannot assemble string column(s) "
            "'home_ownership', 'purpose'",
            "columns removed: home_ownership, purpose",
            "the guard is back: refused: column(s) 'home_ownership', 'purpose' not in table",
            "fingerprint matches",
            "mlops_fail: success",
            "now serves loan-default/3 (zero-downtime switch)",
            "8. Summary",
        ):
            assert expected in out, expected
        assert "Traceback" not in out
        summary = json.loads((home / "demo" / "summary.json").read_text())
        assert summary["dags"] == {"mlops_success": "success", "mlops_fail": "failed",
                                   "mlops_fail_fixed": "success"}
        # Every call the prober made while the pipeline failed, the table rolled back and
        # the fixed version took over was answered; both versions answered some.
        assert summary["calls"] > 100 and summary["answered"] == summary["calls"]
        assert summary["availability_percent"] == 100.0
        assert set(summary["calls_by_version"]) == {"2", "3"}
        old, new = summary["versions"]
        assert (old["version"], old["pipeline"], new["version"], new["pipeline"]) == (
            2, "baseline", 3, "categorical")
        assert 0 < summary["failure_to_fix_s"] < summary["total_s"]
        _assert_story_state(home, summary)
        _assert_governance(home, summary, [event for event, _, _ in lineage.received], out)
        if grown is not None:
            _assert_grown_up(home, grown, object_store, out)

    output, returncode, seen = _serve_and_walk(args, home, story_checks, env={
        "ICEFLOE_OPENLINEAGE_TRANSPORT": "http", "ICEFLOE_OPENLINEAGE_URL": lineage.base_url})
    assert returncode == 0, output[-5000:]
    summary = json.loads((home / "demo" / "summary.json").read_text())
    _assert_ui_walk(home, summary, seen)


def _serve_and_walk(args: list[str], home: Path, checks: Callable[[str], None],
                    env: dict[str, str]) -> tuple[str, int, dict]:
    """Run ``icefloe demo --serve``; once it serves, run ``checks`` on its output, walk the
    UI in Chromium, then stop it as Ctrl-C would (SIGTERM); returns its output, exit code
    and what the walk saw."""
    log = home.parent / "served.log"
    env = {**os.environ, "ICEFLOE_HOME": str(home), "COLUMNS": "200", **env}
    with log.open("w") as out:
        proc = subprocess.Popen([*ICEFLOE, "demo", *args[1:], "--serve"], stdout=out,
                                stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.monotonic() + 900
        while "serving until Ctrl-C" not in log.read_text():
            assert proc.poll() is None, log.read_text()[-5000:]
            assert time.monotonic() < deadline, "the demo did not start serving"
            time.sleep(1)
        checks(log.read_text())
        summary = json.loads((home / "demo" / "summary.json").read_text())
        seen = walk_the_demo(log.read_text(), SHOTS, summary["deployment"])
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    return log.read_text(), code, seen


def _assert_ui_walk(home: Path, summary: dict, seen: dict) -> None:
    """What the browser saw, checked against the stores."""
    lh = Lakehouse(load_settings(env={}, home=home))
    history = lh.snapshots("lending.loans")
    s1 = next(s for s in history if "s1-base" in s.tags)
    # ana's Simulation run: the page showed its log growing while it ran.
    sizes = seen["live_log"]
    assert sizes[-1] > 0 and any(b > a > 0 for a, b in zip(sizes, sizes[1:], strict=False)), sizes
    # The deployment: the alert fired and the tracked accuracy fell under its threshold.
    assert "FIRING" in seen["rule_states"] and "OK → FIRING" in seen["alert_history"]
    assert "accuracy" in seen["firing_overview"]
    accuracy = [float(t.rsplit(": ", 1)[1]) for t in seen["accuracy_points"]]
    assert max(accuracy) > 0.6 > min(accuracy), accuracy
    # The chain from the deployment back to the snapshot its model learned from.
    assert {"snapshot", "training", "model", "build", "deployment"} <= set(
        seen["lineage_kinds"]), seen["lineage_kinds"]
    new_version = summary["versions"][1]
    assert seen["chain_snapshot"] == new_version["snapshot_id"]
    assert seen["reproduce"].startswith("icefloe data reproduce loan-default/")
    # Two snapshots compared; the rollback to s1 confirmed, done and recorded.
    assert "+ home_ownership" in seen["diff"] and "+ purpose" in seen["diff"]
    assert str(s1.snapshot_id) in seen["plan"]
    assert seen["current_after_rollback"] == s1.snapshot_id
    assert lh.current_snapshot("lending.loans").snapshot_id == s1.snapshot_id
    assert "table.rollback" in seen["audit"] and "session.open" in seen["audit"]
    assert seen["after_sign_out"].endswith("/ui/signin?next=%2Fui%2F")
    # raj (viewer): no buttons that change anything; forged and stale forms refused.
    assert seen["viewer_rollback_links"] == 0 and seen["viewer_buttons"] == 0
    assert seen["forged_status"] == 403
    assert seen["stale_status"] == 403 and "CSRF" in seen["stale_text"]
    assert seen["viewer_current_before"] == seen["viewer_current_after"]
    shots = sorted(p.name for p in SHOTS.glob("*.png"))
    assert {"demo-deployment.png", "demo-model.png", "demo-table-compare.png",
            "ana-run.png", "raj-table.png"} <= set(shots), shots


def _assert_story_state(home, summary) -> None:
    """What the story leaves behind, read from the stores themselves, not its narration."""
    from sqlalchemy import select

    from icefloe.config import load_settings
    from icefloe.lakehouse import Lakehouse
    from icefloe.registry.mlflow_registry import ModelRegistry
    from icefloe.store.db import Database
    from icefloe.store.orm import AlertEvent, AlertRule, Deployment, Job, Run

    settings = load_settings(env={}, home=home)
    lh = Lakehouse(settings)
    history = lh.snapshots("lending.loans")
    s1 = next(s for s in history if "s1-base" in s.tags)
    assert s1.total_rows == 2000 and s1.snapshot_id == summary["s1"]
    versions = ModelRegistry(settings).versions("loan-default")
    assert [v["pipeline"] for v in versions] == ["baseline", "baseline", "categorical"]
    assert versions[0]["snapshot_id"] == s1.snapshot_id
    # v3 learned from the rolled-back table plus the bad batch loaded again with --evolve.
    current = lh.current_snapshot("lending.loans")
    assert current is not None and versions[2]["snapshot_id"] == current.snapshot_id
    assert {"home_ownership", "purpose"} <= {f.name for f in lh.table("lending.loans")
                                             .schema().fields}
    report = lh.sql("SELECT pipeline, count(*) AS n FROM reports.mlops_pipeline "
                    "GROUP BY 1 ORDER BY 1").to_pylist()
    assert [r["pipeline"] for r in report] == ["mlops_fail", "mlops_success"]
    assert (home / "demo" / "mlops_report.csv").read_text().startswith("pipeline,")
    db = Database(settings.resolved_platform_db_url)
    try:
        with db.session() as s:
            names = {j.id: j.name for j in s.scalars(select(Job))}
            runs: dict[str, list[str]] = {}
            for r in s.scalars(select(Run).order_by(Run.created_at)):
                runs.setdefault(names[r.job_id], []).append(r.status)
            ok = "ENGINE_SUCCEEDED"
            assert runs["TrainModel"] == [ok, ok, "ENGINE_FAILED", ok]
            assert runs["LoadBatch"] == [ok] and runs["LoadBadBatch"] == [ok, ok]
            assert runs["PushModel"] == [ok, ok]
            assert runs["Simulation"] == runs["Inference"] == [ok, ok, ok]
            deployed = list(s.scalars(select(Deployment).where(
                Deployment.status == "DEPLOYED")))
            assert len(deployed) == 1 and deployed[0].model_version == 3
            (rule,) = s.scalars(select(AlertRule))
            assert rule.metric == "accuracy"
            assert ("FIRING", True) in [(e.to_state, e.delivered)
                                        for e in s.scalars(select(AlertEvent))]
    finally:
        db.dispose()
    assert "accuracy and label coverage" in (home / "demo" / "report.html").read_text()


def test_demo_refuses_to_replace_a_user_table(tmp_path, airflow_venv) -> None:
    home = tmp_path / "home"
    data = tmp_path / "mine.csv"
    data.write_text("a\n1\n")
    run_cli(["table", "load", "lending.loans", str(data)], home, check=True)
    proc = run_cli(["demo", "--airflow-venv", str(airflow_venv)], home)
    assert proc.returncode == 5
    assert "was not created by the demo" in proc.stderr
    rows = run_cli(["sql", "SELECT count(*) AS n FROM lending.loans", "--json"], home, check=True)
    assert '"n": 1' in rows.stdout


def _assert_governance(home, summary, events: list[dict], out: str) -> None:
    """Lineage of a prediction, who read the table, and the OpenLineage events sent."""
    from icefloe.config import load_settings
    from icefloe.lakehouse import Lakehouse
    from tests import openlineage_spec

    settings = load_settings(env={}, home=home)
    lh = Lakehouse(settings)
    history = {s.snapshot_id for s in lh.snapshots("lending.loans")}
    current = lh.current_snapshot("lending.loans").snapshot_id
    # A prediction of the fixed model walks back to its training snapshot, the table's
    # history with the rollback, and the Airflow task that loaded its batch.
    chain = summary["prediction_lineage"]
    assert chain["model_version"] == 3
    assert chain["training_snapshot"] == {"table": "lending.loans", "snapshot_id": current}
    batches = chain["batches"]
    assert batches[0]["snapshot_id"] == current and batches[-1]["snapshot_id"] == summary["s1"]
    loaded = [b for b in batches if any(a.startswith("airflow:mlops_fail/") for a in b["airflow"])]
    assert loaded and loaded[0]["runs"], batches
    assert chain["rollbacks"], chain
    assert f"icefloe lineage prediction:{chain['prediction']}" in out
    # ana's jobs read the table (ETL, training), raj read it with SQL.
    assert {"ana", "raj"} <= set(summary["readers"])
    assert "icefloe access lending.loans" in out
    # Every event is valid, and table versions are the snapshots the table really has.
    assert len(events) > 20
    if openlineage_spec.spec_dir() is not None:
        for event in events:
            openlineage_spec.validate(event)
    kinds = {(e["eventType"], e["job"]["namespace"]) for e in events}
    assert ("START", "icefloe") in kinds and ("COMPLETE", "icefloe") in kinds
    assert any(e["eventType"] == "FAIL" for e in events)  # the failed TrainModel
    versions = {int(d["facets"]["version"]["datasetVersion"])
                for e in events for d in e.get("outputs", [])
                if d["name"] == "lending.loans" and "version" in d.get("facets", {})}
    assert versions and versions <= history and current in versions
    parents = [e["run"]["facets"]["parent"] for e in events
               if "parent" in e["run"].get("facets", {})]
    assert any(p["job"]["namespace"] == "airflow" for p in parents)


def _assert_grown_up(home: Path, grown: tuple[str, str], object_store, output: str) -> None:
    """Every store of the story was a schema of the one database, every table file and
    model artifact an object in the bucket."""
    url, bucket = grown
    # None of icefloe's stores is a SQLite file: each is a schema of the one database
    # (Airflow keeps its own metadata DB in its home).
    files = [p for p in home.rglob("*.db") if "airflow" not in p.parts]
    assert not files, files
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        counts = dict(conn.execute(text(
            "SELECT table_schema, count(*) FROM information_schema.tables "
            "WHERE table_schema LIKE 'icefloe_%' GROUP BY table_schema")).all())
        versions = conn.execute(text(
            "SELECT count(*) FROM icefloe_mlflow.model_versions")).scalar_one()
        snapshots_of = conn.execute(text(
            "SELECT count(*) FROM icefloe_catalog.iceberg_tables "
            "WHERE table_namespace = 'lending' AND table_name = 'loans'")).scalar_one()
        runs = conn.execute(text(
            "SELECT count(*) FROM icefloe_platform.runs")).scalar_one()
    engine.dispose()
    assert set(counts) == {"icefloe_catalog", "icefloe_mlflow", "icefloe_platform"}
    assert versions == 3 and snapshots_of == 1 and runs > 10
    if not bucket:
        return
    # Tables and model artifacts are objects in the bucket, none on the local disk.
    keys = object_store.keys(bucket)
    assert any(k.startswith("warehouse/lending/loans/data/") for k in keys)
    assert any(k.startswith("mlartifacts/") and k.endswith("MLmodel") for k in keys)
    assert not list((home / "lake").rglob("*.parquet"))
    assert SECRET_KEY not in output

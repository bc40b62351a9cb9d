"""The acceptance story as `make demo` runs it (slow: Spark jobs and Airflow DAG runs)."""

import json

import pytest

from tests.conftest import run_cli
from tests.servers import Receiver

pytestmark = pytest.mark.e2e


def test_demo_runs_the_whole_story_twice(tmp_path, airflow_venv) -> None:
    home = tmp_path / "home"
    args = ["demo", "--rows", "2000", "--bad-rows", "500", "--airflow-venv", str(airflow_venv)]
    lineage = Receiver()  # OpenLineage events of the first run
    first = run_cli(args, home, timeout=900, env={
        "ICEFLOE_OPENLINEAGE_TRANSPORT": "http", "ICEFLOE_OPENLINEAGE_URL": lineage.base_url})
    assert first.returncode == 0, first.stderr + first.stdout[-5000:]
    out = first.stdout
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
    assert "Traceback" not in first.stderr
    summary = json.loads((home / "demo" / "summary.json").read_text())
    assert summary["dags"] == {"mlops_success": "success", "mlops_fail": "failed",
                               "mlops_fail_fixed": "success"}
    # Every call the prober made while the pipeline failed, the table rolled back and the
    # fixed version took over was answered; both versions answered some.
    assert summary["calls"] > 100 and summary["answered"] == summary["calls"]
    assert summary["availability_percent"] == 100.0
    assert set(summary["calls_by_version"]) == {"2", "3"}
    old, new = summary["versions"]
    assert (old["version"], old["pipeline"], new["version"], new["pipeline"]) == (
        2, "baseline", 3, "categorical")
    assert 0 < summary["failure_to_fix_s"] < summary["total_s"]
    _assert_story_state(home, summary)
    _assert_governance(home, summary, [event for event, _, _ in lineage.received], out)
    # Re-running replaces the demo's own table, model, endpoint and jobs and says so; the
    # Airflow home is reused and each DAG's outcome is its new run's, not the last demo's.
    second = run_cli(args, home, timeout=900)
    assert second.returncode == 0, second.stderr + second.stdout[-5000:]
    assert "replacing lending.loans from an earlier demo run" in second.stdout
    assert "replacing model loan-default from an earlier demo run" in second.stdout
    again = json.loads((home / "demo" / "summary.json").read_text())
    assert again["availability_percent"] == 100.0 and again["dags"] == summary["dags"]


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

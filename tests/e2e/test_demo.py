"""The acceptance story as `make demo` runs it (slow: starts Spark in a subprocess)."""

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.e2e


def test_demo_runs_the_data_story_twice(tmp_path) -> None:
    home = tmp_path / "home"
    first = run_cli(["demo", "--rows", "2000", "--bad-rows", "500"], home)
    assert first.returncode == 0, first.stderr + first.stdout
    out = first.stdout
    for expected in (
        "Land the raw data",
        "class balance",
        "refused: column(s) 'home_ownership', 'purpose' not in table lending.loans",
        "2,500 rows, new columns home_ownership, purpose",
        "S2 still reads 2,500 rows",
        "registered loan-default/1\ntest AUC",
        "training failed: the baseline pipeline cannot assemble string column(s) 'home_ownership'",
        "reproduced 2,000 rows; fingerprint matches the training data",
        "LoadBatch: ENGINE_SUCCEEDED",
        "TrainModel (started by LoadBatch's success): ENGINE_SUCCEEDED",
        "read_metrics: 5 predictions, 5 with ground truth",
        "Simulation: ENGINE_SUCCEEDED",
        "Inference: ENGINE_SUCCEEDED",
        "predictions 501-600: label noise 0.90",
        "webhook received: FIRING accuracy",
        "(signature valid)",
        "report.html (largest feature PSI",
    ):
        assert expected in out, expected
    assert "Traceback" not in first.stderr
    _assert_story_state(home)
    # Re-running replaces the demo's own table and tells the user so.
    second = run_cli(["demo", "--rows", "2000", "--bad-rows", "500"], home)
    assert second.returncode == 0, second.stderr
    assert "replacing lending.loans from an earlier demo run" in second.stdout
    assert "replacing model loan-default from an earlier demo run" in second.stdout
    assert "registered loan-default/1" in second.stdout


def _assert_story_state(home) -> None:
    """What the story leaves behind, read from the stores themselves, not its narration."""
    from sqlalchemy import select

    from icefloe.config import load_settings
    from icefloe.lakehouse import Lakehouse
    from icefloe.registry.mlflow_registry import ModelRegistry
    from icefloe.store.db import Database
    from icefloe.store.orm import (
        AggregateMetric,
        AlertEvent,
        AlertRule,
        Deployment,
        Job,
        Prediction,
        Run,
    )

    settings = load_settings(env={}, home=home)
    lh = Lakehouse(settings)
    history = lh.snapshots("lending.loans")
    s1 = next(s for s in history if "s1-base" in s.tags)
    assert s1.total_rows == 2000
    assert any(s.total_rows == 2500 for s in history)  # S2: the bad batch, kept in history
    # The job chain appended a batch of 500 to the rolled-back table (S1 + 500).
    current = lh.current_snapshot("lending.loans")
    assert current is not None and current.total_rows == 2500
    versions = ModelRegistry(settings).versions("loan-default")
    assert versions[0]["snapshot_id"] == s1.snapshot_id  # v1 learned from S1
    assert versions[-1]["snapshot_id"] == current.snapshot_id  # TrainModel's version
    assert len(versions) == 2
    db = Database(settings.resolved_platform_db_url)
    try:
        with db.session() as s:
            runs = {s.get(Job, r.job_id).name: r for r in s.scalars(select(Run))}
            assert {n: r.status for n, r in runs.items()} == {
                "LoadBatch": "ENGINE_SUCCEEDED", "TrainModel": "ENGINE_SUCCEEDED",
                "Simulation": "ENGINE_SUCCEEDED", "Inference": "ENGINE_SUCCEEDED"}
            assert runs["TrainModel"].parent_run_id == runs["LoadBatch"].id
            assert runs["Inference"].parent_run_id == runs["Simulation"].id
            deployed = list(s.scalars(select(Deployment).where(
                Deployment.status == "DEPLOYED")))
            assert len(deployed) == 1 and deployed[0].model_version == versions[-1]["version"]
            predictions = list(s.scalars(select(Prediction)))
            assert len(predictions) == 5 + 600  # the story's five, then Simulation's
            assert all(p.delayed_metrics and "final_label" in p.delayed_metrics
                       for p in predictions)
            accuracies = [a.metrics["accuracy"] for a in s.scalars(
                select(AggregateMetric).order_by(AggregateMetric.start_timestamp_ms))]
            assert len(accuracies) == 6 and accuracies[-1] < accuracies[0] - 0.3  # decay
            (rule,) = s.scalars(select(AlertRule))
            assert rule.state == "FIRING" and rule.metric == "accuracy"
            events = list(s.scalars(select(AlertEvent)))
            assert [(e.to_state, e.delivered) for e in events] == [("FIRING", True)]
    finally:
        db.dispose()
    assert "accuracy and label coverage" in (home / "demo" / "report.html").read_text()


def test_demo_refuses_to_replace_a_user_table(tmp_path) -> None:
    home = tmp_path / "home"
    data = tmp_path / "mine.csv"
    data.write_text("a\n1\n")
    run_cli(["table", "load", "lending.loans", str(data)], home, check=True)
    proc = run_cli(["demo"], home)
    assert proc.returncode == 5
    assert "was not created by the demo" in proc.stderr
    rows = run_cli(["sql", "SELECT count(*) AS n FROM lending.loans", "--json"], home, check=True)
    assert '"n": 1' in rows.stdout

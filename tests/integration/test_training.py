"""Training on real snapshots with real Spark, MLflow (SQLite) and onnxruntime."""

from pathlib import Path

import mlflow
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from icefloe.config import Settings
from icefloe.demo.loans import generate_loans
from icefloe.errors import NotFoundError, TrainingError
from icefloe.lakehouse import Lakehouse
from icefloe.lakehouse.fingerprint import fingerprint
from icefloe.ml.scoring import score_table
from icefloe.ml.spec import LabelSpec, TrainSpec
from icefloe.ml.train import train
from icefloe.registry.mlflow_registry import ModelRegistry
from icefloe.registry.reproduce import reproduce_training_data

pytestmark = pytest.mark.spark
LOANS = "lending.loans"
LABEL = LabelSpec("loan_status", ("Charged Off", "Default"))


def _spec(**kw) -> TrainSpec:
    return TrainSpec(**{"table": LOANS, "label": LABEL, "model_name": "loan-default", **kw})


def test_train_lineage_reproduce_rollback_and_retrain(spark, settings: Settings,
                                                      tmp_path: Path) -> None:
    lh = Lakehouse(settings)
    s1 = lh.write(LOANS, generate_loans(3000, 42), "create").snapshot
    result = train(_spec(), settings, spark=spark)
    assert result.version == 1
    assert result.metrics["auc"] >= 0.65 and result.parity <= 1e-5
    assert result.lineage.snapshot_id == s1.snapshot_id and result.lineage.row_count == 3000
    assert set(result.timings) >= {"fit", "onnx compile", "mlflow log"}

    lh.write(LOANS, generate_loans(500, 7), "append")  # S2
    registry = ModelRegistry(settings)
    assert registry.lineage("loan-default/1").snapshot_id == s1.snapshot_id
    out = reproduce_training_data(settings, "loan-default/1", tmp_path / "train.parquet")
    written = pq.read_table(out["output"])
    assert written.num_rows == 3000 and fingerprint(written) == result.lineage.fingerprint

    lh.rollback(LOANS, registry.lineage("loan-default/1").snapshot_id)
    assert fingerprint(lh.read(LOANS)) == result.lineage.fingerprint

    again = train(_spec(), settings, spark=spark)
    assert again.version == 2
    for key in ("auc", "accuracy", "f1", "tp", "fp"):
        assert again.metrics[key] == pytest.approx(result.metrics[key], abs=1e-9)
    run = mlflow.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(result.run_id)}
    assert {"curves", "spark-model", "lineage.json", "confusion_matrix.json"} <= artifacts


def test_baseline_fails_on_string_column_then_categorical_registers(spark,
                                                                     settings: Settings) -> None:
    lh = Lakehouse(settings)
    lh.write(LOANS, generate_loans(2000, 1), "create")
    lh.write(LOANS, generate_loans(600, 1, bad_batch=True), "append", evolve=True)
    with pytest.raises(TrainingError, match="'home_ownership', 'purpose'.*categorical"):
        train(_spec(), settings, spark=spark)
    registry = ModelRegistry(settings)
    with pytest.raises(NotFoundError):
        registry.versions("loan-default")
    failed = mlflow.search_runs(experiment_names=["icefloe"], output_format="list")
    assert [r.info.status for r in failed] == ["FAILED"]
    assert "home_ownership" in failed[0].data.tags["icefloe.error"]

    result = train(_spec(pipeline="categorical"), settings, spark=spark)
    assert result.version == 1 and result.parity <= 1e-5
    assert result.lineage.categorical_features == ["home_ownership", "purpose"]
    assert result.metrics["rows_null_category"] > 0  # the older rows: unknown category


def test_any_table_trains_scores_and_imputes(spark, settings: Settings) -> None:
    import numpy as np

    rng = np.random.default_rng(5)
    n = 1200
    x1 = rng.normal(size=n)
    color = rng.choice(["red", "green", "blue"], size=n)
    logit = 1.5 * x1 + np.where(color == "red", 1.0, -0.5)
    churn = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    x1_masked = pa.array(x1, mask=rng.random(n) < 0.05)
    lh = Lakehouse(settings)
    lh.write("crm.customers", pa.table({"tenure": x1_masked, "color": color, "churn": churn}),
             "create")
    spec = TrainSpec(table="crm.customers", label=LabelSpec("churn", ("yes",)),
                     model_name="churn", pipeline="categorical", nulls="impute")
    result = train(spec, settings, spark=spark)
    assert result.metrics["auc"] > 0.75 and result.parity <= 1e-5
    assert result.lineage.dropped_rows == 0
    ModelRegistry(settings).set_alias("churn/1", "champion")

    scored = score_table("churn@champion", "crm.customers", "crm.scores", settings=settings)
    assert scored.rows == n and scored.unscored_rows == 0 and scored.version == 1
    out = lh.read("crm.scores")
    assert {"prediction", "probability", "model_version", "source_snapshot_id"} <= set(
        out.column_names)
    assert set(out.column("source_snapshot_id").to_pylist()) == {scored.source_snapshot_id}
    probs = np.array(out.column("probability").to_pylist())
    assert ((probs >= 0) & (probs <= 1)).all()
    assert out.column("prediction").to_pylist() == [int(p >= 0.5) for p in probs]


def test_label_must_be_binary(spark, settings: Settings) -> None:
    Lakehouse(settings).write("t.x", pa.table({"a": [1.0, 2.0, 3.0], "y": [0, 1, 2]}), "create")
    spec = TrainSpec(table="t.x", label=LabelSpec("y"), model_name="x")
    with pytest.raises(TrainingError, match="'y' is not 0/1"):
        train(spec, settings, spark=spark)


def test_tree_pipeline_and_parity_refusal(spark, settings: Settings, monkeypatch) -> None:
    import numpy as np

    import icefloe.ml.train as train_module

    rng = np.random.default_rng(11)
    n = 1500
    x = rng.normal(size=n)
    plan = rng.choice(["basic", "plus", "pro"], size=n)
    logit = np.where(x > 0.3, 1.2, -0.8) + np.where(plan == "basic", 0.8, -0.4)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    lh = Lakehouse(settings)
    lh.write("crm.users", pa.table({"x": x, "plan": plan, "left": y}), "create")
    spec = TrainSpec(table="crm.users", label=LabelSpec("left"), model_name="trees",
                     pipeline="tree", num_trees=20)
    result = train(spec, settings, spark=spark)
    assert result.parity <= 1e-5 and result.metrics["auc"] > 0.7

    # ONNX scores in float32 and Spark in double, so parity is small but never exactly 0:
    # a limit of 0 must refuse the registration and leave the registry as it was.
    assert result.parity > 0
    monkeypatch.setattr(train_module, "PARITY_LIMIT", 0.0)
    with pytest.raises(TrainingError, match="ONNX model differs from Spark"):
        train(spec, settings, spark=spark)
    assert [v["version"] for v in ModelRegistry(settings).versions("trees")] == [1]


def test_columns_without_values_are_left_out_unless_named(spark, settings: Settings) -> None:
    lh = Lakehouse(settings)
    lh.write(LOANS, generate_loans(1500, 3), "create")
    s1 = lh.current_snapshot(LOANS).snapshot_id
    lh.write(LOANS, generate_loans(300, 3, bad_batch=True), "append", evolve=True)
    lh.rollback(LOANS, s1, keep_schema=True)
    lh.write(LOANS, generate_loans(300, 4), "append")  # new rows, columns still in the schema
    result = train(_spec(pipeline="categorical"), settings, spark=spark)
    assert result.lineage.categorical_features == [] and result.parity <= 1e-5
    assert mlflow.get_run(result.run_id).data.params["empty_features_left_out"] == (
        "home_ownership,purpose")
    with pytest.raises(TrainingError, match="'purpose' have no values"):
        train(_spec(pipeline="categorical", features=("int_rate", "purpose")), settings,
              spark=spark)

"""Training: read a snapshot through Spark, fit, evaluate, compile to ONNX, register.

:func:`train` is what ``icefloe train`` and job scripts call. Every run is an MLflow run; a
failure at any step marks the run FAILED and registers nothing.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from icefloe.compute.spark import SparkStart
from icefloe.config import Settings, load_settings
from icefloe.errors import ParityError, TrainingError
from icefloe.happenings import Dataset, Happening, emit, process_actor, process_parent
from icefloe.lakehouse import Lakehouse
from icefloe.lakehouse.fingerprint import fingerprint
from icefloe.lakehouse.snapshots import format_ms, resolve_snapshot
from icefloe.ml.evaluation import evaluate, save_curves
from icefloe.ml.onnx import PARITY_LIMIT, OnnxScorer, compile_onnx, parity
from icefloe.ml.pipelines import (
    LABEL,
    PROBABILITY,
    PreparedData,
    build_pipeline,
    column,
    model_columns,
    model_frame,
    prepare,
    split,
    to_model_columns,
)
from icefloe.ml.spec import FeatureSet, TrainSpec, resolve_features
from icefloe.monitoring.profile import PROFILE_ARTIFACT
from icefloe.monitoring.reference import profile_arrow
from icefloe.records import jsonable
from icefloe.registry.lineage import (
    LINEAGE_ARTIFACT,
    PARITY_SAMPLES_ARTIFACT,
    TAG_PREFIX,
    Lineage,
)
from icefloe.registry.mlflow_registry import ModelRegistry

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession

PARITY_SAMPLES = 200
JOB_RUN_TAG = TAG_PREFIX + "job_run_id"  # the job run that trained, when one did
StepCallback = Callable[[str], None]


@dataclass
class TrainResult:
    """What a training run produced."""

    model_name: str
    version: int
    run_id: str
    metrics: dict[str, float]
    confusion_matrix: list[list[int]]
    parity: float
    lineage: Lineage
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        out = asdict(self)
        out["lineage"] = self.lineage.to_dict()
        return out

    def summary_lines(self) -> list[str]:
        """What people want to see after training: metrics, confusion matrix, lineage."""
        m, ln = self.metrics, self.lineage
        return [
            f"test AUC {m['auc']:.4f}  accuracy {m['accuracy']:.4f}  precision "
            f"{m['precision']:.4f}  recall {m['recall']:.4f}  F1 {m['f1']:.4f}  "
            f"ONNX parity {self.parity:.2e}",
            f"confusion matrix [[tn, fp], [fn, tp]] = {self.confusion_matrix}",
            f"lineage: {ln.table}@{ln.snapshot_id} ({ln.row_count:,} rows, {ln.snapshot_time}) "
            f"fingerprint {ln.fingerprint}, run {ln.run_id}",
        ]


class _Timer:
    def __init__(self, on_step: StepCallback | None) -> None:
        self.timings: dict[str, float] = {}
        self.on_step = on_step

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        if self.on_step:
            self.on_step(name)
        start = time.perf_counter()
        try:
            yield
        except Exception as exc:
            named = _spark_failure(name, exc)
            if named is None:
                raise
            raise named from exc
        finally:
            self.timings[name] = round(time.perf_counter() - start, 3)


def _spark_failure(step: str, exc: Exception) -> TrainingError | None:
    """A Spark or Py4J error of a training step as a TrainingError naming the step and
    Spark's own first line (a user never sees an "internal error" for what Spark refused);
    None for anything else."""
    kind = type(exc)
    if not kind.__module__.startswith(("pyspark", "py4j")):
        return None
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    first = next((line for line in lines if not line.startswith(("An error occurred", "at "))),
                 kind.__name__)
    return TrainingError(f"the {step} step failed in Spark: {first[:500]}")


def _pip_requirements() -> list[str]:
    reqs = []
    for pkg in ("onnx", "onnxruntime"):
        try:
            reqs.append(f"{pkg}=={metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            reqs.append(pkg)
    return reqs


def drop_empty_features(value_counts: Mapping[str, int], features: FeatureSet,
                        spec: TrainSpec) -> tuple[FeatureSet, list[str]]:
    """Leave out feature columns that hold no value at all in the rows to train on.

    Such a column (e.g. a categorical column added by a later batch, read at a snapshot whose
    rows all predate it) carries no information and cannot be encoded. Columns the user
    named with ``--features`` are never left out: that is an error instead.

    Args:
        value_counts: Non-null values per feature column in the rows to train on
            (:attr:`icefloe.ml.pipelines.PreparedData.value_counts`).

    Raises:
        TrainingError: A named feature has no values.
    """
    empty = [c for c in features.all if value_counts[c] == 0]
    named = [c for c in empty if c in spec.features]
    if named:
        raise TrainingError(
            f"feature column(s) {', '.join(repr(c) for c in named)} have no values in "
            f"the rows of {spec.table} to train on"
        )
    if not empty:
        return features, []
    kept = FeatureSet(tuple(c for c in features.numeric if c not in empty),
                      tuple(c for c in features.categorical if c not in empty))
    if not kept.all:
        raise TrainingError(f"no feature column of {spec.table} has any value")
    return kept, empty


class _Background:
    """One function run in a daemon thread; :meth:`result` waits and re-raises its error."""

    def __init__(self, fn: Callable[[], Any], name: str) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), name=name, daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._value = fn()
        except BaseException as exc:
            self._error = exc

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> Any:
        self.wait()
        if self._error is not None:
            raise self._error
        return self._value


def _load_later_steps() -> None:
    """Import what evaluation, ONNX compilation and model logging use, while Spark fits
    (the main thread then only waits on the JVM). Best effort: a failure here shows up
    again, with its real traceback, where the step runs."""
    try:
        import matplotlib.figure  # noqa: F401
        import mlflow.onnx  # noqa: F401
        import onnxmltools  # noqa: F401
        import onnxruntime  # noqa: F401
        from mlflow.utils import requirements_utils

        # log_model checks the pip requirements against the installed packages; the map of
        # every installed distribution it builds for that takes ~0.7 s. Build it now.
        getattr(requirements_utils, "_init_packages_to_modules_map", lambda: None)()
    except Exception:  # pragma: no cover - best effort
        logging.getLogger(__name__).debug("preloading the later steps failed", exc_info=True)


def train(
    spec: TrainSpec,
    settings: Settings | None = None,
    *,
    spark: SparkSession | SparkStart | None = None,
    on_step: StepCallback | None = None,
) -> TrainResult:
    """Train, evaluate, compile and register a model on a table snapshot.

    When no session is given, Spark starts in the background as soon as the snapshot's
    columns are known to fit the pipeline, while MLflow opens its store and the snapshot is
    read and fingerprinted; the data is then prepared, counted and split in one Spark job.

    Args:
        spec: What to train (table, label, features, pipeline, snapshot...).
        settings: icefloe settings; loaded from the environment if omitted.
        spark: A session to use, or one being started (:func:`~icefloe.compute.spark.
            start_spark_session`, so a caller can start it before importing this module);
            one is started from the settings if omitted.
        on_step: Called with each step's name as it starts (for progress display).

    Returns:
        The registered version with its metrics, ONNX parity, lineage and step timings.

    Raises:
        TrainingError: Bad options for this data (e.g. a string column for ``baseline``).
        ParityError: The ONNX model differs from Spark by more than 1e-5.
    """
    spec.validate()
    settings = settings or load_settings()
    timer = _Timer(on_step)
    with timer.step("set-up"):
        lh = Lakehouse(settings)
        table = lh.table(spec.table)
        snap = resolve_snapshot(table, snapshot_id=spec.snapshot_id, tag=spec.tag)
        if snap is None:
            raise TrainingError(f"table {spec.table} has no snapshot to train on")
        schema = table.scan(snapshot_id=snap.snapshot_id).projection()
        unusable: TrainingError | None = None
        try:
            features = resolve_features(schema, spec)
        except TrainingError as exc:  # recorded as a FAILED run below; no Spark needed
            features, unusable = FeatureSet((), ()), exc
        starting = spark if isinstance(spark, SparkStart) else None
        if spark is None and unusable is None:
            from icefloe.compute.spark import start_spark_session

            starting = start_spark_session(settings,
                                           app_name=f"icefloe-train-{spec.model_name}")
        import mlflow

        registry = ModelRegistry(settings)
        run_tags = {
            TAG_PREFIX + "table": spec.table,
            TAG_PREFIX + "snapshot_id": str(snap.snapshot_id),
            TAG_PREFIX + "pipeline": spec.pipeline,
            TAG_PREFIX + "model": spec.model_name,
            **({JOB_RUN_TAG: os.environ["ICEFLOE_RUN_ID"]} if os.environ.get("ICEFLOE_RUN_ID")
               else {}),
            **spec.extra_tags,
        }
    with registry.run(spec.experiment, f"{spec.model_name}-{spec.pipeline}", run_tags) as run, \
            _published(spec, snap.snapshot_id, run.info.run_id) as outcome:
        mlflow.log_params(spec.params())
        if unusable is not None:
            raise unusable
        with timer.step("fingerprint"):
            rows = lh.read(spec.table, snapshot_id=snap.snapshot_id)
            data_fingerprint = fingerprint(rows)
        with timer.step("spark start"):
            if starting is not None:
                spark = starting.result()
        assert spark is not None and not isinstance(spark, SparkStart)
        from icefloe.compute.bridge import read_table

        with timer.step("read snapshot"):
            original_columns = [f.name for f in schema.fields]
            frame = read_table(spark, spec.table, snapshot_id=snap.snapshot_id, lakehouse=lh,
                               record=False)  # the training happening names the read
            prepared = prepare(frame, features, spec.label, spec.nulls,
                               split_columns=original_columns,
                               test_fraction=spec.test_fraction, seed=spec.seed)
        try:
            result = _fit_evaluate_register(
                spark, spec, settings, registry, run, timer, on_step, prepared, features,
                original_columns, snap, rows, data_fingerprint)
        finally:
            if prepared.source is not None:
                prepared.source.unpersist()
        outcome["result"] = result
    return result


@contextmanager
def _published(spec: TrainSpec, snapshot_id: int, run_id: str) -> Iterator[dict[str, Any]]:
    """Publish the training's START, then its COMPLETE (with the version registered, put in
    the yielded dict as ``result``) or its FAIL (with the error)."""
    emit(lambda: _happening("START", spec, snapshot_id, run_id))
    outcome: dict[str, Any] = {}
    try:
        yield outcome
    except BaseException as exc:
        error = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        emit(lambda: _happening("FAIL", spec, snapshot_id, run_id, error=error[:2000]))
        raise
    emit(lambda: _happening("COMPLETE", spec, snapshot_id, run_id, outcome.get("result")))


def _happening(state: str, spec: TrainSpec, snapshot_id: int, run_id: str,
               result: TrainResult | None = None, error: str = "") -> Happening:
    """A training happening: the snapshot read, the model, its parameters and, once
    registered, its version, metrics and ONNX parity."""
    subject: dict[str, Any] = {"model": spec.model_name, "pipeline": spec.pipeline,
                               "experiment": spec.experiment, "params": spec.params(),
                               "label": spec.label.describe()}
    fields: tuple[str, ...] = ()
    rows = None
    if result is not None:
        subject.update(version=result.version, metrics=result.metrics, parity=result.parity,
                       fingerprint=result.lineage.fingerprint,
                       features=list(result.lineage.features))
        fields, rows = tuple(result.lineage.features), result.lineage.row_count
    if error:
        subject["error"] = error
    return Happening("training", state, run_id, actor=process_actor(),
                     inputs=(Dataset(spec.table, snapshot_id=snapshot_id, fields=fields,
                                     rows=rows),),
                     subject=subject, parent=process_parent())


def _fit_evaluate_register(
    spark: SparkSession, spec: TrainSpec, settings: Settings, registry: ModelRegistry,
    run: Any, timer: _Timer, on_step: StepCallback | None, prepared: PreparedData,
    features: FeatureSet, original_columns: list[str], snap: Any, rows: pa.Table,
    data_fingerprint: str,
) -> TrainResult:
    import mlflow

    features, empty = drop_empty_features(prepared.value_counts, features, spec)
    if empty:
        mlflow.log_param("empty_features_left_out", ",".join(empty))
        if on_step:
            on_step(f"left out columns with no values: {', '.join(empty)}")
    train_rows, test_rows = prepared.train_rows, prepared.test_rows
    if train_rows == 0 or test_rows == 0:
        raise TrainingError(
            f"{spec.table}@{snap.snapshot_id} leaves {train_rows} training and {test_rows} "
            "test rows after removing nulls; need at least one of each"
        )
    labels_seen = set(prepared.train_labels)
    if labels_seen != {0.0, 1.0}:
        raise TrainingError(
            f"the training rows of {spec.table} hold only label value(s) "
            f"{sorted(labels_seen)}; both classes are needed ({spec.label.describe()})"
        )
    train_df, test_df = split(prepared.frame, original_columns, spec.test_fraction, spec.seed)
    names = model_columns(features)
    with timer.step("fit"):
        pipeline = build_pipeline(to_model_columns(features), spec)
        loading = _Background(_load_later_steps, "icefloe-imports")
        model = pipeline.fit(model_frame(train_df, features))
        loading.wait()  # no two threads importing at once from here on
    with tempfile.TemporaryDirectory() as tmp:
        # The Spark model is written by Spark jobs of its own, alongside evaluation.
        spark_dir = Path(tmp) / "spark-model"
        saving = _Background(lambda: model.write().overwrite().save(str(spark_dir)),
                             "icefloe-save-spark-model")
        try:
            with timer.step("evaluate"):
                from pyspark.ml.functions import vector_to_array
                from pyspark.sql import functions as F

                scored: Any = model.transform(model_frame(test_df, features)).select(
                    F.col(LABEL), vector_to_array(F.col(PROBABILITY))[1].alias("__p"),
                    *[column(names[c]).alias(c) for c in features.all],
                ).toPandas()
                labels = scored[LABEL].to_numpy(dtype=np.float64)
                spark_probs = scored["__p"].to_numpy(dtype=np.float64)
                ev = evaluate(labels, spark_probs)
            with timer.step("onnx compile"):
                onnx_model = compile_onnx(model, features, spark)
                scorer = OnnxScorer(onnx_model.SerializeToString(), features)
                onnx_probs = scorer.probabilities({c: scored[c].tolist() for c in features.all})
                max_diff = parity(spark_probs, onnx_probs)
            metrics = {**ev.metrics(), "onnx_parity_max_abs_diff": max_diff,
                       "train_rows": float(train_rows), "test_rows": float(test_rows),
                       "rows_dropped_null_label": float(prepared.null_label_rows),
                       "rows_dropped_null_features": float(prepared.null_feature_rows),
                       "rows_null_category": float(prepared.null_category_rows)}
            with timer.step("profile"):
                # What drift is measured against later: the snapshot's features and the
                # model's scores on the test rows, without reading the snapshot again.
                profile = profile_arrow(rows, features, spark_probs, table=spec.table,
                                        snapshot_id=snap.snapshot_id,
                                        fingerprint=data_fingerprint)
            with timer.step("mlflow log"):
                mlflow.log_metrics(metrics)
                mlflow.log_dict(profile.to_dict(), PROFILE_ARTIFACT)
                # Test rows with Spark's probabilities, for the self-test of every later build.
                head = scored[list(features.all)].head(PARITY_SAMPLES)
                mlflow.log_dict({"rows": jsonable(head.to_dict(orient="records")),
                                 "spark_probability": spark_probs[:len(head)].tolist()},
                                PARITY_SAMPLES_ARTIFACT)
                mlflow.log_dict({"matrix": ev.confusion_matrix(),
                                 "rows": ["actual 0", "actual 1"],
                                 "columns": ["predicted 0", "predicted 1"]},
                                "confusion_matrix.json")
                for png in save_curves(labels, spark_probs, Path(tmp) / "curves",
                                       f"{spec.model_name} ({spec.pipeline})"):
                    mlflow.log_artifact(str(png), "curves")
                saving.result()
                mlflow.log_artifacts(str(spark_dir), "spark-model")
                # The Spark model reads the features under these names (see model_columns).
                mlflow.log_dict({"columns": names}, "spark-model-columns.json")
                if not max_diff <= PARITY_LIMIT:
                    raise ParityError(
                        f"ONNX model differs from Spark by {max_diff:.3g} on the test rows "
                        f"(limit {PARITY_LIMIT:g}); model not registered"
                    )
                lineage = Lineage(
                    catalog=settings.catalog_name,
                    table=spec.table,
                    snapshot_id=snap.snapshot_id,
                    snapshot_time=format_ms(snap.timestamp_ms),
                    schema_id=snap.schema_id,
                    row_count=rows.num_rows,
                    fingerprint=data_fingerprint,
                    features=list(features.all),
                    numeric_features=list(features.numeric),
                    categorical_features=list(features.categorical),
                    label=spec.label.describe(),
                    label_column=spec.label.column,
                    positive_values=list(spec.label.positive),
                    pipeline=spec.pipeline,
                    nulls=spec.nulls,
                    seed=spec.seed,
                    test_fraction=spec.test_fraction,
                    train_rows=train_rows,
                    test_rows=test_rows,
                    dropped_rows=prepared.null_label_rows + prepared.null_feature_rows,
                    run_id=run.info.run_id,
                    experiment_id=run.info.experiment_id,
                    metrics={k: v for k, v in metrics.items()},
                )
                mlflow.log_text(lineage.to_json(), LINEAGE_ARTIFACT)
                info = mlflow.onnx.log_model(
                    onnx_model, name="model", pip_requirements=_pip_requirements(),
                    metadata={"icefloe": {"features": lineage.features,
                                          "numeric": lineage.numeric_features,
                                          "categorical": lineage.categorical_features}},
                )
        finally:
            saving.wait()  # never leave Spark writing into a folder being deleted
    with timer.step("register"):
        version = registry.register(info.model_uri, spec.model_name, lineage, run.info.run_id)
    return TrainResult(
        model_name=spec.model_name,
        version=int(version.version),
        run_id=run.info.run_id,
        metrics=metrics,
        confusion_matrix=ev.confusion_matrix(),
        parity=max_diff,
        lineage=lineage,
        timings=timer.timings,
    )

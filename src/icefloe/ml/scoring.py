"""Batch scoring: run a registered model's ONNX graph over a table snapshot.

The result is the input rows plus ``prediction``, ``probability``, the model name and
version, the source table and snapshot, and the time of scoring, appended to an output
table (created on first use). ONNX scores like the Spark model (parity checked at training)
without starting Spark.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from icefloe.config import Settings, load_settings
from icefloe.errors import InvalidInputError, TrainingError
from icefloe.happenings import Dataset
from icefloe.lakehouse import Lakehouse
from icefloe.ml.onnx import OnnxScorer
from icefloe.ml.spec import FeatureSet
from icefloe.registry.mlflow_registry import ModelRegistry

BATCH_ROWS = 50_000


@dataclass(frozen=True)
class ScoreResult:
    """What a batch scoring run wrote."""

    model: str
    version: int
    source_table: str
    source_snapshot_id: int
    output_table: str
    output_snapshot_id: int
    rows: int
    unscored_rows: int

    def to_dict(self) -> dict[str, object]:
        """JSON-able form."""
        return asdict(self)


def score_arrow(scorer: OnnxScorer, data: pa.Table) -> tuple[pa.Array, pa.Array]:
    """Probabilities and 0/1 predictions for every row (null where a number was missing)."""
    probs_parts = []
    for start in range(0, data.num_rows, BATCH_ROWS):
        chunk = data.slice(start, BATCH_ROWS)
        columns = {c: chunk.column(c).to_pylist() for c in scorer.features.all}
        probs_parts.append(scorer.probabilities(columns))
    probs = np.concatenate(probs_parts) if probs_parts else np.zeros(0)
    missing = np.isnan(probs)
    probability = pa.array(np.where(missing, 0.0, probs), pa.float64(), mask=missing)
    prediction = pa.array((probs >= 0.5).astype(np.int32), pa.int32(), mask=missing)
    return prediction, probability


def score_table(
    model: str,
    table: str,
    output_table: str,
    *,
    snapshot_id: int | None = None,
    settings: Settings | None = None,
) -> ScoreResult:
    """Score a table snapshot with a registered model and append the scores to a table.

    Args:
        model: ``NAME/VERSION`` or ``NAME@ALIAS``.
        table: Source ``namespace.table``.
        output_table: Table to append the scores to (created if missing).
        snapshot_id: Source snapshot; the current one if omitted.
        settings: icefloe settings.
    """
    settings = settings or load_settings()
    if output_table == table:
        raise InvalidInputError("the output table must differ from the table being scored")
    lh = Lakehouse(settings)
    registry = ModelRegistry(settings)
    mv, onnx_bytes = registry.onnx_bytes(model)
    lineage = registry.lineage(f"{mv.name}/{mv.version}")
    features = FeatureSet(tuple(lineage.numeric_features), tuple(lineage.categorical_features))
    snap = lh.resolve(table, snapshot_id=snapshot_id)
    if snap is None:
        raise TrainingError(f"table {table} has no snapshot to score")
    data = lh.read(table, snapshot_id=snap.snapshot_id)
    missing = [c for c in features.all if c not in data.column_names]
    if missing:
        raise TrainingError(
            f"table {table}@{snap.snapshot_id} lacks feature column(s) {', '.join(missing)} "
            f"of model {mv.name}/{mv.version}"
        )
    prediction, probability = score_arrow(OnnxScorer(onnx_bytes, features), data)
    n = data.num_rows
    scored_at = datetime.now(UTC)
    out = (
        data.append_column("prediction", prediction)
        .append_column("probability", probability)
        .append_column("model_name", pa.array([mv.name] * n, pa.string()))
        .append_column("model_version", pa.array([int(mv.version)] * n, pa.int32()))
        .append_column("source_table", pa.array([table] * n, pa.string()))
        .append_column("source_snapshot_id", pa.array([snap.snapshot_id] * n, pa.int64()))
        .append_column("scored_at", pa.array([scored_at] * n, pa.timestamp("us", tz="UTC")))
    )
    written = lh.write(output_table, out, "auto", evolve=True,
                       properties={"icefloe.model": f"{mv.name}/{mv.version}"},
                       inputs=(Dataset(table, snapshot_id=snap.snapshot_id, rows=n),),
                       subject={"via": "score", "model": mv.name, "version": int(mv.version)})
    return ScoreResult(
        model=mv.name, version=int(mv.version), source_table=table,
        source_snapshot_id=snap.snapshot_id, output_table=output_table,
        output_snapshot_id=written.snapshot.snapshot_id, rows=n,
        unscored_rows=probability.null_count,
    )

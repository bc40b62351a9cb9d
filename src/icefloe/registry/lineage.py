"""Lineage of a model version: the exact data it learned from and how (pure data).

Stored on the MLflow model version as tags (the fields users filter on) and in full as the
run artifact ``lineage.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

TAG_PREFIX = "icefloe."
LINEAGE_ARTIFACT = "lineage.json"
PARITY_SAMPLES_ARTIFACT = "parity_samples.json"  # test rows with Spark's probabilities
TAGGED_FIELDS = ("table", "snapshot_id", "schema_id", "row_count", "fingerprint", "pipeline",
                 "catalog", "snapshot_time", "label")


@dataclass(frozen=True)
class Lineage:
    """Where a model version's training data came from.

    Attributes:
        catalog: Iceberg catalog name.
        table: ``namespace.table``.
        snapshot_id: The snapshot read for training.
        snapshot_time: Commit time of that snapshot (ISO-8601 UTC).
        schema_id: Schema id of the snapshot.
        row_count: Rows in the snapshot (what ``data reproduce`` writes).
        fingerprint: Content fingerprint of those rows.
        features: Feature columns, numeric then categorical.
        numeric_features, categorical_features: The same, by kind.
        label: Label definition, e.g. ``loan_status in ('Charged Off', 'Default')``.
        label_column, positive_values: The label definition as data.
        pipeline: Pipeline name.
        nulls: Null policy.
        seed, test_fraction: Split settings.
        train_rows, test_rows, dropped_rows: What training used.
        run_id, experiment_id: The MLflow training run.
        metrics: Test metrics of the run.
    """

    catalog: str
    table: str
    snapshot_id: int
    snapshot_time: str
    schema_id: int | None
    row_count: int
    fingerprint: str
    features: list[str]
    numeric_features: list[str]
    categorical_features: list[str]
    label: str
    label_column: str
    positive_values: list[str]
    pipeline: str
    nulls: str
    seed: int
    test_fraction: float
    train_rows: int
    test_rows: int
    dropped_rows: int
    run_id: str
    experiment_id: str
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)

    def to_json(self) -> str:
        """Stable JSON text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def tags(self) -> dict[str, str]:
        """The model-version tags for this lineage."""
        data = self.to_dict()
        return {TAG_PREFIX + k: str(data[k]) for k in TAGGED_FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Lineage:
        """Rebuild from :meth:`to_dict` output (unknown keys ignored)."""
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

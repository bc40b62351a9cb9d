"""Scoring with a READY build's files: checksum verified on load, records validated first.

Kept apart from :mod:`icefloe.serving.builds` so a replica process imports only ONNX
Runtime and the schema, not MLflow or Spark.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from icefloe.errors import ParityError
from icefloe.ml.onnx import OnnxScorer, feed_from_columns
from icefloe.ml.spec import FeatureSet
from icefloe.serving.schema import InputSchema, validate_record
from icefloe.serving.tracking import track_metric, tracking


def checksum(folder: Path) -> str:
    """SHA-256 over the model and schema files of a build."""
    digest = hashlib.sha256()
    for name in ("model.onnx", "schema.json"):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


@dataclass
class BuildScorer:
    """Scores validated records with a READY build's files (checksum verified on load)."""

    build_id: str
    schema: InputSchema
    scorer: OnnxScorer
    _strings: FeatureSet = field(init=False, repr=False)
    _optional_set: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._strings = FeatureSet((), self.scorer.features.categorical)
        self._optional_set = frozenset(self.schema.optional_names)

    @classmethod
    def load(cls, folder: Path) -> BuildScorer:
        """Load a build folder, refusing one whose files do not match the manifest."""
        manifest = json.loads((folder / "manifest.json").read_text())
        if checksum(folder) != manifest["checksum"]:
            raise ParityError(f"build {manifest['build']} files do not match their checksum")
        schema = InputSchema.from_dict(json.loads((folder / "schema.json").read_text()))
        features = FeatureSet(tuple(f.name for f in schema.fields if f.kind == "number"),
                              tuple(f.name for f in schema.fields if f.kind == "string"))
        return cls(manifest["build"], schema,
                   OnnxScorer((folder / "model.onnx").read_bytes(), features))

    def predict(self, records: list[Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Validate every record first, then score them all.

        Returns:
            Per record, the answer (0/1 prediction and probability) and the metrics tracked
            for it (``unseen_categories``: fields whose value training never saw;
            ``missing_fields``: optional fields the record left out, scored as missing).
        """
        checked = [self.validate(record, f"record {i}" if len(records) > 1 else "request")
                   for i, record in enumerate(records)]
        answers = self.score([clean for clean, _ in checked])
        return [(answer, metrics) for answer, (_, metrics) in zip(answers, checked, strict=True)]

    def validate(self, record: Any, where: str = "request") -> tuple[dict[str, Any],
                                                                      dict[str, Any]]:
        """Check one record against the schema.

        Returns:
            The values in model order and the metrics tracked for the record.

        Raises:
            InvalidInputError: Naming the field (see :func:`validate_record`).
        """
        with tracking() as metrics:
            clean = validate_record(self.schema, record, where)
            unseen = [f.name for f in self.schema.fields if f.levels
                      and clean[f.name] is not None and clean[f.name] not in f.level_set]
            if unseen:
                track_metric("unseen_categories", unseen)
            optional = self.schema.optional_names
            if optional and not record.keys() >= self._optional_set:
                track_metric("missing_fields", [n for n in optional if n not in record])
        return clean, metrics

    def score(self, clean: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Score validated records (from :meth:`validate`) in one model run."""
        if not clean:
            return []
        features = self.scorer.features
        # What feed_from_columns builds column by column, in one matrix: float64 first (None
        # is NaN), then float32, one [n, 1] input per numeric feature (rows of the
        # transposed matrix, so each is contiguous). Strings go through feed_from_columns.
        feed = feed_from_columns(self._strings, {
            name: [r[name] for r in clean] for name in self._strings.categorical})
        if features.numeric:
            matrix = np.array([[r[name] for name in features.numeric] for r in clean],
                              dtype=np.float64).T.astype(np.float32)
            for i, name in enumerate(features.numeric):
                feed[name] = matrix[i].reshape(-1, 1)
        (probability,) = self.scorer.session.run(["probability"], feed)
        return [{"prediction": int(p >= 0.5), "probability": float(p)}
                for p in np.asarray(probability, dtype=np.float64)[:, 1]]

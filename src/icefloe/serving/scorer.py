"""Scoring with a READY build's files: checksum verified on load, records validated first.

Kept apart from :mod:`icefloe.serving.builds` so a replica process imports only ONNX
Runtime and the schema, not MLflow or Spark.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icefloe.errors import ParityError
from icefloe.ml.onnx import OnnxScorer
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
            for it (``unseen_categories``: fields whose value training never saw).
        """
        clean, tracked = [], []
        for i, record in enumerate(records):
            with tracking() as metrics:
                clean.append(validate_record(self.schema, record,
                                             f"record {i}" if len(records) > 1 else "request"))
                unseen = [f.name for f in self.schema.fields if f.levels
                          and clean[-1][f.name] is not None
                          and clean[-1][f.name] not in f.level_set]
                if unseen:
                    track_metric("unseen_categories", unseen)
            tracked.append(metrics)
        columns = {f.name: [c[f.name] for c in clean] for f in self.schema.fields}
        probs: Any = self.scorer.probabilities(columns) if clean else []
        return [({"prediction": int(p >= 0.5), "probability": float(p)}, m)
                for p, m in zip(probs, tracked, strict=True)]

"""Reference profiles from Arrow data: at training time, and for models trained before.

:mod:`icefloe.monitoring.profile` holds the pure statistics; this module turns a snapshot's
Arrow columns into their inputs, and makes the profile of a registered version that has
none (reading its snapshot once, checked by fingerprint, and scoring it with its ONNX model).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from icefloe.ml.spec import FeatureSet
from icefloe.monitoring.profile import BINS, ReferenceProfile, build_profile, category_counts

if TYPE_CHECKING:
    import pyarrow as pa

    from icefloe.config import Settings

ALL_ROWS = "every row of the snapshot, scored with the ONNX model (the test split was not kept)"
TEST_ROWS = "the test rows, scored by Spark"


def profile_arrow(rows: pa.Table, features: FeatureSet, scores: np.ndarray, *, table: str,
                  snapshot_id: int, fingerprint: str, scores_from: str = TEST_ROWS,
                  bins: int = BINS) -> ReferenceProfile:
    """The profile of ``features`` in the Arrow rows of a snapshot and of ``scores``."""
    import pyarrow as pa

    numeric = {name: rows.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False)
               for name in features.numeric}
    categorical: dict[str, dict[str, int]] = {}
    nulls: dict[str, int] = {}
    for name in features.categorical:
        categorical[name], nulls[name] = category_counts(rows.column(name))
    return build_profile(numeric, categorical, nulls, np.asarray(scores, dtype=np.float64),
                         table=table, snapshot_id=snapshot_id, fingerprint=fingerprint,
                         rows=rows.num_rows, scores_from=scores_from, bins=bins)


def profile_version(settings: Settings, ref: str, *, replace: bool = False
                    ) -> tuple[ReferenceProfile, bool]:
    """The profile of a registered version, made and stored now if it has none.

    Returns:
        The profile, and whether it was made by this call.

    Raises:
        FingerprintMismatchError: The snapshot no longer holds the rows the model learned
            from (the profile would describe other data).
    """
    from icefloe.lakehouse import Lakehouse
    from icefloe.lakehouse.fingerprint import fingerprint
    from icefloe.ml.onnx import OnnxScorer
    from icefloe.ml.scoring import score_arrow
    from icefloe.registry.mlflow_registry import ModelRegistry
    from icefloe.registry.reproduce import check_fingerprint

    registry = ModelRegistry(settings)
    if not replace:
        stored = registry.reference_profile(ref)
        if stored is not None:
            return stored, False
    mv, onnx_bytes = registry.onnx_bytes(ref)
    lineage = registry.lineage(f"{mv.name}/{mv.version}")
    rows = Lakehouse(settings).read(lineage.table, snapshot_id=lineage.snapshot_id)
    check_fingerprint(lineage, fingerprint(rows), f"{mv.name}/{mv.version}",
                      "no profile made")
    features = FeatureSet(tuple(lineage.numeric_features), tuple(lineage.categorical_features))
    _, probability = score_arrow(OnnxScorer(onnx_bytes, features), rows)
    scores = probability.to_numpy(zero_copy_only=False)
    profile = profile_arrow(rows, features, scores, table=lineage.table,
                            snapshot_id=lineage.snapshot_id, fingerprint=lineage.fingerprint,
                            scores_from=ALL_ROWS)
    registry.save_reference_profile(f"{mv.name}/{mv.version}", profile)
    return profile, True

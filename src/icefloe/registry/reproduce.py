"""Reproducing a model's training data from its lineage (time travel + fingerprint check)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from icefloe.config import Settings
from icefloe.errors import FingerprintMismatchError
from icefloe.happenings import Dataset, Happening, emit
from icefloe.lakehouse import Lakehouse
from icefloe.lakehouse.files import write_file
from icefloe.lakehouse.fingerprint import fingerprint
from icefloe.registry.lineage import Lineage
from icefloe.registry.mlflow_registry import ModelRegistry


def reproduce_training_data(settings: Settings, ref: str, output: str | Path) -> dict[str, Any]:
    """Read the snapshot a model version was trained on and write it to ``output``.

    The file is written only if the rows' fingerprint equals the one recorded at training.

    Raises:
        FingerprintMismatchError: The snapshot no longer holds the same rows.
        NoSuchSnapshotError: The snapshot is gone (expired) from the table.
    """
    lineage = ModelRegistry(settings).lineage(ref)
    rows = Lakehouse(settings).read(lineage.table, snapshot_id=lineage.snapshot_id)
    emit(lambda: Happening("table.read", inputs=(Dataset(
        lineage.table, snapshot_id=lineage.snapshot_id, rows=rows.num_rows),),
        subject={"via": "reproduce", "model": ref, "output": str(output)}))
    found = fingerprint(rows)
    check_fingerprint(lineage, found, ref, "nothing written")
    path = write_file(rows, output)
    return {"model": ref, "table": lineage.table, "snapshot_id": lineage.snapshot_id,
            "rows": rows.num_rows, "fingerprint": found, "matches": True, "output": str(path)}


def check_fingerprint(lineage: Lineage, found: str, ref: str = "the model",
                      consequence: str = "refused") -> None:
    """Raise unless ``found`` is the fingerprint the model's training data had.

    Raises:
        FingerprintMismatchError: Naming the snapshot and both fingerprints.
    """
    if found != lineage.fingerprint:
        raise FingerprintMismatchError(
            f"rows of {lineage.table}@{lineage.snapshot_id} have fingerprint {found}, "
            f"but {ref} was trained on {lineage.fingerprint}; {consequence}"
        )

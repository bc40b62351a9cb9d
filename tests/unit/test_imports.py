"""Commands that only talk HTTP start fast: the CLI imports no heavy library up front."""

import json
import subprocess
import sys

HEAVY = {"pyiceberg", "pyarrow", "duckdb", "pyspark", "mlflow", "sqlalchemy", "pandas",
         "onnxmltools", "onnxruntime", "numpy"}


def _imported_by(statement: str) -> set[str]:
    code = (f"import json, sys; {statement}; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return set(json.loads(out.stdout))


def test_the_cli_imports_no_heavy_library() -> None:
    assert _imported_by("import icefloe.cli.main") & HEAVY == set()


def test_the_sdk_imports_no_heavy_library() -> None:
    assert _imported_by("import icefloe.client") & HEAVY == set()


def test_a_model_replica_imports_only_what_scoring_needs() -> None:
    # ONNX Runtime is imported when the build loads; nothing of the lakehouse or training.
    assert _imported_by("import icefloe.serving.replica") & HEAVY <= {"numpy"}


def test_the_control_plane_app_imports_no_spark_mlflow_or_lakehouse() -> None:
    assert _imported_by("import icefloe.api.app") & HEAVY <= {"numpy", "sqlalchemy"}

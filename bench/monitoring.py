"""Monitoring benchmark: drift of 1,000,000 predictions x 20 features against a reference,
icefloe against Evidently on the same data in the same run; the export of logged
predictions to Iceberg; peak memory.

- drift: 10 numeric and 10 categorical features (two numbers shifted, one category set
  replaced in the current data). icefloe measures PSI, KS and null share per number and
  Jensen-Shannon distance, unseen and null share per category against the reference
  profile made once at training (its making is timed apart). Evidently runs its
  ``DataDriftPreset`` with PSI on the same two data frames (reference and current), in its
  own virtual environment (it is not an icefloe dependency): ``--evidently-python`` or
  ``.venv-bench-evidently`` made on first use with pip. Data loading is not timed on either
  side.
- export: N predictions recorded in the platform DB (SQLite), then ``export_predictions``
  to ``monitoring.predictions``; rows per second.

Goals (issue 11): icefloe drift <= 1 s on this 2-core machine and >= 20x faster than
Evidently; export >= 200,000 rows/s; peak RSS printed.

Usage: python bench/monitoring.py [--rows 1000000] [--export-rows 200000]
       [--evidently-python PATH] [--no-evidently]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from icefloe.monitoring.drift import categorical_drift, numeric_drift
from icefloe.monitoring.profile import categorical_from_counts, category_counts, numeric_profile

ROOT = Path(__file__).resolve().parents[1]
EVIDENTLY_VENV = ROOT / ".venv-bench-evidently"
EVIDENTLY = ["evidently==0.7.23", "pandas<2.3", "pyarrow"]
NUMBERS, CATEGORIES = 10, 10
DRIFT_GOAL_S, RATIO_GOAL, EXPORT_GOAL = 1.0, 20.0, 200_000

EVIDENTLY_SCRIPT = """
import json, sys, time
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
reference = pd.read_parquet(sys.argv[1])
current = pd.read_parquet(sys.argv[2])
started = time.perf_counter()
Report([DataDriftPreset(method="psi")]).run(current, reference)
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def make_data(rows: int, seed: int, shifted: bool) -> pa.Table:
    """Features f0..f9 (numbers) and c0..c9 (categories of 20 values each)."""
    rng = np.random.default_rng(seed)
    columns: dict[str, pa.Array] = {}
    for i in range(NUMBERS):
        values = rng.normal(i, 1 + i / 10, rows)
        if shifted and i < 2:
            values = values + 2 * (1 + i / 10)
        columns[f"f{i}"] = pa.array(values)
    for i in range(CATEGORIES):
        labels = np.array([f"c{i}_{k}" for k in range(20)] + (
            [f"new_{k}" for k in range(20)] if shifted and i == 0 else []))
        start = 20 if shifted and i == 0 else 0
        picks = rng.integers(start, start + 20, rows)
        columns[f"c{i}"] = pa.array(labels[picks]).dictionary_encode()
    return pa.table(columns)


def icefloe_drift(reference: pa.Table, current: pa.Table) -> tuple[float, float, dict]:
    """Seconds to make the reference profile, seconds to measure the drift, and the PSIs."""
    started = time.perf_counter()
    numeric = {f"f{i}": numeric_profile(reference.column(f"f{i}").to_numpy())
               for i in range(NUMBERS)}
    categorical = {}
    for i in range(CATEGORIES):
        counts, nulls = category_counts(reference.column(f"c{i}"))
        categorical[f"c{i}"] = categorical_from_counts(counts, nulls)
    profiled = time.perf_counter() - started
    started = time.perf_counter()
    figures = []
    for name, ref in numeric.items():
        figures += numeric_drift(name, ref, current.column(name).to_numpy())
    for name, cat in categorical.items():
        counts, nulls = category_counts(current.column(name))
        figures += categorical_drift(name, cat, counts, nulls)
    measured = time.perf_counter() - started
    psis = {f.feature: round(f.value, 3) for f in figures
            if f.metric in ("psi", "js_distance") and f.value is not None}
    return profiled, measured, psis


def evidently_python(given: str | None) -> Path:
    if given:
        return Path(given)
    python = EVIDENTLY_VENV / "bin" / "python"
    if not python.exists():
        print(f"making {EVIDENTLY_VENV} for Evidently (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", *EVIDENTLY], check=True)
    return python


def evidently_drift(python: Path, reference: Path, current: Path) -> float:
    done = subprocess.run([str(python), "-c", EVIDENTLY_SCRIPT, str(reference), str(current)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"Evidently failed:\n{done.stderr[-2000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def export_rate(rows: int, folder: Path) -> float:
    """Rows per second of export_predictions over ``rows`` logged predictions."""
    from sqlalchemy import insert

    from icefloe.config import load_settings
    from icefloe.home import prepare_home
    from icefloe.lakehouse import Lakehouse
    from icefloe.monitoring.export import export_predictions
    from icefloe.store.db import Database
    from icefloe.store.orm import Build, Prediction
    from icefloe.store.repo import now

    settings = load_settings(env={}, home=folder / "home")
    prepare_home(settings)
    db = Database(settings.resolved_platform_db_url)
    schema = {"fields": [{"name": f"f{i}", "kind": "number"} for i in range(5)] +
              [{"name": "c0", "kind": "string"}]}
    with db.session() as s:
        s.add(Build(id="b", model_name="m", model_version=1, status="BUILD_READY", reason="",
                    path="", checksum="", input_schema=schema, created_by="",
                    created_at=now()))
    base = 1_790_000_000_000
    rng = np.random.default_rng(5)
    values = rng.normal(0, 1, (rows, 5))
    for start in range(0, rows, 50_000):
        batch = [{"uuid": f"00000000-0000-7000-8000-{i:012d}", "deployment_id": "d",
                  "build_id": "b", "model_name": "m", "model_version": 1,
                  "timestamp_ms": base + i, "caller": "bench",
                  "inputs": {**{f"f{k}": float(values[i, k]) for k in range(5)},
                             "c0": f"c{i % 20}"},
                  "outputs": {"prediction": i % 2, "probability": (i % 100) / 100},
                  "latency_ms": 0.4, "metrics": {}, "delayed_metrics": None}
                 for i in range(start, min(rows, start + 50_000))]
        with db.session() as s:
            s.execute(insert(Prediction), batch)
    started = time.perf_counter()
    result = export_predictions(db, Lakehouse(settings))
    seconds = time.perf_counter() - started
    assert result.added == rows, result
    db.dispose()
    return rows / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--export-rows", type=int, default=200_000)
    parser.add_argument("--evidently-python")
    parser.add_argument("--no-evidently", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="icefloe-bench-monitoring-") as tmp:
        folder = Path(tmp)
        reference = make_data(args.rows, 1, shifted=False)
        current = make_data(args.rows, 2, shifted=True)
        profiled, measured, psis = icefloe_drift(reference, current)
        print(f"icefloe: reference profile of {args.rows:,} rows x 20 features made in "
              f"{profiled:.2f} s (once, at training)")
        print(f"icefloe: drift of {args.rows:,} predictions x 20 features in {measured:.3f} s "
              f"(PSI f0 {psis['f0']}, f1 {psis['f1']}, f5 {psis['f5']}; JS c0 {psis['c0']}, "
              f"c5 {psis['c5']})")
        verdicts = [f"drift <= {DRIFT_GOAL_S:g} s: "
                    f"{'met' if measured <= DRIFT_GOAL_S else 'NOT met'} ({measured:.3f} s)"]
        if not args.no_evidently:
            pq.write_table(reference, folder / "reference.parquet")
            pq.write_table(current, folder / "current.parquet")
            python = evidently_python(args.evidently_python)
            theirs = evidently_drift(python, folder / "reference.parquet",
                                     folder / "current.parquet")
            ratio = theirs / measured
            print(f"Evidently DataDriftPreset(method='psi'): {theirs:.2f} s; icefloe is "
                  f"{ratio:.0f}x faster")
            verdicts.append(f">= {RATIO_GOAL:g}x Evidently: "
                            f"{'met' if ratio >= RATIO_GOAL else 'NOT met'} ({ratio:.0f}x)")
        del reference, current
        rate = export_rate(args.export_rows, folder)
        print(f"export of {args.export_rows:,} logged predictions to monitoring.predictions: "
              f"{rate:,.0f} rows/s")
        verdicts.append(f"export >= {EXPORT_GOAL:,} rows/s: "
                        f"{'met' if rate >= EXPORT_GOAL else 'NOT met'} ({rate:,.0f} rows/s)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:,.0f} MB")
    for verdict in verdicts:
        print(f"goal: {verdict}")


if __name__ == "__main__":
    main()

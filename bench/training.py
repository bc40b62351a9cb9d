"""Training benchmark: ``icefloe train`` on 5,000 loans, step by step, against plain Spark ML.

icefloe runs as the real CLI in a fresh process (so Spark start is included) and reports
its step timings; the peer, measured in the same run, starts Spark and fits the same
baseline pipeline with plain PySpark (no lineage, no MLflow, no ONNX). The ratio says what
the whole registered, reproducible result costs over a bare fit.

Usage: python bench/training.py [--rows 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from icefloe.config import load_settings
from icefloe.demo.loans import NUMERIC_FEATURES, generate_loans
from icefloe.lakehouse import Lakehouse


def _peer(rows_path: Path, home: Path) -> dict[str, float]:
    """Plain PySpark: start, read the Parquet file, fit VectorAssembler/Scaler/LR."""
    start = time.perf_counter()
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import StandardScaler, VectorAssembler
    from pyspark.sql import functions as F

    from icefloe.compute import spark_session

    spark = spark_session(load_settings(env={}, home=home), app_name="bench-peer")
    started = time.perf_counter()
    df = spark.read.parquet(str(rows_path)).na.drop(subset=list(NUMERIC_FEATURES))
    df = df.withColumn("label", F.col("loan_status").isin("Charged Off", "Default")
                       .cast("double"))
    for c in NUMERIC_FEATURES:
        df = df.withColumn(c, F.col(c).cast("double"))
    Pipeline(stages=[
        VectorAssembler(inputCols=list(NUMERIC_FEATURES), outputCol="raw"),
        StandardScaler(inputCol="raw", outputCol="features", withMean=True, withStd=True),
        LogisticRegression(maxIter=100, regParam=1e-4, elasticNetParam=1e-4),
    ]).fit(df)
    done = time.perf_counter()
    spark.stop()
    return {"spark start": started - start, "fit": done - started, "total": done - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="icefloe-bench-train-") as tmp:
        home = Path(tmp) / "home"
        data = generate_loans(args.rows, 42)
        Lakehouse(load_settings(env={}, home=home)).write("lending.loans", data, "create")
        rows_path = Path(tmp) / "loans.parquet"
        import pyarrow.parquet as pq

        pq.write_table(data, rows_path)
        cli = [sys.executable, "-m", "icefloe.cli.main", "train", "--table", "lending.loans",
               "--label", "loan_status", "--positive", "Charged Off,Default",
               "--pipeline", "baseline", "--model", "bench", "--json"]
        start = time.perf_counter()
        proc = subprocess.run(cli, capture_output=True, text=True, check=True,
                              env={**os.environ, "ICEFLOE_HOME": str(home)})
        total = time.perf_counter() - start
        timings = json.loads(proc.stdout)["timings"]
        peer = _peer(rows_path, Path(tmp) / "peer-home")

    print(f"icefloe train on {args.rows:,} rows (fresh process), by step:")
    for step, seconds in timings.items():
        print(f"  {step:<16}{seconds:>8.2f} s")
    other = total - sum(timings.values())
    print(f"  {'imports/other':<16}{other:>8.2f} s")
    print(f"  {'total':<16}{total:>8.2f} s")
    print(f"plain PySpark peer: spark start {peer['spark start']:.2f} s, "
          f"fit {peer['fit']:.2f} s, total {peer['total']:.2f} s")
    print(f"ratio icefloe/peer: total {total / peer['total']:.2f}, "
          f"fit {timings['fit'] / peer['fit']:.2f}")


if __name__ == "__main__":
    main()

"""Training benchmark: ``icefloe train`` on 5,000 loans, step by step, against plain Spark ML.

Both sides run as fresh processes and are timed from start to exit, as a person at a shell
would time them: icefloe as the real CLI (lineage, fingerprint, MLflow run, evaluation,
ONNX compile + parity check, registration), the peer as a plain PySpark script that starts
Spark, reads the same rows from a Parquet file and fits the same baseline pipeline (no
lineage, no MLflow, no ONNX). The peer uses icefloe's Spark session settings (same Java,
same configuration), so the difference is what icefloe adds. Rounds alternate which side
runs first; the goal is judged on the median ratio. The peer's in-process time (Spark start
+ fit, without interpreter start, imports and exit) is printed too.

Goal (issue 10): icefloe train <= 1.2x plain PySpark.

Usage: python bench/training.py [--rows 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from icefloe.config import load_settings
from icefloe.demo.loans import NUMERIC_FEATURES, generate_loans
from icefloe.lakehouse import Lakehouse

GOAL = 1.2

# The peer: what a person would write with plain PySpark to fit the same pipeline.
PEER = """
import json, sys, time
start = time.perf_counter()
from pathlib import Path

from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import StandardScaler, VectorAssembler
from pyspark.sql import functions as F

from icefloe.compute.spark import spark_session
from icefloe.config import load_settings

rows_path, home, features = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
imported = time.perf_counter()
spark = spark_session(load_settings(env={}, home=home), app_name="bench-peer")
started = time.perf_counter()
df = spark.read.parquet(rows_path).na.drop(subset=features)
df = df.withColumn("label", F.col("loan_status").isin("Charged Off", "Default").cast("double"))
for c in features:
    df = df.withColumn(c, F.col(c).cast("double"))
Pipeline(stages=[
    VectorAssembler(inputCols=features, outputCol="raw"),
    StandardScaler(inputCol="raw", outputCol="features", withMean=True, withStd=True),
    LogisticRegression(maxIter=100, regParam=1e-4, elasticNetParam=1e-4),
]).fit(df)
done = time.perf_counter()
print(json.dumps({"imports": imported - start, "spark start": started - imported,
                  "read + fit": done - started}))
spark.stop()
"""


def _run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, dict[str, float]]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1] if cmd[1] == "-c" else proc.stdout)
    return wall, out


def _icefloe(tmp: Path, data: object, round_no: int) -> tuple[float, dict[str, float]]:
    home = tmp / f"home-{round_no}"
    Lakehouse(load_settings(env={}, home=home)).write("lending.loans", data, "create")
    cli = [sys.executable, "-m", "icefloe.cli.main", "train", "--table", "lending.loans",
           "--label", "loan_status", "--positive", "Charged Off,Default",
           "--pipeline", "baseline", "--model", "bench", "--json"]
    wall, out = _run(cli, env={**os.environ, "ICEFLOE_HOME": str(home)})
    return wall, out["timings"]


def _peer(tmp: Path, rows_path: Path, round_no: int) -> tuple[float, dict[str, float]]:
    return _run([sys.executable, "-c", PEER, str(rows_path), str(tmp / f"peer-{round_no}"),
                 json.dumps(list(NUMERIC_FEATURES))])


def _range(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    walls: dict[str, list[float]] = {"icefloe": [], "peer": []}
    steps: dict[str, list[float]] = {}
    peer_steps: dict[str, list[float]] = {}
    ratios: list[float] = []
    with tempfile.TemporaryDirectory(prefix="icefloe-bench-train-") as folder:
        tmp = Path(folder)
        data = generate_loans(args.rows, 42)
        rows_path = tmp / "loans.parquet"
        import pyarrow.parquet as pq

        pq.write_table(data, rows_path)
        for round_no in range(args.rounds):
            sides = ["icefloe", "peer"] if round_no % 2 == 0 else ["peer", "icefloe"]
            result: dict[str, float] = {}
            for side in sides:
                if side == "icefloe":
                    wall, timings = _icefloe(tmp, data, round_no)
                    timings = {**timings, "imports/other": wall - sum(timings.values())}
                    for step, seconds in timings.items():
                        steps.setdefault(step, []).append(seconds)
                else:
                    wall, timings = _peer(tmp, rows_path, round_no)
                    for step, seconds in timings.items():
                        peer_steps.setdefault(step, []).append(seconds)
                walls[side].append(wall)
                result[side] = wall
            ratios.append(result["icefloe"] / result["peer"])
            print(f"round {round_no + 1}: icefloe {result['icefloe']:.2f} s, plain PySpark "
                  f"{result['peer']:.2f} s, ratio {ratios[-1]:.2f}", flush=True)

    print(f"\nicefloe train on {args.rows:,} rows (fresh process, wall time), by step "
          f"[median (min-max) of {args.rounds} rounds]:")
    for step, values in steps.items():
        print(f"  {step:<16}{_range(values):>24} s")
    print(f"  {'total':<16}{_range(walls['icefloe']):>24} s")
    print("plain PySpark peer (fresh process, wall time):")
    for step, values in peer_steps.items():
        print(f"  {step:<16}{_range(values):>24} s")
    print(f"  {'total':<16}{_range(walls['peer']):>24} s")
    in_process = [s + f for s, f in zip(peer_steps["spark start"], peer_steps["read + fit"],
                                        strict=True)]
    ratio = statistics.median(ratios)
    print(f"ratio icefloe/peer: {ratio:.2f} median ({min(ratios):.2f}-{max(ratios):.2f}); "
          f"against the peer's in-process time only (Spark start + fit): "
          f"{statistics.median(walls['icefloe']) / statistics.median(in_process):.2f}")
    verdict = "met" if ratio <= GOAL else "NOT met"
    print(f"goal: icefloe train <= {GOAL}x plain PySpark: {verdict} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()

"""Spark writes to Iceberg: the native path (Iceberg's Spark runtime; executors write the
files, Iceberg commits) against icefloe's bridge (Spark -> Arrow in the driver -> one
PyIceberg commit), the same rows in the same run.

Both append the same DataFrame (``--rows`` rows of id, a string, a double, a grade and a
timestamp, made by Spark from ``range``) to their own Iceberg table of one home, after one
untimed append of a small batch each; each timing is ``--repeat`` appends, and the median
and the ratio bridge / native are printed, with the driver's peak memory growth on each
path, as the Python process's peak RSS growth (the bridge holds every row there as Arrow;
the native path keeps them in Spark).

Usage: python bench/spark_native.py [--rows 10000000] [--repeat 3] [--master local[2]]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

from icefloe.compute import spark_session, write_table
from icefloe.compute.native import spark_iceberg
from icefloe.config import load_settings
from icefloe.lakehouse import Lakehouse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="icefloe-bench-spark-")) / "home"
    settings = load_settings(env={}, home=home, spark_master=args.master,
                             spark_driver_memory="4g")
    reach = spark_iceberg(settings)
    if not reach.native:
        raise SystemExit(f"the native path is not available: {reach.reason}")
    spark = spark_session(settings, app_name="bench-spark-native")
    lh = Lakehouse(settings)
    lh.create_namespace("bench")
    cat = settings.catalog_name

    def rows(n: int):  # noqa: ANN202 - a pyspark DataFrame
        return spark.range(n).selectExpr(
            "id", "concat('loan-', id) AS name", "rand(7) * 1000 AS amount",
            "element_at(array('A', 'B', 'C', 'D'), cast(id % 4 + 1 AS int)) AS grade",
            "timestamp_millis(1790000000000 + id) AS at")

    rows(1000).createOrReplaceTempView("seed")
    spark.sql(f"CREATE TABLE {cat}.bench.native USING iceberg AS SELECT * FROM seed")
    write_table(rows(1000), "bench.bridge", mode="create", lakehouse=lh)
    data = rows(args.rows).cache()
    data.count()  # made once: both paths write the same cached rows
    print(f"{args.rows:,} rows, {args.repeat} appends each, master {args.master}", flush=True)

    def timed(write) -> tuple[float, float]:  # noqa: ANN001
        times = []
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(args.repeat):
            start = time.perf_counter()
            write()
            times.append(time.perf_counter() - start)
        grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        return statistics.median(times), grew

    native, native_mb = timed(lambda: data.writeTo(f"{cat}.bench.native").append())
    bridge, bridge_mb = timed(lambda: write_table(data, "bench.bridge", mode="append",
                                                  lakehouse=lh))
    for name, seconds, grew in (("native (Iceberg Spark runtime)", native, native_mb),
                                ("bridge (Arrow through the driver)", bridge, bridge_mb)):
        print(f"  {name:<36} {seconds:7.2f} s  {args.rows / seconds:>12,.0f} rows/s  "
              f"Python peak RSS +{grew:,.0f} MB")
    print(f"  bridge / native: {bridge / native:.2f}x")
    counts = [lh.current_snapshot(t).total_rows for t in ("bench.native", "bench.bridge")]
    print(f"  rows written: native {counts[0]:,}, bridge {counts[1]:,}")
    spark.stop()


if __name__ == "__main__":
    main()

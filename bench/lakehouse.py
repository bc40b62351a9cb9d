"""Lakehouse benchmarks: icefloe against its peers, measured in the same run.

Prints, for each operation, the median time of icefloe and of the peer and their ratio
(icefloe / peer; 1.0 means no overhead):

- append:  ``Lakehouse.write`` (normalise, schema plan, exactly-once check) vs a bare
           PyIceberg ``table.append`` of the same rows.
- sql:     ``Lakehouse.sql`` aggregate over the table vs DuckDB over the source Parquet file.
- spark:   ``read_table`` + aggregate in Spark vs ``spark.read.parquet`` of the source file
           (only with ``--spark``; starts a local Spark session).

Usage: python bench/lakehouse.py [--rows 200000] [--repeat 5] [--spark]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from icefloe.config import load_settings
from icefloe.demo.loans import generate_loans, write_loans
from icefloe.lakehouse import Lakehouse


def _median(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--spark", action="store_true", help="also benchmark the Spark bridge")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="icefloe-bench-") as tmp:
        root = Path(tmp)
        source = write_loans(generate_loans(args.rows, 1), root / "loans.parquet")
        data = pq.read_table(source)
        lh = Lakehouse(load_settings(env={}, home=root / "home"))
        lh.write("bench.icefloe", data, "create")
        lh.write("bench.peer", data, "create")
        peer_table = lh.table("bench.peer")

        results: list[tuple[str, float, float]] = []
        results.append((
            f"append {args.rows:,} rows",
            _median(lambda: lh.write("bench.icefloe", data), args.repeat),
            _median(lambda: peer_table.append(data), args.repeat),
        ))
        query = "SELECT loan_status, count(*), avg(int_rate) FROM {} GROUP BY 1"
        lh.rollback("bench.icefloe", lh.snapshots("bench.icefloe")[0].snapshot_id)
        results.append((
            "sql group-by",
            _median(lambda: lh.sql(query.format("bench.icefloe")), args.repeat),
            _median(
                lambda: duckdb.sql(query.format(f"read_parquet('{source}')")).fetchall(),
                args.repeat,
            ),
        ))
        if args.spark:
            from icefloe.compute import read_table, spark_session

            spark = spark_session(lh.settings, app_name="icefloe-bench")

            def bridge() -> object:
                return read_table(spark, "bench.icefloe", lakehouse=lh).groupBy(
                    "loan_status").count().collect()

            def plain() -> object:
                return spark.read.parquet(str(source)).groupBy("loan_status").count().collect()

            bridge()
            plain()  # warm up the JVM for both
            results.append(("spark read + group-by",
                            _median(bridge, args.repeat), _median(plain, args.repeat)))
            spark.stop()

    print(f"{'operation':<26}{'icefloe s':>12}{'peer s':>12}{'ratio':>8}")
    for name, ours, peer in results:
        print(f"{name:<26}{ours:>12.4f}{peer:>12.4f}{ours / peer:>8.2f}")


if __name__ == "__main__":
    main()

"""Lakehouse benchmarks: icefloe against its peers, measured in the same run.

Prints, for each operation, the median time of icefloe and of the peer and their ratio
(icefloe / peer; 1.0 means no overhead):

- append:  ``Lakehouse.write`` (normalise, schema plan, exactly-once check) vs a bare
           PyIceberg ``table.append`` of the same rows.
- sql:     ``Lakehouse.sql`` group-by over the table vs DuckDB over the source Parquet file,
           at each ``--sql-rows`` size, run alternately after one untimed run of each; then
           the goals (SQL <= 1.5x raw DuckDB at 200,000 rows, <= 1.1x at 2,000,000) and
           whether they are met. "sql first query" is one query on a fresh ``SqlRunner``
           (what ``icefloe sql`` does once per process) vs a fresh DuckDB connection.
- spark:   ``read_table`` + aggregate in Spark vs ``spark.read.parquet`` of the source file
           (only with ``--spark``; starts a local Spark session).

Usage: python bench/lakehouse.py [--rows 200000] [--repeat 5] [--sql-rows 200000,2000000]
       [--sql-repeat 21] [--spark]
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
from icefloe.lakehouse.sql import SqlRunner

SQL_GOALS = {200_000: 1.5, 2_000_000: 1.1}  # rows -> most icefloe / raw DuckDB may take
QUERY = "SELECT loan_status, count(*), avg(int_rate) FROM {} GROUP BY 1"


def _median(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _alternate(ours: Callable[[], object], peer: Callable[[], object],
               repeat: int) -> tuple[float, float]:
    """Medians of both, run one after the other so that machine noise hits both alike."""
    ours()
    peer()  # untimed: the first run of each opens its database
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for fn, out in ((ours, times[0]), (peer, times[1])):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def _sql_results(lh: Lakehouse, root: Path, rows: int,
                 repeat: int) -> list[tuple[str, float, float]]:
    source = write_loans(generate_loans(rows, 1), root / f"sql-{rows}.parquet")
    name = f"bench.sql_{rows}"
    lh.write(name, pq.read_table(source), "create")
    raw = QUERY.format(f"read_parquet('{source}')")

    def first_ours() -> object:
        runner = SqlRunner(lh.catalog)
        try:
            return runner.run(QUERY.format(name))
        finally:
            runner.close()

    def first_peer() -> object:
        con = duckdb.connect()
        try:
            return con.sql(raw).to_arrow_table()
        finally:
            con.close()

    ours, peer = _alternate(lambda: lh.sql(QUERY.format(name)),
                            lambda: duckdb.sql(raw).to_arrow_table(), repeat)
    cold = max(3, repeat // 4)
    return [(f"sql group-by {rows:,}", ours, peer),
            (f"sql first query {rows:,}", _median(first_ours, cold), _median(first_peer, cold))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sql-rows", default="200000,2000000",
                        help="comma-separated table sizes for the SQL benchmark")
    parser.add_argument("--sql-repeat", type=int, default=21)
    parser.add_argument("--spark", action="store_true", help="also benchmark the Spark bridge")
    args = parser.parse_args()
    sql_rows = [int(n) for n in args.sql_rows.split(",") if n.strip()]

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
        lh.rollback("bench.icefloe", lh.snapshots("bench.icefloe")[0].snapshot_id)
        for rows in sql_rows:
            results += _sql_results(lh, root, rows, args.sql_repeat)
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

    print(f"{'operation':<30}{'icefloe s':>12}{'peer s':>12}{'ratio':>8}")
    for name, ours, peer in results:
        print(f"{name:<30}{ours:>12.4f}{peer:>12.4f}{ours / peer:>8.2f}")
    ratios = {name: ours / peer for name, ours, peer in results}
    for rows, goal in SQL_GOALS.items():
        ratio = ratios.get(f"sql group-by {rows:,}")
        if ratio is not None:
            verdict = "met" if ratio <= goal else "NOT met"
            print(f"goal: SQL <= {goal}x raw DuckDB at {rows:,} rows: {ratio:.2f}x, {verdict}")


if __name__ == "__main__":
    main()

"""Demo job LoadBatch (the seed's Spark ETL): sample half of lending.loans with replacement
into a staging table, INSERT the staged rows into lending.loans, drop the staging table.

With Iceberg's Spark runtime (fetched by ``make install``) this is the seed's Spark SQL as
written, committed by Iceberg itself: ``INSERT INTO icefloe.lending.loans SELECT * FROM
icefloe.lending.loans_staging``. Without it, the same steps go through icefloe's bridge.

With --bad-batch N it loads N new loans that bring categorical columns the table does not
have yet (the seed's failure), evolving the table's schema.
Run by the control plane with ICEFLOE_HOME set.
"""

import argparse

from icefloe.lakehouse import Lakehouse

parser = argparse.ArgumentParser()
parser.add_argument("--table", default="lending.loans")
parser.add_argument("--staging", default="lending.loans_staging")
parser.add_argument("--fraction", type=float, default=0.5)
parser.add_argument("--seed", type=int, default=7)
parser.add_argument("--bad-batch", type=int, default=0, metavar="ROWS")
args = parser.parse_args()
lh = Lakehouse()


def native_sql(spark) -> None:
    """The ETL in Spark SQL on Iceberg's own catalog; the write is published for lineage."""
    from icefloe.happenings import Dataset, Happening, emit, process_actor, process_parent

    cat = lh.settings.catalog_name
    table, staging = f"{cat}.{args.table}", f"{cat}.{args.staging}"
    who = process_actor()
    source = lh.current_snapshot(args.table)
    spark.sql(f"DROP TABLE IF EXISTS {staging} PURGE")
    batch = spark.table(table).sample(withReplacement=True, fraction=args.fraction,
                                      seed=args.seed)
    writer = batch.writeTo(staging).option("snapshot-property.icefloe.user", who.user)
    if who.run_id:
        writer = writer.option("snapshot-property.icefloe.run-id", who.run_id)
    writer.create()
    staged = lh.current_snapshot(args.staging)
    assert staged is not None, f"{args.staging} has no snapshot after its write"
    print(f"staged {staged.total_rows} sampled loans in {args.staging} (Spark SQL, Iceberg "
          "runtime)", flush=True)
    spark.sql(f"INSERT INTO {table} SELECT * FROM {staging}")
    done = lh.current_snapshot(args.table)
    assert done is not None and source is not None
    emit(lambda: Happening(
        "table.write", actor=who, inputs=(Dataset(args.table, source.snapshot_id),
                                          Dataset(args.staging, staged.snapshot_id)),
        outputs=(Dataset(args.table, done.snapshot_id, rows=done.added_rows),),
        subject={"via": "spark sql", "sql": f"INSERT INTO {table} SELECT * FROM {staging}"},
        parent=process_parent()))
    spark.sql(f"DROP TABLE {staging} PURGE")
    print(f"inserted {done.added_rows} loans into {args.table}: snapshot "
          f"{done.snapshot_id}, {done.total_rows} rows; dropped {args.staging}", flush=True)


def bridge(spark) -> None:
    """The same steps through icefloe's bridge (PyIceberg plans, the driver writes)."""
    from icefloe.compute import read_table, write_table

    batch = read_table(spark, args.table).sample(withReplacement=True,
                                                 fraction=args.fraction, seed=args.seed)
    if args.staging in {t["table"] for t in lh.tables(args.staging.split(".")[0])}:
        lh.drop(args.staging)
    staged = write_table(batch, args.staging, mode="create")
    print(f"staged {staged.rows} sampled loans in {args.staging}", flush=True)
    result = write_table(read_table(spark, args.staging), args.table, mode="append")
    lh.drop(args.staging)
    print(f"inserted {result.rows} loans into {args.table}: snapshot "
          f"{result.snapshot.snapshot_id}, {result.snapshot.total_rows} rows; dropped "
          f"{args.staging}", flush=True)


if args.bad_batch:
    from icefloe.demo.loans import generate_loans

    result = lh.write(args.table, generate_loans(args.bad_batch, args.seed, bad_batch=True),
                      "append", evolve=True)
    print(f"appended a batch of {result.rows} loans with new columns "
          f"{', '.join(result.new_columns) or '(none new)'}: snapshot "
          f"{result.snapshot.snapshot_id}, {result.snapshot.total_rows} rows", flush=True)
else:
    from icefloe.compute import spark_session
    from icefloe.compute.native import spark_iceberg

    session = spark_session(app_name="LoadBatch")
    (native_sql if spark_iceberg(lh.settings).native else bridge)(session)

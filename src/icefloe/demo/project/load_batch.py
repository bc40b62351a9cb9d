"""Demo job LoadBatch (the seed's Spark ETL): sample half of lending.loans with replacement
into a staging table, INSERT the staged rows into lending.loans, drop the staging table.

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

if args.bad_batch:
    from icefloe.demo.loans import generate_loans

    result = lh.write(args.table, generate_loans(args.bad_batch, args.seed, bad_batch=True),
                      "append", evolve=True)
    print(f"appended a batch of {result.rows} loans with new columns "
          f"{', '.join(result.new_columns) or '(none new)'}: snapshot "
          f"{result.snapshot.snapshot_id}, {result.snapshot.total_rows} rows", flush=True)
else:
    from icefloe.compute import read_table, spark_session, write_table

    spark = spark_session(app_name="LoadBatch")
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

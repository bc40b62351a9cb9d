"""Demo job LoadBatch: generate a new batch of loans and append it to lending.loans.

Run by the control plane with ICEFLOE_HOME set; arguments: --rows N --seed S [--bad-batch].
"""

import argparse

from icefloe.demo.loans import generate_loans
from icefloe.lakehouse import Lakehouse

parser = argparse.ArgumentParser()
parser.add_argument("--rows", type=int, default=500)
parser.add_argument("--seed", type=int, default=7)
parser.add_argument("--table", default="lending.loans")
parser.add_argument("--bad-batch", action="store_true")
args = parser.parse_args()

result = Lakehouse().write(args.table, generate_loans(args.rows, args.seed,
                                                      bad_batch=args.bad_batch),
                           "append", evolve=args.bad_batch)
print(f"appended {result.rows} rows to {args.table}: snapshot {result.snapshot.snapshot_id}, "
      f"{result.snapshot.total_rows} rows in total", flush=True)

"""Demo job TrainModel: train and register the loan-default model on the current snapshot.

Arguments: --pipeline baseline|categorical|tree --model NAME.
"""

import argparse
import sys

from icefloe.demo.loans import LABEL_COLUMN, POSITIVE_STATUSES
from icefloe.errors import IcefloeError
from icefloe.ml.spec import LabelSpec, TrainSpec
from icefloe.ml.train import train

parser = argparse.ArgumentParser()
parser.add_argument("--table", default="lending.loans")
parser.add_argument("--pipeline", default="baseline")
parser.add_argument("--model", default="loan-default")
args = parser.parse_args()

try:
    result = train(TrainSpec(table=args.table, label=LabelSpec(LABEL_COLUMN, POSITIVE_STATUSES),
                             model_name=args.model, pipeline=args.pipeline),
                   on_step=lambda step: print(f"step: {step}", flush=True))
except IcefloeError as exc:  # the reason, not a traceback, ends the run's log
    print(f"training failed: {exc.message}", file=sys.stderr, flush=True)
    sys.exit(exc.exit_code)
print(f"registered {result.model_name}/{result.version}", flush=True)
for line in result.summary_lines():
    print(line, flush=True)

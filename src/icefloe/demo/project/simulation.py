"""Demo job Simulation (the seed's): call the deployed model with loans drawn from the
table, send their ground truth later with label noise that rises over time (so accuracy
visibly decays), and record the accuracy of every 100 predictions as aggregate metrics.

Written against CML's ``cdsw`` functions; only the import differs. Arguments: DEPLOYMENT
[--predictions N] [--seed S]; the model's access key comes from $MODEL_ACCESS_KEY (a secret
variable of the job).
"""

import argparse
import os
import random
import time

import icefloe.cdsw as cdsw
from icefloe.client import Client
from icefloe.demo.loans import LABEL_COLUMN, POSITIVE_STATUSES
from icefloe.lakehouse import Lakehouse

parser = argparse.ArgumentParser()
parser.add_argument("deployment")
parser.add_argument("--predictions", type=int, default=600)
parser.add_argument("--seed", type=int, default=11)
args = parser.parse_args()
access_key = os.environ["MODEL_ACCESS_KEY"]
rng = random.Random(args.seed)  # noqa: S311 - a seeded simulation, not a secret

# The fields the deployed build takes (its input schema), and loans that have them all.
schema = Client().get_deployment(args.deployment)["input_schema"]["fields"]
fields = [f["name"] for f in schema]
required = [f["name"] for f in schema if not f.get("nullable")]
rows = [r for r in Lakehouse().read("lending.loans").to_pylist()
        if all(r.get(f) is not None for f in required)]
blocks = max(1, args.predictions // 100)
for block in range(blocks):
    noise = min(0.9, 0.05 + 0.18 * block)  # the share of wrong ground truth rises
    start = int(time.time() * 1000)
    answers = []
    for row in rng.sample(rows, 100):
        record = {f: row.get(f) for f in fields}
        answer = cdsw.call_model(access_key, record)["response"]
        truth = int(row[LABEL_COLUMN] in POSITIVE_STATUSES)
        answers.append((answer, truth if rng.random() >= noise else 1 - truth))
    right = 0
    for answer, truth in answers:  # the ground truth arrives later
        cdsw.track_delayed_metrics({"final_label": truth}, answer["uuid"])
        right += answer["prediction"] == truth
    end = int(time.time() * 1000)
    cdsw.track_aggregate_metrics({"accuracy": right / len(answers), "label_noise": noise},
                                 start, end, model_deployment_crn=args.deployment)
    print(f"predictions {block * 100 + 1}-{block * 100 + 100}: label noise {noise:.2f}, "
          f"accuracy {right / len(answers):.2f}", flush=True)

"""Demo job Inference (the seed's monitoring job): read the deployment's metrics back, print
accuracy over time per 100 predictions beside the aggregate accuracy Simulation recorded,
export the prediction log to monitoring.predictions, and draw the accuracy-over-time plot
into the project folder.

Written against CML's ``cdsw`` functions; only the import differs. Argument: DEPLOYMENT.
"""

import argparse
import json
from pathlib import Path

import icefloe.cdsw as cdsw
from icefloe.client import Client

parser = argparse.ArgumentParser()
parser.add_argument("deployment")
args = parser.parse_args()

metrics = cdsw.read_metrics(model_crn="loan-default",
                            model_deployment_crn=args.deployment)["metrics"]
predictions = [m for m in metrics if m["predictionUuid"] is not None
               and "final_label" in m["metrics"]]
aggregates = [m["metrics"] for m in metrics if m["predictionUuid"] is None]
points = []
for start in range(0, len(predictions) - len(predictions) % 100, 100):
    block = predictions[start:start + 100]
    right = sum(m["metrics"]["output"]["prediction"] == m["metrics"]["final_label"]
                for m in block)
    points.append((start + 100, right / len(block)))
    print(f"predictions {start + 1}-{start + 100}: accuracy {right / len(block):.2f}", flush=True)
print(f"{len(predictions)} predictions with ground truth, {len(aggregates)} aggregate "
      f"accuracies recorded by Simulation", flush=True)

# Into monitoring.predictions, so SQL reports over the monitoring tables see these calls.
exported = Client().export_predictions()
print(f"{exported['table']}: {exported['added']} predictions added, "
      f"{exported['truth_updated']} given their ground truth", flush=True)

if points:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.5))
    axes = figure.subplots()
    axes.plot([p[0] for p in points], [p[1] for p in points], marker="o")
    axes.set(xlabel="predictions", ylabel="accuracy", ylim=(0, 1),
             title=f"accuracy over time, deployment {args.deployment[:8]}")
    # Into the project folder, or the run's own home when the project is not writable.
    for folder in (Path.cwd(), Path.home()):
        try:
            figure.savefig(folder / "accuracy_over_time.png", dpi=100, bbox_inches="tight")
            (folder / "accuracy_over_time.json").write_text(json.dumps(points))
        except OSError as exc:
            print(f"cannot write into {folder}: {exc.strerror}", flush=True)
            continue
        print(f"wrote {folder / 'accuracy_over_time.png'}", flush=True)
        break

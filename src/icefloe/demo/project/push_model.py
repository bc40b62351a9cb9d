"""Demo job PushModel (the seed's): build the newest version of the model and put it behind
the demo's endpoint; a redeploy switches traffic only once the new replicas are ready.

Arguments: [--model NAME] [--replicas N]. Uses the run's own URL and token.
"""

import argparse
import sys

from icefloe.client import Client

parser = argparse.ArgumentParser()
parser.add_argument("--model", default="loan-default")
parser.add_argument("--replicas", type=int, default=2)
args = parser.parse_args()
client = Client()

version = client.model_versions(args.model)[-1]["version"]
build = client.build_model(f"{args.model}/{version}")
if build["status"] != "BUILD_READY":
    print(f"build of {args.model}/{version} failed: {build['reason']}", flush=True)
    sys.exit(1)
print(f"built {args.model}/{version}: build {build['id']} (self-test parity "
      f"{build['parity']:.1e})", flush=True)
serving = [d for d in client.list_deployments()
           if d["model"] == args.model and d["status"] == "DEPLOYED"]
if serving:
    dep = client.redeploy(serving[0]["id"], build["id"])
    print(f"deployment {dep['id']} now serves {args.model}/{version} (zero-downtime switch)",
          flush=True)
else:
    dep = client.deploy(build["id"], replicas=args.replicas)
    print(f"deployment {dep['id']} serves {args.model}/{version} at {dep['endpoint']}",
          flush=True)

"""Serving benchmark: one registered model served four ways, loaded with wrk on 127.0.0.1.

- icefloe: ``POST /model`` with an API key, an access key, input validation and prediction
  logging on (a real ``icefloe up``, replicas in their own processes);
- MLflow's Spark pyfunc: ``mlflow models serve`` of the model's Spark pipeline;
- MLflow's ONNX pyfunc: the same ONNX graph with a single ``[None, k]`` input (what that
  pyfunc needs), also served by ``mlflow models serve``;
- a bare FastAPI route that returns a constant (same uvicorn, same event loop): the ceiling
  of the HTTP stack on this machine.

Single-record requests at each concurrency; p50/p99 latency and throughput per target, the
ratios, and for icefloe the logged predictions against the successful answers it sent.
The model is the numeric-only baseline pipeline, so all four serve exactly the same model.

Usage: python bench/serving.py [--duration 5] [--concurrency 1,8,32] [--replicas 1]
needs wrk (Debian package ``wrk``; ``make bench`` installs it when missing).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from icefloe.config import Settings, load_settings
from icefloe.demo.loans import NUMERIC_FEATURES, generate_loans
from icefloe.lakehouse import Lakehouse

CONSTANT_APP = '''
from fastapi import FastAPI
app = FastAPI()

@app.post("/invocations")
async def constant() -> dict:
    return {"predictions": [0]}
'''
GOALS = "p50 <= 1 ms at c=1; >= 2,000 req/s at c=8; >= 4x MLflow-ONNX; >= 50x MLflow-Spark; " \
        ">= 0.6x the constant route; zero lost prediction records"


@dataclass
class Target:
    """One server under test."""

    name: str
    url: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    results: dict[int, dict[str, float]] = field(default_factory=dict)
    deployment: str = ""


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(check: Callable[[], bool], what: str, proc: subprocess.Popen[bytes],
              timeout: float = 240) -> None:
    """Poll until ``check`` passes, failing early if the server process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} before it was ready")
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{what} was not ready after {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM a server (and its process group), then wait."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a server in its own process group, output to a log file."""
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


# -- the model --------------------------------------------------------------------------------

def train_model(settings: Settings, rows: int) -> tuple[str, str]:
    """Train the baseline model; returns (MLflow Spark model URI, MLflow ONNX model URI)."""
    import mlflow
    import onnx
    from pyspark.ml import PipelineModel

    from icefloe.compute import spark_session
    from icefloe.ml.spec import LabelSpec, TrainSpec
    from icefloe.ml.train import train
    from icefloe.registry.store import ModelRegistry

    Lakehouse(settings).write("lending.loans", generate_loans(rows, 7), "create")
    spark = spark_session(settings, app_name="bench-serving")
    result = train(TrainSpec(table="lending.loans", label=LabelSpec(
        "loan_status", ("Charged Off", "Default")), model_name="loan-default",
        features=tuple(NUMERIC_FEATURES), pipeline="baseline"), settings, spark=spark)
    registry = ModelRegistry(settings)
    _, onnx_bytes = registry.onnx_bytes("loan-default/1")
    with tempfile.TemporaryDirectory() as tmp:
        spark_dir = mlflow.artifacts.download_artifacts(
            run_id=result.run_id, artifact_path="spark-model", dst_path=tmp)
        pipeline = PipelineModel.load(spark_dir)
        # In the home's artifact store (a new experiment would default to ./mlruns).
        with mlflow.start_run(experiment_id=registry.experiment_id("bench-serving")) as run:
            # Requirements given, not inferred: inference would import and time the model.
            mlflow.spark.log_model(pipeline, artifact_path="spark", pip_requirements=["pyspark"])
            mlflow.onnx.log_model(single_input(onnx.load_from_string(onnx_bytes)), name="onnx",
                                  pip_requirements=["onnxruntime"])
    spark.stop()
    return f"runs:/{run.info.run_id}/spark", f"runs:/{run.info.run_id}/onnx"


def single_input(model: Any) -> Any:
    """The same graph fed by one ``[None, k]`` tensor, split into the per-feature inputs."""
    import onnx
    from onnx import helper

    graph = model.graph
    inputs = list(graph.input)
    elem = inputs[0].type.tensor_type.elem_type
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    names = [i.name for i in inputs]
    if opset < 13:  # the sizes are an attribute before opset 13, an input from then on
        split = helper.make_node("Split", ["X"], names, axis=1, split=[1] * len(inputs))
        extra = []
    else:
        sizes = helper.make_tensor("split_sizes", onnx.TensorProto.INT64, [len(inputs)],
                                   [1] * len(inputs))
        split = helper.make_node("Split", ["X", "split_sizes"], names, axis=1)
        extra = [sizes]
    x = helper.make_tensor_value_info("X", elem, [None, len(inputs)])
    del graph.input[:]
    graph.input.extend([x])
    graph.initializer.extend(extra)
    graph.node.insert(0, split)
    # The pyfunc turns outputs into DataFrame columns, so each must have one value per row:
    # keep the predicted label and the positive class's probability (what icefloe answers).
    outputs = {o.name: o for o in graph.output}
    prob_type = outputs["probability"].type.tensor_type.elem_type
    graph.initializer.append(helper.make_tensor("positive_class", onnx.TensorProto.INT64, [],
                                                [1]))
    graph.node.append(helper.make_node("Gather", ["probability", "positive_class"],
                                       ["positive_probability"], axis=1))
    del graph.output[:]
    graph.output.extend([outputs["prediction"], helper.make_tensor_value_info(
        "positive_probability", prob_type, [None])])
    onnx.checker.check_model(model)
    return model


# -- the servers --------------------------------------------------------------------------------

def start_icefloe(home: Path, replicas: int, record: dict[str, float]) -> Target:
    """``icefloe up``, then build and deploy the model; a Target for ``/model``."""
    env = {**os.environ, "ICEFLOE_HOME": str(home)}
    icefloe = [sys.executable, "-m", "icefloe.cli.main"]
    init = subprocess.run([*icefloe, "init", "--json"], env=env, capture_output=True, text=True,
                          check=True)
    api_key = json.loads(init.stdout)["api_key"]
    port = free_port()
    proc = spawn([*icefloe, "up", "--port", str(port)], env, home / "bench-up.log")
    base = f"http://127.0.0.1:{port}"
    wait_http(lambda: httpx.get(f"{base}/api/v2/health").status_code == 200, "icefloe", proc)
    with httpx.Client(base_url=f"{base}/api/v2", timeout=120,
                      headers={"Authorization": f"Bearer {api_key}"}) as client:
        build = client.post("/models/builds", json={"model": "loan-default/1"}).json()
        if build.get("status") != "BUILD_READY":
            raise SystemExit(f"icefloe build failed: {build}")
        dep = client.post("/models/deployments", json={"build_id": build["id"],
                                                       "replicas": replicas}).json()
    return Target("icefloe", f"{base}/model", {"accessKey": dep["access_key"],
                                               "request": record},
                  {"Authorization": f"Bearer {api_key}"}, proc, deployment=dep["id"])


def start_mlflow(name: str, uri: str, settings: Settings, record: dict[str, float],
                 log: Path) -> Target:
    """``mlflow models serve`` of a model URI, with the environment it needs."""
    from icefloe.compute.java import find_java

    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": settings.resolved_mlflow_uri,
           "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
           "JAVA_HOME": find_java(settings.java).home, "PYSPARK_PYTHON": sys.executable,
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    proc = spawn([sys.executable, "-m", "mlflow", "models", "serve", "-m", uri,
                  "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)], env, log)
    base = f"http://127.0.0.1:{port}"
    wait_http(lambda: httpx.get(f"{base}/ping").status_code == 200, name, proc)
    columns = list(NUMERIC_FEATURES)
    body = {"dataframe_split": {"columns": columns, "data": [[record[c] for c in columns]]}}
    return Target(name, f"{base}/invocations", body, {}, proc)


def start_constant(log: Path) -> Target:
    """A bare FastAPI constant route under the same uvicorn setup as icefloe."""
    folder = Path(tempfile.mkdtemp(prefix="bench-const-"))
    (folder / "constant_app.py").write_text(CONSTANT_APP)
    port = free_port()
    proc = spawn([sys.executable, "-m", "uvicorn", "constant_app:app", "--host", "127.0.0.1",
                  "--port", str(port), "--log-level", "warning", "--no-access-log",
                  "--app-dir", str(folder)], dict(os.environ), log)
    base = f"http://127.0.0.1:{port}"
    wait_http(lambda: httpx.post(f"{base}/invocations").status_code == 200, "constant", proc)
    return Target("fastapi constant", f"{base}/invocations", {}, {}, proc)


# -- load ---------------------------------------------------------------------------------------

def _seconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def run_wrk(wrk: str, target: Target, concurrency: int, duration: float,
            workdir: Path) -> dict[str, float]:
    """One wrk run; returns req/s, p50/p99 (ms), answered and failed requests."""
    script = workdir / "post.lua"
    headers = {"Content-Type": "application/json", **target.headers}
    body = json.dumps(json.dumps(target.body))  # a Lua string literal of the JSON body
    lines = ['wrk.method = "POST"', f"wrk.body = {body}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run([wrk, f"-t{min(concurrency, 2)}", f"-c{concurrency}",
                          f"-d{duration:g}s", "--timeout", "30s", "--latency", "-s", str(script),
                          target.url], capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    failed = (int(non2xx.group(1)) if non2xx else 0) + (
        sum(int(g) for g in errors.groups()) if errors else 0)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "p50_ms": _seconds(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)) * 1000,  # type: ignore[union-attr]
            "p99_ms": _seconds(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)) * 1000,  # type: ignore[union-attr]
            "answered": total, "failed": failed}


def check_answer(target: Target) -> str:
    """Call once outside the load; refuse to measure a server that answers wrongly."""
    r = httpx.post(target.url, json=target.body, headers=target.headers, timeout=120)
    if r.status_code != 200:
        raise SystemExit(f"{target.name} answered {r.status_code}: {r.text[:300]}")
    return r.text[:160]


def icefloe_counts(target: Target) -> tuple[int, int]:
    """(predictions in the log, 200 answers the server counted) for the icefloe deployment."""
    base = target.url.removesuffix("/model")
    dep = target.deployment
    with httpx.Client(headers=target.headers, timeout=120) as client:
        logged = len(client.get(f"{base}/api/v2/metrics",
                                params={"model_deployment_crn": dep}).json()["metrics"])
        text = client.get(f"{base}/metrics").text
    match = re.search(rf'icefloe_http_requests_total{{route="/model",deployment="{dep}",'
                      rf'status="200"}} (\d+)', text)
    return logged, int(match.group(1)) if match else 0


def main() -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="Seconds per wrk run.")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--skip-spark", action="store_true",
                        help="Leave MLflow's Spark pyfunc out (its runs are the slowest).")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk is not installed: apt-get install wrk (make bench does it)", file=sys.stderr)
        return 2
    levels = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="icefloe-bench-serving-"))
    home = work / "home"
    settings = load_settings(env={}, home=home)
    print(f"training the model (work folder {work}) ...", flush=True)
    spark_uri, onnx_uri = train_model(settings, args.rows)
    record = {name: 1.0 for name in NUMERIC_FEATURES}
    record.update(annual_inc=65000.0, int_rate=13.5, term_months=36, dti=18.0)

    starters: list[tuple[str, Callable[[], Target]]] = [
        ("icefloe", lambda: start_icefloe(home, args.replicas, record)),
        ("mlflow onnx", lambda: start_mlflow("mlflow onnx", onnx_uri, settings, record,
                                             work / "mlflow-onnx.log")),
        ("mlflow spark", lambda: start_mlflow("mlflow spark", spark_uri, settings, record,
                                              work / "mlflow-spark.log")),
        ("fastapi constant", lambda: start_constant(work / "constant.log")),
    ]
    targets: list[Target] = []
    counts = (0, 0)
    for name, starter in starters:
        if name == "mlflow spark" and args.skip_spark:
            continue
        print(f"starting {name} ...", flush=True)
        target = starter()
        try:
            print(f"  one answer: {check_answer(target)}", flush=True)
            for c in levels:
                target.results[c] = run_wrk(wrk, target, c, args.duration, work)
                r = target.results[c]
                print(f"  c={c:<3} {r['rps']:>9,.0f} req/s  p50 {r['p50_ms']:7.2f} ms  "
                      f"p99 {r['p99_ms']:8.2f} ms  failed {r['failed']:.0f}", flush=True)
            if name == "icefloe":
                counts = icefloe_counts(target)
        finally:
            stop(target.proc)
        targets.append(target)
    report(targets, levels, counts, args)
    if args.json:
        args.json.write_text(json.dumps({"targets": {t.name: t.results for t in targets},
                                         "logged": counts[0], "answered_200": counts[1]},
                                        indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0


def report(targets: list[Target], levels: list[int], counts: tuple[int, int],
           args: argparse.Namespace) -> None:
    """Print the table, the ratios and the goals."""
    print(f"\nserving benchmark: single-record POSTs, wrk {args.duration:g} s per run, "
          f"{os.cpu_count()} cores, icefloe replicas={args.replicas}")
    print(f"{'target':<18}{'conc':>5}{'req/s':>11}{'p50 ms':>9}{'p99 ms':>10}{'failed':>8}")
    for t in targets:
        for c in levels:
            r = t.results[c]
            print(f"{t.name:<18}{c:>5}{r['rps']:>11,.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>10.2f}"
                  f"{r['failed']:>8.0f}")
    by = {t.name: t.results for t in targets}
    ice = by["icefloe"]
    print("\nthroughput ratios, icefloe / peer (same run):")
    for peer in ("mlflow onnx", "mlflow spark", "fastapi constant"):
        if peer in by:
            print(f"  vs {peer:<17}" + "  ".join(
                f"c={c}: {ice[c]['rps'] / by[peer][c]['rps']:6.2f}x" for c in levels))
    logged, answered = counts
    print(f"\nicefloe prediction log: {logged:,} records for {answered:,} successful answers "
          f"(lost: {answered - logged:,})")
    print(f"goals: {GOALS}")
    if 1 in ice and 8 in ice:
        checks = [("p50 at c=1 <= 1 ms", ice[1]["p50_ms"] <= 1.0),
                  ("c=8 >= 2,000 req/s", ice[8]["rps"] >= 2000),
                  ("zero lost records", answered == logged)]
        for peer, goal in (("mlflow onnx", 4.0), ("mlflow spark", 50.0),
                           ("fastapi constant", 0.6)):
            if peer in by and 8 in by[peer]:
                checks.append((f"c=8 >= {goal:g}x {peer}", ice[8]["rps"] / by[peer][8]["rps"]
                               >= goal))
        print("       " + "; ".join(f"{name}: {'met' if ok else 'MISSED'}"
                                    for name, ok in checks))


if __name__ == "__main__":
    raise SystemExit(main())

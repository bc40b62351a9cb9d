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

icefloe runs twice per round: with its prediction journal (the default: every answered call
is written to an append-only file before the answer leaves, so a crash loses none) and with
``ICEFLOE_PREDICTION_JOURNAL=off``, which gives the journal's cost. icefloe (both ways) and
the constant route are measured in turns, ``--rounds`` times, so they share the machine's
conditions: on a shared machine single runs vary a lot, so the table shows medians and the
ratios are medians of per-round ratios, with their ranges.

Usage: python bench/serving.py [--duration 5] [--concurrency 1,8,32] [--replicas 1] [--rounds 3]
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
import statistics
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
GOALS = ("with the journal on: p50 <= 1 ms at c=1 and within 2x the constant route's; "
         ">= 2,000 req/s at c=8; >= 4x MLflow-ONNX; >= 50x MLflow-Spark; >= 0.75x the constant "
         "route at c=8; zero lost prediction records")
JOURNAL_OFF = {"ICEFLOE_PREDICTION_JOURNAL": "off"}


@dataclass
class Target:
    """One server under test."""

    name: str
    url: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    runs: dict[int, list[dict[str, float]]] = field(default_factory=dict)  # per level, rounds
    deployment: str = ""

    def add(self, concurrency: int, result: dict[str, float]) -> None:
        """Keep one wrk run."""
        self.runs.setdefault(concurrency, []).append(result)

    def median(self, concurrency: int, key: str) -> float:
        """The median of a measure over the rounds."""
        return statistics.median(r[key] for r in self.runs[concurrency])


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
    from icefloe.registry.mlflow_registry import ModelRegistry

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

def init_icefloe(home: Path) -> str:
    """``icefloe init`` of the (already trained into) home; returns the admin API key."""
    env = {**os.environ, "ICEFLOE_HOME": str(home)}
    init = subprocess.run([sys.executable, "-m", "icefloe.cli.main", "init", "--json"],
                          env=env, capture_output=True, text=True, check=True)
    return str(json.loads(init.stdout)["api_key"])


def start_icefloe(home: Path, api_key: str, replicas: int, record: dict[str, float],
                  extra_env: dict[str, str] | None = None, deployment: Target | None = None,
                  name: str = "icefloe") -> Target:
    """``icefloe up``; builds and deploys the model unless ``deployment`` (a Target of an
    earlier start) says which one to call (deployments come back when icefloe restarts)."""
    env = {**os.environ, "ICEFLOE_HOME": str(home), **(extra_env or {})}
    port = free_port()
    proc = spawn([sys.executable, "-m", "icefloe.cli.main", "up", "--port", str(port)], env,
                 home / "bench-up.log")
    base = f"http://127.0.0.1:{port}"
    wait_http(lambda: httpx.get(f"{base}/api/v2/health").status_code == 200, name, proc)
    headers = {"Authorization": f"Bearer {api_key}"}
    if deployment is not None:
        target = Target(name, f"{base}/model", deployment.body, headers, proc,
                        deployment=deployment.deployment)
        # Its replicas start with the control plane: wait until one answers.
        wait_http(lambda: httpx.post(target.url, json=target.body, headers=headers,
                                     timeout=30).status_code == 200, name, proc)
        return target
    with httpx.Client(base_url=f"{base}/api/v2", timeout=120, headers=headers) as client:
        build = client.post("/models/builds", json={"model": "loan-default/1"}).json()
        if build.get("status") != "BUILD_READY":
            raise SystemExit(f"icefloe build failed: {build}")
        dep = client.post("/models/deployments", json={"build_id": build["id"],
                                                       "replicas": replicas}).json()
    return Target(name, f"{base}/model", {"accessKey": dep["access_key"], "request": record},
                  headers, proc, deployment=dep["id"])


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


def journal_write_cost(calls: int = 20000) -> tuple[float, float]:
    """Microseconds one answered call spends recording, without and with the journal (the
    request-path part of its cost: the lock, the append, and with the journal one
    ``os.write``), measured in this process on a scratch store."""
    from icefloe.serving.journal import journal_line
    from icefloe.serving.predictions import PredictionLog
    from icefloe.store.db import Database

    inputs = json.dumps(dict.fromkeys(NUMERIC_FEATURES, 1.0))
    lines = [journal_line((f"{i:036d}", "d" * 36, "b" * 36, "loan-default", 1, 0, "admin",
                           inputs, '{"prediction": 0, "probability": 0.01}', 0.5, "{}"))
             for i in range(2 * calls)]
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/platform.db")
        for n, journal in enumerate((None, Path(tmp) / "journal")):
            # The writer stays asleep while the request path is timed.
            log = PredictionLog(db, flush_interval=3600, journal_dir=journal,
                                rotate_every=3600)
            mine = lines[n * calls:(n + 1) * calls]
            best = float("inf")
            for rep in range(5):
                part = mine[rep * calls // 5:(rep + 1) * calls // 5]
                started = time.perf_counter()
                for line in part:
                    log.record_call(line)
                best = min(best, (time.perf_counter() - started) / len(part) * 1e6)
            log.close()
            out.append(best)
        db.dispose()
    return out[0], out[1]


def main() -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="Seconds per wrk run.")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3,
                        help="Turns of icefloe (journal on, off) and the constant route.")
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--skip-spark", action="store_true",
                        help="Leave MLflow's Spark pyfunc out (its runs are the slowest).")
    parser.add_argument("--skip-mlflow", action="store_true",
                        help="Leave both MLflow targets out.")
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
    api_key = init_icefloe(home)

    def measure(target: Target) -> None:
        for c in levels:
            r = run_wrk(wrk, target, c, args.duration, work)
            target.add(c, r)
            print(f"  {target.name:<18} c={c:<3} {r['rps']:>9,.0f} req/s  p50 "
                  f"{r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:8.2f} ms  failed {r['failed']:.0f}",
                  flush=True)

    # icefloe with and without the journal and the constant route, in turns.
    print("starting the constant route ...", flush=True)
    constant = start_constant(work / "constant.log")
    answered, logged = 0, 0
    journal_on = journal_off = None
    try:
        check_answer(constant)
        for round_ in range(1, args.rounds + 1):
            print(f"round {round_} of {args.rounds}", flush=True)
            for mode, env in (("icefloe", None), ("icefloe no journal", JOURNAL_OFF)):
                first = journal_on is None
                target = start_icefloe(home, api_key, args.replicas, record, env,
                                       deployment=journal_on, name=mode)
                try:
                    if first:
                        print(f"  one answer: {check_answer(target)}", flush=True)
                    kept = journal_on if mode == "icefloe" else journal_off
                    if kept is not None:  # same results list across restarts
                        target.runs = kept.runs
                    measure(target)
                    answered += icefloe_counts(target)[1]
                    if round_ == args.rounds and mode == "icefloe no journal":
                        logged = icefloe_counts(target)[0]
                finally:
                    stop(target.proc)
                if mode == "icefloe":
                    journal_on = target
                else:
                    journal_off = target
            measure(constant)
    finally:
        stop(constant.proc)
    assert journal_on is not None and journal_off is not None
    targets = [journal_on, journal_off, constant]

    for name, uri, skip in (("mlflow onnx", onnx_uri, args.skip_mlflow),
                            ("mlflow spark", spark_uri, args.skip_mlflow or args.skip_spark)):
        if skip:
            continue
        print(f"starting {name} ...", flush=True)
        target = start_mlflow(name, uri, settings, record, work / f"{name}.log".replace(" ", "-"))
        try:
            print(f"  one answer: {check_answer(target)}", flush=True)
            measure(target)
        finally:
            stop(target.proc)
        targets.append(target)
    print("timing the journal write on the request path ...", flush=True)
    cost = journal_write_cost()
    report(targets, levels, (logged, answered), cost, args)
    if args.json:
        args.json.write_text(json.dumps({"targets": {t.name: t.runs for t in targets},
                                         "logged": logged, "answered_200": answered,
                                         "record_us_without_journal": cost[0],
                                         "record_us_with_journal": cost[1]}, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0


def _span(values: list[float], fmt: str) -> str:
    return f"{format(min(values), fmt)}-{format(max(values), fmt)}" if len(values) > 1 else ""


def report(targets: list[Target], levels: list[int], counts: tuple[int, int],
           cost: tuple[float, float], args: argparse.Namespace) -> None:
    """Print the table, the journal's cost, the ratios and the goals."""
    print(f"\nserving benchmark: single-record POSTs, wrk {args.duration:g} s per run, "
          f"{os.cpu_count()} cores, icefloe replicas={args.replicas}, {args.rounds} round(s) "
          f"for icefloe and the constant route (medians; range over rounds)")
    print(f"{'target':<20}{'conc':>5}{'req/s':>10}{'(range)':>17}{'p50 ms':>9}"
          f"{'(range)':>13}{'p99 ms':>9}{'failed':>8}")
    for t in targets:
        for c in levels:
            runs = t.runs[c]
            print(f"{t.name:<20}{c:>5}{t.median(c, 'rps'):>10,.0f}"
                  f"{_span([r['rps'] for r in runs], ',.0f'):>17}{t.median(c, 'p50_ms'):>9.2f}"
                  f"{_span([r['p50_ms'] for r in runs], '.2f'):>13}"
                  f"{t.median(c, 'p99_ms'):>9.2f}{sum(r['failed'] for r in runs):>8.0f}")
    by = {t.name: t for t in targets}
    ice, off, const = by["icefloe"], by["icefloe no journal"], by["fastapi constant"]

    def per_round(a: Target, b: Target, c: int, key: str) -> list[float]:
        return [x[key] / y[key] for x, y in zip(a.runs[c], b.runs[c], strict=False)]

    print("\nthe journal's cost (icefloe with it / without it, per round; median and range):")
    for c in levels:
        rps = per_round(ice, off, c, "rps")
        p50 = [x["p50_ms"] - y["p50_ms"] for x, y in zip(ice.runs[c], off.runs[c],
                                                          strict=False)]
        print(f"  c={c:<3} throughput x{statistics.median(rps):.2f} ({_span(rps, '.2f')}), "
              f"p50 {statistics.median(p50):+.3f} ms ({_span(p50, '+.3f')})")
    print(f"  on the request path: {cost[1]:.1f} us per answered call with the journal, "
          f"{cost[0]:.1f} us without (one os.write; no fsync: a crash of the process loses "
          f"nothing, a power loss may)")
    print("\nthroughput ratios, icefloe (journal on) / peer:")
    ratios: dict[str, dict[int, float]] = {}
    for peer in (const, off):
        ratios[peer.name] = {}
        parts = []
        for c in levels:
            each = per_round(ice, peer, c, "rps")
            ratios[peer.name][c] = statistics.median(each)
            parts.append(f"c={c}: {statistics.median(each):5.2f}x ({_span(each, '.2f')})")
        print(f"  vs {peer.name:<18} (same rounds) " + "  ".join(parts))
    for name in ("mlflow onnx", "mlflow spark"):
        if name in by:
            ratios[name] = {c: ice.median(c, "rps") / by[name].median(c, "rps") for c in levels}
            print(f"  vs {name:<18} (own run)    " + "  ".join(
                f"c={c}: {ratios[name][c]:6.2f}x" for c in levels))
    if 1 in levels:
        p50 = per_round(ice, const, 1, "p50_ms")
        print(f"  p50 at c=1: {ice.median(1, 'p50_ms'):.2f} ms vs the constant route's "
              f"{const.median(1, 'p50_ms'):.2f} ms: x{statistics.median(p50):.2f} "
              f"({_span(p50, '.2f')}) per round")
    logged, answered = counts
    print(f"\nicefloe prediction log: {logged:,} records for {answered:,} successful answers "
          f"(lost: {answered - logged:,})")
    print(f"goals: {GOALS}")
    if 1 in levels and 8 in levels:
        checks = [("p50 at c=1 <= 1 ms", ice.median(1, "p50_ms") <= 1.0),
                  ("p50 at c=1 within 2x the constant route's",
                   statistics.median(per_round(ice, const, 1, "p50_ms")) <= 2.0),
                  ("c=8 >= 2,000 req/s", ice.median(8, "rps") >= 2000),
                  ("zero lost records", answered == logged)]
        for peer, goal in (("mlflow onnx", 4.0), ("mlflow spark", 50.0),
                           ("fastapi constant", 0.75)):
            if peer in ratios:
                checks.append((f"c=8 >= {goal:g}x {peer}", ratios[peer][8] >= goal))
        print("       " + "; ".join(f"{name}: {'met' if ok else 'MISSED'}"
                                    for name, ok in checks))


if __name__ == "__main__":
    raise SystemExit(main())

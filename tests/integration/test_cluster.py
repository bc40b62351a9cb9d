"""Training on a real Spark standalone cluster (master + worker on 127.0.0.1)."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyspark
import pytest

from icefloe.compute.java import find_java
from icefloe.config import load_settings
from icefloe.demo.loans import generate_loans
from icefloe.lakehouse import Lakehouse
from icefloe.ml.spec import LabelSpec, TrainSpec
from icefloe.ml.train import train
from tests.conftest import run_cli

pytestmark = pytest.mark.spark


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _master_state(ui_port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A master and a worker started with pyspark's own spark-class; stopped afterwards."""
    root = tmp_path_factory.mktemp("cluster")
    spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
    env = {**os.environ, "JAVA_HOME": find_java().home, "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_LOG_DIR": str(root), "SPARK_NO_DAEMONIZE": "1"}
    port, ui = _free_port(), _free_port()
    procs = []

    def start(name: str, *args: str) -> None:
        log = (root / f"{name}.log").open("w")
        procs.append(subprocess.Popen([str(spark_class), *args], env=env, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True))

    start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
          "--port", str(port), "--webui-port", str(ui))
    start("worker", "org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{port}",
          "--host", "127.0.0.1", "--cores", "2", "--memory", "2g",
          "--webui-port", str(_free_port()), "--work-dir", str(root / "work"))
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if _master_state(ui).get("aliveworkers", 0) >= 1:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                logs = "\n".join(p.read_text()[-2000:] for p in root.glob("*.log"))
                raise AssertionError(f"standalone cluster did not come up:\n{logs}")
            time.sleep(0.5)
        yield f"spark://127.0.0.1:{port}", ui
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)


def test_training_on_the_cluster_matches_local_mode(standalone, spark, tmp_path: Path) -> None:
    master_url, ui = standalone
    home = tmp_path / "home"
    settings = load_settings(env={}, home=home)
    Lakehouse(settings).write("lending.loans", generate_loans(3000, 42), "create")
    local = train(TrainSpec(table="lending.loans", label=LabelSpec(
        "loan_status", ("Charged Off", "Default")), model_name="local-model"), settings,
        spark=spark)

    proc = run_cli(["train", "--table", "lending.loans", "--label", "loan_status",
                    "--positive", "Charged Off,Default", "--model", "cluster-model", "--json"],
                   home, env={"ICEFLOE_SPARK_MASTER": master_url,
                              "ICEFLOE_SPARK_DRIVER_MEMORY": "1g"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    remote = json.loads(proc.stdout)
    assert remote["parity"] <= 1e-5
    assert remote["lineage"]["snapshot_id"] == local.lineage.snapshot_id
    assert remote["lineage"]["test_rows"] == local.lineage.test_rows  # same hash split
    assert remote["metrics"]["auc"] == pytest.approx(local.metrics["auc"], abs=2e-3)
    apps = _master_state(ui)["completedapps"] + _master_state(ui)["activeapps"]
    assert any(app["name"] == "icefloe-train-cluster-model" for app in apps)


APPLICATION = """\
import sys, time
from pyspark.sql import SparkSession

spark = SparkSession.builder.getOrCreate()
conf = spark.sparkContext.getConf()
total = spark.range(0, 100000, numPartitions=4).selectExpr("sum(id)").first()[0]
print("SUM", total, "APP", spark.sparkContext.applicationId, "ARGS", sys.argv[1:], flush=True)
for key in ("spark.executor.memory", "spark.cores.max", "spark.sql.shuffle.partitions",
            "spark.app.name"):
    print("CONF", key, conf.get(key, None), flush=True)
if sys.argv[1:] == ["sleep"]:
    time.sleep(600)
if sys.argv[1:] == ["fail"]:
    raise SystemExit("the application gave up")
"""


def test_a_spark_submit_job_runs_as_an_application_of_the_cluster(
        standalone, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.integration.test_control_plane import running

    master_url, ui = standalone
    monkeypatch.setenv("ICEFLOE_SPARK_MASTER", master_url)
    for cp in running(tmp_path / "home"):
        p = cp.project("cluster")
        (Path(cp.client.get(f"/projects/{p}").json()["path"]) / "app.py").write_text(
            APPLICATION)
        made = run_cli(["job", "create", "--project", "cluster", "--name", "sum",
                        "--script", "app.py", "--kernel", "spark-submit",
                        "--executor-memory", "512m", "--conf",
                        "spark.sql.shuffle.partitions=3", "--json"], cp.home,
                       env={"ICEFLOE_URL": cp.url.removesuffix("/api/v2"),
                            "ICEFLOE_API_KEY": cp.key})
        assert made.returncode == 0, made.stderr
        job = json.loads(made.stdout)
        assert job["spark"] == {"executor_memory": "512m",
                                "conf": {"spark.sql.shuffle.partitions": "3"}}
        bad = cp.client.post(f"/projects/{p}/jobs", json={
            "name": "bad", "script": "app.py", "kernel": "spark-submit",
            "spark": {"conf": {"spark.master": "local[8]"}}})
        assert bad.status_code == 422 and "spark.master" in bad.json()["error"]["message"]

        # Run through CDE's route, as Airflow's CDE operator does, with its overrides.
        cde = httpx.Client(base_url=f"{cp.url.removesuffix('/api/v2')}/cde/{p}/api/v1",
                           headers={"Authorization": f"Bearer {cp.key}"}, timeout=30)
        number = cde.post("/jobs/sum/run", json={"overrides": {"spark": {
            "args": ["a b", "c"], "executorCores": 1, "numExecutors": 1,
            "conf": {"spark.sql.shuffle.partitions": "5"}}}}).json()["id"]
        run_id = cde.get(f"/job-runs/{number}").json()["icefloeRunId"]
        done = cp.wait(p, job["id"], run_id, timeout=180)
        log = cp.client.get(f"/projects/{p}/jobs/{job['id']}/runs/{run_id}/logs"
                            ).json()["content"]
        assert done["status"] == "ENGINE_SUCCEEDED", log[-3000:]
        assert "SUM 4999950000 APP app-" in log and "ARGS ['a b', 'c']" in log
        assert "CONF spark.executor.memory 512m" in log
        assert "CONF spark.cores.max 1" in log  # numExecutors x executorCores
        assert "CONF spark.sql.shuffle.partitions 5" in log  # the run's over the job's
        name = f"icefloe-sum-{run_id}"
        assert f"CONF spark.app.name {name}" in log
        finished = [a for a in _master_state(ui)["completedapps"] if a["name"] == name]
        assert len(finished) == 1 and finished[0]["state"] == "FINISHED"
        memory = finished[0].get("memoryperexecutor", finished[0].get("memoryperslave"))
        assert memory == 512  # the executors had the job's memory

        failing = cp.client.post(f"/projects/{p}/jobs/{job['id']}/runs",
                                 json={"arguments": "fail"}).json()["id"]
        failed = cp.wait(p, job["id"], failing, timeout=180)
        assert failed["status"] == "ENGINE_FAILED" and failed["exit_code"] == 1

        # Stopping the run ends the application on the master.
        slow = cp.client.post(f"/projects/{p}/jobs/{job['id']}/runs",
                              json={"arguments": "sleep"}).json()["id"]
        slow_name = f"icefloe-sum-{slow}"
        deadline = time.monotonic() + 120
        while not any(a["name"] == slow_name for a in _master_state(ui)["activeapps"]):
            assert time.monotonic() < deadline, "the application never reached the master"
            time.sleep(0.5)
        assert cp.client.post(f"/projects/{p}/jobs/{job['id']}/runs/{slow}:stop"
                              ).status_code in (200, 204)
        assert cp.wait(p, job["id"], slow, timeout=60)["status"] == "ENGINE_STOPPED"
        deadline = time.monotonic() + 60
        while any(a["name"] == slow_name for a in _master_state(ui)["activeapps"]):
            assert time.monotonic() < deadline, "the stopped application is still active"
            time.sleep(0.5)
        assert any(a["name"] == slow_name for a in _master_state(ui)["completedapps"])
        cde.close()

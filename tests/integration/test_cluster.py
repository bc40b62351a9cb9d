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

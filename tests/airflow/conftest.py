"""A real Airflow 3.3 in its own virtualenv (made by airflow-provider/install-airflow.sh),
a migrated Airflow home, and a running icefloe with the jobs the test DAGs use."""

import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.test_control_plane import ControlPlane, running

REPO = Path(__file__).resolve().parents[2]
DAGS = Path(__file__).parent / "dags"
DEMO_DAGS = REPO / "src" / "icefloe" / "demo" / "dags"
SCRIPTS = {
    "env.py": "import os, sys\nprint('args', sys.argv[1:])\nprint('BATCH', os.environ.get("
              "'BATCH'))\n",
    "slowish.py": "import time\nprint('working', flush=True)\ntime.sleep(4)\nprint('done')\n",
    # Fails the first time it runs, succeeds after (a marker in the run's shared folder).
    "flaky.py": "import pathlib, sys\nmark = pathlib.Path(sys.argv[1])\nif not mark.exists():\n"
                "    mark.write_text('ran')\n    sys.exit('first run fails')\nprint('fine now')\n",
}
JOBS = {"ok": "env.py", "other": "ok.py", "fail": "fail.py", "slowish": "slowish.py",
        "sleepy": "sleepy.py", "sleepy_too": "sleepy.py", "flaky": "flaky.py"}


@dataclass
class DagRun:
    """How an `airflow dags test` ended: its exit code, output and task states."""

    code: int
    output: str
    tasks: dict[str, tuple[str, int]]  # task id -> (state, try number)


class Airflow:
    """`airflow` commands against one migrated home."""

    def __init__(self, venv: Path, home: Path) -> None:
        self.venv = venv
        self.home = home
        self.env = {**os.environ, "AIRFLOW_HOME": str(home),
                    "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
                    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
                    "AIRFLOW__CORE__UNIT_TEST_MODE": "false",
                    "PYTHONPATH": str(DEMO_DAGS),
                    "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}

    def run(self, *args: str, env: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.venv / "bin" / "airflow"), *args], env={**self.env,
                              **(env or {})}, capture_output=True, text=True, timeout=timeout)

    def test_dag(self, dag_id: str, env: dict[str, str], folder: Path = DAGS) -> DagRun:
        done = self.run("dags", "test", dag_id, env={**env,
                                                     "AIRFLOW__CORE__DAGS_FOLDER": str(folder)})
        with sqlite3.connect(self.home / "airflow.db") as db:
            rows = db.execute(
                "SELECT task_id, state, try_number FROM task_instance WHERE dag_id = ? AND "
                "run_id = (SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC "
                "LIMIT 1)", (dag_id, dag_id)).fetchall()
        return DagRun(done.returncode, done.stdout + done.stderr,
                      {task: (state, tries) for task, state, tries in rows})


@pytest.fixture(scope="session")
def airflow(airflow_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Airflow:
    # The provider talks REST only: icefloe itself is not in Airflow's environment.
    alone = subprocess.run([str(airflow_venv / "bin" / "python"), "-c", "import icefloe"],
                           capture_output=True)
    assert alone.returncode != 0
    flow = Airflow(airflow_venv, tmp_path_factory.mktemp("airflow-home"))
    migrated = flow.run("db", "migrate")
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    return flow


@dataclass
class Platform:
    """A running icefloe, its test project and the connections the DAGs use."""

    cp: ControlPlane
    project_id: str
    connections: dict[str, str]

    def runs(self, job: str) -> list[dict]:
        jobs = self.cp.client.get(f"/projects/{self.project_id}/jobs").json()["jobs"]
        job_id = next(j["id"] for j in jobs if j["name"] == job)
        return self.cp.runs(self.project_id, job_id)

    def log(self, job: str, run: dict) -> str:
        return self.cp.client.get(f"/projects/{self.project_id}/jobs/{run['job_id']}/runs/"
                                  f"{run['id']}/logs").json()["content"]


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    for cp in running(tmp_path / "home"):
        project = cp.project("airflow-tests")
        folder = Path(cp.client.get(f"/projects/{project}").json()["path"])
        for name, text in SCRIPTS.items():
            (folder / name).write_text(text)
        shared = tmp_path / "flaky"
        shared.mkdir(mode=0o777)
        shared.chmod(0o777)  # the job user (nobody, when the tests run as root) writes here
        for job, script in JOBS.items():
            cp.job(project, job, script, **({"arguments": str(shared / "mark")}
                                            if job == "flaky" else {}))
        root = cp.url.removesuffix("/api/v2")
        keys = cp.client.get("/keys").json()["keys"]
        key_id = next(k["id"] for k in keys if cp.key.split("_")[1] == k["prefix"])
        cache = tmp_path / "cde-token-cache"
        cache.mkdir()
        connections = {
            "ICEFLOE_TEST_PROJECT": "airflow-tests",
            "AIRFLOW_CONN_ICEFLOE_DEFAULT": json.dumps(
                {"conn_type": "icefloe", "host": root, "password": cp.key}),
            # Cloudera's operator in AWC mode: the project is the virtual cluster, the API
            # key's id and secret are the client credentials.
            "AIRFLOW_CONN_CDE_RUNTIME_API": json.dumps({
                "conn_type": "cloudera_data_engineering",
                "host": f"{root}/cde/{project}/api/v1", "login": key_id, "password": cp.key,
                "extra": {"auth_mode": "awc", "awc_console_url": root,
                          "cache_dir": str(cache)}}),
            "AIRFLOW_CONN_CML_REST_API": json.dumps({
                "conn_type": "http", "host": root,
                "extra": {"Authorization": f"Bearer {cp.key}"}}),
        }
        yield Platform(cp, project, connections)

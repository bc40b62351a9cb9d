"""Airflow for the demo: its own virtualenv (``make airflow``), a home under the icefloe
home, and ``airflow dags test`` runs of the demo's DAGs with each task's outcome read back."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from icefloe.errors import ConfigError

DAGS = Path(__file__).with_name("dags")


@dataclass(frozen=True)
class Task:
    """One task of a DAG run."""

    task_id: str
    state: str
    seconds: float


@dataclass(frozen=True)
class DagRun:
    """How a DAG run ended."""

    dag_id: str
    state: str
    tasks: list[Task]
    seconds: float
    output: str

    def task(self, task_id: str) -> Task:
        """One task by id.

        Raises:
            ConfigError: The run has no such task (the DAG is not the one the demo knows).
        """
        for task in self.tasks:
            if task.task_id == task_id:
                return task
        raise ConfigError(f"DAG run of {self.dag_id} has no task {task_id!r} (it has "
                          f"{', '.join(t.task_id for t in self.tasks) or 'none'})")


def find_venv(path: Path | None) -> Path:
    """The Airflow virtualenv: ``path``, else $ICEFLOE_AIRFLOW_VENV, else ./.venv-airflow.

    Raises:
        ConfigError: There is no ``airflow`` in it, with how to make one.
    """
    venv = path or Path(os.environ.get("ICEFLOE_AIRFLOW_VENV", ".venv-airflow"))
    if not (venv / "bin" / "airflow").is_file():
        raise ConfigError(f"no Airflow in {venv}: make it with `make airflow` (or "
                          f"airflow-provider/install-airflow.sh {venv}), or point "
                          "--airflow-venv / ICEFLOE_AIRFLOW_VENV at one")
    return venv.resolve()


class Airflow:
    """``airflow`` commands with a home of the demo's own.

    Args:
        venv: The Airflow virtualenv.
        home: ``AIRFLOW_HOME`` (made and migrated on first use).
        url: icefloe's URL, for the ``icefloe_default`` connection.
        api_key: The key the connection carries.
    """

    def __init__(self, venv: Path, home: Path, url: str, api_key: str) -> None:
        self.venv = venv
        self.home = home
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.env = {
            **os.environ, "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
            # A connection from the environment: the key is never written to Airflow's DB.
            "AIRFLOW_CONN_ICEFLOE_DEFAULT": json.dumps(
                {"conn_type": "icefloe", "host": url, "password": api_key}),
        }

    def _airflow(self, *args: str, env: dict[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.venv / "bin" / "airflow"), *args],
                              env={**self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=1800, check=False)

    def migrate(self) -> None:
        """Create or upgrade Airflow's own database."""
        done = self._airflow("db", "migrate")
        if done.returncode != 0:
            raise ConfigError(f"airflow db migrate failed: {done.stderr.strip()[-800:]}")

    def test(self, dag_id: str, env: dict[str, str], order: Sequence[str] = ()) -> DagRun:
        """Run a DAG once (``airflow dags test``) and read back how each task ended, listed
        in ``order`` (others after)."""
        started = time.monotonic()
        before = self._last_run_id(dag_id)
        done = self._airflow("dags", "test", dag_id, env=env)
        with sqlite3.connect(self.home / "airflow.db") as db:
            run = db.execute("SELECT run_id, state FROM dag_run WHERE dag_id = ? AND id > ? "
                             "ORDER BY id DESC LIMIT 1", (dag_id, before)).fetchone()
            if run is None:  # never an earlier demo's run in its place
                raise ConfigError(f"airflow did not run {dag_id} (exit {done.returncode}): "
                                  f"{(done.stderr or done.stdout).strip()[-1500:]}")
            rows = db.execute(
                "SELECT task_id, state, duration FROM task_instance WHERE dag_id = ? AND "
                "run_id = ?", (dag_id, run[0])).fetchall()
        rank = {t: i for i, t in enumerate(order)}
        tasks = sorted((Task(t, s or "none", d or 0.0) for t, s, d in rows),
                       key=lambda t: rank.get(t.task_id, len(rank)))
        return DagRun(dag_id, run[1], tasks, time.monotonic() - started,
                      done.stdout + done.stderr)

    def _last_run_id(self, dag_id: str) -> int:
        database = self.home / "airflow.db"
        if not database.is_file():
            return 0
        with sqlite3.connect(database) as db:
            row = db.execute("SELECT max(id) FROM dag_run WHERE dag_id = ?",
                             (dag_id,)).fetchone()
        return int(row[0] or 0)


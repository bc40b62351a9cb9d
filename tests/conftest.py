"""Shared fixtures: a fresh icefloe home per test, one Spark session per test run."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from icefloe.config import Settings, load_settings
from icefloe.lakehouse import Lakehouse

ICEFLOE = [sys.executable, "-m", "icefloe.cli.main"]
# `make test` runs the suite in two processes (pytest-xdist, --dist loadfile): each module
# runs whole in one of them, so module fixtures are made once and tests keep their order.
# The longest modules go first, so neither process is left with one of them at the end
# (`make test` passes --no-loadscope-reorder: xdist would order modules by test count).
LONGEST_FIRST = ("tests/e2e/test_demo.py",
                 "tests/e2e/test_real_world_names.py", "tests/e2e/test_training_cli.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Start the longest modules first (xdist hands out modules in this order)."""
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the rest keep their order


def open_to_jobs(path: Path) -> None:
    """As root, job runs execute as an unprivileged user (``nobody`` by default), which must
    be able to pass through the test's temporary folders to reach a home inside them.
    pytest makes them 0700; let others traverse (not list) them, as a real home's parents."""
    if os.geteuid() != 0:
        return
    for folder in (path, *path.parents):
        if not str(folder).startswith(tempfile.gettempdir() + "/") or folder.stat().st_uid:
            continue
        mode = folder.stat().st_mode & 0o7777
        if not mode & 0o001:
            folder.chmod(mode | 0o011)


@pytest.fixture(autouse=True)
def _reachable_by_the_job_user(tmp_path: Path) -> None:
    open_to_jobs(tmp_path)


@pytest.fixture(autouse=True)
def _no_subscribers_left_behind() -> Iterator[None]:
    """An app made without its lifespan leaves its happenings subscribers installed: the
    next test picks its own again."""
    yield
    from icefloe import happenings

    happenings.reset()


@pytest.fixture(scope="session", autouse=True)
def _interpreter_reachable_by_the_job_user() -> None:
    """The job user runs icefloe's interpreter; a pyenv Python under /root (0700) is out of
    its reach, as `icefloe doctor` says. Let it traverse the folders on the way (as root)."""
    from icefloe.home import let_jobs_reach_python

    let_jobs_reach_python()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings whose home is a fresh folder (no environment leaks in), on the stores
    under test (see tests/postgres.py)."""
    from tests.postgres import home_settings

    return home_settings(tmp_path / "home")


@pytest.fixture
def lakehouse(settings: Settings) -> Lakehouse:
    """A lakehouse in a fresh home."""
    return Lakehouse(settings)


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real S3-compatible server on 127.0.0.1 (moto's), one per test process."""
    from tests.objectstore import run_server

    yield from run_server(tmp_path_factory.mktemp("s3") / "moto.log")


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One local Spark session for the whole run (starting one takes seconds)."""
    from icefloe.compute import spark_session

    home = tmp_path_factory.mktemp("spark-home")
    session = spark_session(
        load_settings(env={}, home=home, spark_master="local[2]", spark_driver_memory="1g"),
        app_name="icefloe-tests",
    )
    yield session
    session.stop()


def run_cli(
    args: list[str], home: Path, *, check: bool = False, env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run the real ``icefloe`` command in a subprocess with the given home."""
    full_env = {**os.environ, "ICEFLOE_HOME": str(home), "COLUMNS": "200", **(env or {})}
    proc = subprocess.run(
        [*ICEFLOE, *args], capture_output=True, text=True, env=full_env, timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"icefloe {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@pytest.fixture(scope="session")
def airflow_venv() -> Path:
    """Airflow 3.3 in its own virtualenv with icefloe's and Cloudera's providers (made once
    by airflow-provider/install-airflow.sh; $ICEFLOE_AIRFLOW_VENV or ./.venv-airflow)."""
    import fcntl

    repo = Path(__file__).resolve().parents[1]
    venv = Path(os.environ.get("ICEFLOE_AIRFLOW_VENV", repo / ".venv-airflow"))
    # One install at a time: the suite's two processes may both need it at once.
    with open(tempfile.gettempdir() + "/icefloe-airflow-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run(["bash", str(repo / "airflow-provider" / "install-airflow.sh"),
                        str(venv)], check=True, timeout=900)
    return venv


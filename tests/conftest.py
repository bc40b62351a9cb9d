"""Shared fixtures: a fresh icefloe home per test, one Spark session per test run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from icefloe.config import Settings, load_settings
from icefloe.lakehouse import Lakehouse

ICEFLOE = [sys.executable, "-m", "icefloe.cli.main"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings whose home is a fresh folder (no environment leaks in)."""
    return load_settings(env={}, home=tmp_path / "home")


@pytest.fixture
def lakehouse(settings: Settings) -> Lakehouse:
    """A lakehouse in a fresh home."""
    return Lakehouse(settings)


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
    args: list[str], home: Path, *, check: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``icefloe`` command in a subprocess with the given home."""
    full_env = {**os.environ, "ICEFLOE_HOME": str(home), "COLUMNS": "200", **(env or {})}
    proc = subprocess.run(
        [*ICEFLOE, *args], capture_output=True, text=True, env=full_env, timeout=300, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"icefloe {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc

"""Throwaway databases on the test PostgreSQL (`.ci/run` starts it and sets
ICEFLOE_TEST_POSTGRES_URL).

With ICEFLOE_TEST_STORES=postgres (the second pass of `.ci/run`), every home a test makes
through :func:`home_settings` or :class:`tests.servers.Server` keeps its catalog, MLflow store
and platform DB in a database of its own there (one ``database_url``), instead of SQLite
files.
"""

from __future__ import annotations

import atexit
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from icefloe.config import Settings, load_settings

POSTGRES = os.environ.get("ICEFLOE_TEST_POSTGRES_URL", "")
STORES = os.environ.get("ICEFLOE_TEST_STORES", "sqlite")
_admin: Engine | None = None


def admin() -> Engine:
    """An AUTOCOMMIT engine on the test server's own database (to make and drop others)."""
    global _admin
    if _admin is None:
        _admin = create_engine(POSTGRES.replace("postgresql://", "postgresql+psycopg://", 1),
                               isolation_level="AUTOCOMMIT")
    return _admin


def create_database(prefix: str) -> tuple[str, str]:
    """A new empty database: ``(name, URL)``."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin().connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return name, POSTGRES.rsplit("/", 1)[0] + f"/{name}"


def drop_database(name: str) -> None:
    """Drop a database made by :func:`create_database`, whoever is still connected."""
    with admin().connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """Make a new database, yield its URL, drop it afterwards (skips without a server)."""
    if not POSTGRES:
        pytest.skip("ICEFLOE_TEST_POSTGRES_URL not set (.ci/run sets it)")
    name, url = create_database(prefix)
    try:
        yield url
    finally:
        drop_database(name)


def database_url_for_home() -> str:
    """"" on SQLite stores; else the URL of a new database, dropped when the tests end."""
    if STORES != "postgres":
        return ""
    if not POSTGRES:
        raise RuntimeError("ICEFLOE_TEST_STORES=postgres needs ICEFLOE_TEST_POSTGRES_URL")
    name, url = create_database("icefloe_home")
    atexit.register(drop_database, name)
    return url


def home_settings(home: Path, **overrides: Any) -> Settings:
    """Settings of a fresh home (no environment leaks in) on the stores under test; the
    home's config file says where they are, so every process using the home agrees."""
    url = database_url_for_home()
    if url:
        home.mkdir(parents=True, exist_ok=True)
        config = home / "config.toml"
        if not config.exists():
            config.write_text(f'[icefloe]\ndatabase_url = "{url}"\n')
    return load_settings(env={}, home=home, **overrides)

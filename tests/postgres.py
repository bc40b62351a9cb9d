"""A throwaway database on the test PostgreSQL (`.ci/run` starts it and sets
ICEFLOE_TEST_POSTGRES_URL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text

POSTGRES = os.environ.get("ICEFLOE_TEST_POSTGRES_URL", "")


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """Make a new database, yield its URL, drop it afterwards (skips without a server)."""
    if not POSTGRES:
        pytest.skip("ICEFLOE_TEST_POSTGRES_URL not set (.ci/run sets it)")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES.replace("postgresql://", "postgresql+psycopg://", 1),
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()

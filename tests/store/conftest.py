"""The store suite runs once per backend: SQLite always, Postgres when the server is given.

`.ci/run` starts Postgres with `.ci/postgres` and sets ICEFLOE_TEST_POSTGRES_URL, so CI runs
every store test on both backends.
"""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from icefloe.store.db import Database

POSTGRES = os.environ.get("ICEFLOE_TEST_POSTGRES_URL", "")


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty platform DB on each backend."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'platform.db'}")
        yield database
        database.dispose()
        return
    if not POSTGRES:
        pytest.skip("ICEFLOE_TEST_POSTGRES_URL not set (.ci/run sets it)")
    name = f"icefloe_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES.replace("postgresql://", "postgresql+psycopg://", 1),
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    database = Database(POSTGRES.rsplit("/", 1)[0] + f"/{name}")
    yield database
    database.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()

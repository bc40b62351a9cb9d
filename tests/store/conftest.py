"""The store suite runs once per backend: SQLite always, Postgres when the server is given.

`.ci/run` starts Postgres with `.ci/postgres` and sets ICEFLOE_TEST_POSTGRES_URL, so CI runs
every store test on both backends.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from icefloe.store.db import Database
from tests.postgres import fresh_database


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty platform DB on each backend."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'platform.db'}")
        yield database
        database.dispose()
        return
    with fresh_database("icefloe_test") as url:
        database = Database(url)
        yield database
        database.dispose()

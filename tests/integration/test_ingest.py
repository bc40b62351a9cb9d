"""Incremental loads from a real PostgreSQL table into Iceberg: new rows only, exactly once
across reruns, a failed load, a race and a rollback; the CLI as a job would run it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from icefloe.config import Settings
from icefloe.errors import ConflictError, InvalidInputError, SchemaMismatchError
from icefloe.lakehouse import Lakehouse
from icefloe.lakehouse.ingest import (
    Source,
    commit_increment,
    ingest,
    last_watermark,
    read_increment,
)
from tests.conftest import run_cli
from tests.postgres import fresh_database

T, STAGING = "lending.loans_ops", "staging.loans_ops"


@pytest.fixture
def ops_db() -> Iterator[str]:
    """A fresh database on the test PostgreSQL with an operational table ``ops.loans``."""
    with fresh_database("icefloe_ops") as url:
        _sql(url, "CREATE SCHEMA ops; CREATE TABLE ops.loans (id bigint PRIMARY KEY, "
                  "amount numeric(12, 2) NOT NULL, status text, created_at timestamptz "
                  "NOT NULL)")
        yield url


def _sql(url: str, statements: str) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        for statement in statements.split(";"):
            if statement.strip():
                conn.execute(text(statement))
    engine.dispose()


def _add(url: str, first: int, count: int) -> None:
    _sql(url, "INSERT INTO ops.loans (id, amount, status, created_at) SELECT g, g * 10.5, "
              f"'current', now() FROM generate_series({first}, {first + count - 1}) g")


def _ids(lakehouse: Lakehouse, table: str = T) -> list[int]:
    return sorted(lakehouse.read(table).column("id").to_pylist())


def test_each_load_brings_only_new_rows_once(ops_db: str, lakehouse: Lakehouse) -> None:
    source = Source(ops_db, "ops.loans", "id")
    _add(ops_db, 1, 5)
    first = ingest(lakehouse, source, T, staging=STAGING)
    assert (first.rows, first.watermark_before, first.watermark_after) == (5, None, 5)
    assert _ids(lakehouse) == [1, 2, 3, 4, 5] and _ids(lakehouse, STAGING) == [1, 2, 3, 4, 5]
    assert lakehouse.read(T).column("amount").to_pylist()[0] == Decimal("10.50")
    again = ingest(lakehouse, source, T, staging=STAGING)
    assert again.rows == 0 and again.snapshot_id is None  # nothing new: nothing committed
    _add(ops_db, 6, 3)
    second = ingest(lakehouse, source, T, staging=STAGING, limit=2)
    assert (second.rows, second.watermark_before, second.watermark_after) == (2, 5, 7)
    assert _ids(lakehouse, STAGING) == [6, 7]  # the staging table holds this load's rows
    assert ingest(lakehouse, source, T).rows == 1
    assert _ids(lakehouse) == list(range(1, 9))
    assert last_watermark(lakehouse.table(T), source) == 8
    summary = lakehouse.table(T).current_snapshot().summary.additional_properties
    assert summary["icefloe.ingest.source"] == f"{ops_db} ops.loans"


def test_a_failed_load_changes_nothing_and_the_rerun_loads_it_once(
        ops_db: str, lakehouse: Lakehouse) -> None:
    source = Source(ops_db, "ops.loans", "id")
    _add(ops_db, 1, 3)
    ingest(lakehouse, source, T)
    before = lakehouse.current_snapshot(T).snapshot_id
    _sql(ops_db, "ALTER TABLE ops.loans ADD COLUMN branch text")
    _add(ops_db, 4, 3)
    with pytest.raises(SchemaMismatchError, match="branch"):
        ingest(lakehouse, source, T, staging=STAGING)
    assert lakehouse.current_snapshot(T).snapshot_id == before
    assert last_watermark(lakehouse.table(T), source) == 3
    done = ingest(lakehouse, source, T, staging=STAGING, evolve=True)
    assert (done.rows, done.watermark_before) == (3, 3)
    assert _ids(lakehouse) == [1, 2, 3, 4, 5, 6]


def test_of_two_racing_loads_only_the_first_commits(ops_db: str, lakehouse: Lakehouse) -> None:
    source = Source(ops_db, "ops.loans", "id")
    _add(ops_db, 1, 2)
    ingest(lakehouse, source, T)
    _add(ops_db, 3, 2)
    slow = read_increment(source, 2)  # a load that read, then lost the race
    ingest(lakehouse, source, T)
    with pytest.raises(ConflictError, match="committed first"):
        commit_increment(lakehouse, source, T, slow, 2)
    assert _ids(lakehouse) == [1, 2, 3, 4]


def test_a_rollback_moves_the_watermark_back(ops_db: str, lakehouse: Lakehouse) -> None:
    source = Source(ops_db, "ops.loans", "id")
    _add(ops_db, 1, 2)
    first = ingest(lakehouse, source, T)
    _add(ops_db, 3, 2)
    ingest(lakehouse, source, T)
    lakehouse.rollback(T, first.snapshot_id)
    redo = ingest(lakehouse, source, T)
    assert (redo.rows, redo.watermark_before) == (2, 2) and _ids(lakehouse) == [1, 2, 3, 4]


def test_names_are_checked_and_never_sql(ops_db: str) -> None:
    for table, column in (("ops.loans; DROP TABLE ops.loans", "id"), ("a.b.c", "id"),
                          ("ops.loans", "id OR 1=1")):
        with pytest.raises(InvalidInputError):
            Source(ops_db, table, column)


def test_the_cli_loads_as_a_job_would_and_hides_the_password(
        ops_db: str, settings: Settings, tmp_path: Path) -> None:
    _add(ops_db, 1, 4)
    # A URL with a password, as a job's secret variable would hold it (trust auth ignores it).
    url = ops_db.replace("postgres@", "postgres:s3cret-pw@", 1)
    env = {"OPS_DB": url}
    run_cli(["init"], settings.home, check=True)
    args = ["table", "ingest", T, "--source-table", "ops.loans", "--watermark", "id",
            "--staging", STAGING, "--source-url-env", "OPS_DB", "--limit", "3"]
    done = run_cli(args, settings.home, env=env, check=True)
    assert "3 new rows from ops.loans into lending.loans_ops" in done.stderr
    assert "watermark none -> 3" in done.stderr
    assert "s3cret-pw" not in done.stdout + done.stderr
    recorded = Lakehouse(settings).table(T).current_snapshot().summary.additional_properties
    assert recorded["icefloe.ingest.source"].startswith("postgresql://postgres:***@")
    again = run_cli([*args, "--json"], settings.home, env=env, check=True)
    assert json.loads(again.stdout)["rows"] == 1
    quiet = run_cli(["table", "ingest", T, "--source-table", "ops.loans", "--watermark", "id",
                     "--source-url-env", "OPS_DB"], settings.home, env=env, check=True)
    assert "no new rows in ops.loans after watermark 4" in quiet.stderr
    missing = run_cli(["table", "ingest", T, "--source-table", "ops.loans", "--watermark",
                       "id", "--source-url-env", "NOT_SET_ANYWHERE"], settings.home)
    assert missing.returncode != 0 and "NOT_SET_ANYWHERE" in missing.stderr

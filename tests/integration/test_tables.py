"""Tables on a real PyIceberg SQL catalog (SQLite) and real Parquet files."""

import datetime as dt
import decimal
import sqlite3
import time

import pandas as pd
import pyarrow as pa
import pytest
from pyiceberg.types import DoubleType

from icefloe.errors import (
    ConflictError,
    InvalidInputError,
    InvalidNameError,
    NoSuchNamespaceError,
    NoSuchSnapshotError,
    NoSuchTableError,
    SchemaMismatchError,
)
from icefloe.lakehouse import Lakehouse

T = "lending.loans"


def _rows(n: int, start: int = 0) -> pa.Table:
    return pa.table(
        {"id": pa.array(range(start, start + n), pa.int64()), "v": [f"r{i}" for i in range(n)]}
    )


def test_catalog_sqlite_uses_wal(lakehouse: Lakehouse) -> None:
    lakehouse.create_namespace("lending")
    with sqlite3.connect(lakehouse.settings.catalog_db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_create_append_overwrite_and_history(lakehouse: Lakehouse) -> None:
    s1 = lakehouse.write(T, _rows(3), "create").snapshot
    s2 = lakehouse.write(T, _rows(2, 10), "append").snapshot
    s3 = lakehouse.write(T, _rows(1, 100), "overwrite").snapshot
    assert (s1.total_rows, s2.total_rows, s3.total_rows) == (3, 5, 1)
    assert s2.parent_id == s1.snapshot_id and s2.added_rows == 2
    history = lakehouse.snapshots(T)
    # PyIceberg commits an overwrite as a delete snapshot followed by the new data's snapshot.
    assert [h.snapshot_id for h in history][:2] == [s1.snapshot_id, s2.snapshot_id]
    assert history[-1].snapshot_id == s3.snapshot_id
    assert [h.operation for h in history][2] == "delete"
    assert [h.current for h in history] == [False, False, False, True]
    assert lakehouse.read(T).column("id").to_pylist() == [100]
    assert sorted(lakehouse.read(T, snapshot_id=s2.snapshot_id).column("id").to_pylist()) == [
        0, 1, 2, 10, 11,
    ]


def test_create_from_pandas_keeps_types(lakehouse: Lakehouse) -> None:
    df = pd.DataFrame(
        {
            "when": pd.to_datetime(["2024-01-01 10:00:00.123456", None]),
            "amount": [decimal.Decimal("1.10"), None],
            "name": ["a", None],
            "x": [1.5, float("nan")],
        }
    )
    lakehouse.write("t.p", df, "create")
    back = lakehouse.read("t.p")
    assert back.schema.field("when").type == pa.timestamp("us")
    assert back.column("when").to_pylist()[0] == dt.datetime(2024, 1, 1, 10, 0, 0, 123456)
    assert back.column("name").to_pylist() == ["a", None]


def test_create_twice_is_a_conflict(lakehouse: Lakehouse) -> None:
    lakehouse.write(T, _rows(1), "create")
    with pytest.raises(ConflictError, match="already exists"):
        lakehouse.write(T, _rows(1), "create")


def test_auto_mode_creates_then_appends(lakehouse: Lakehouse) -> None:
    assert lakehouse.write(T, _rows(2), "auto").mode == "create"
    assert lakehouse.write(T, _rows(2), "auto").snapshot.total_rows == 4


def test_new_column_refused_without_evolve_leaves_table_unchanged(lakehouse: Lakehouse) -> None:
    before = lakehouse.write(T, _rows(3), "create").snapshot
    files_before = lakehouse.table(T).metadata_location
    bad = _rows(2).append_column("home_ownership", pa.array(["RENT", "OWN"]))
    with pytest.raises(SchemaMismatchError, match="'home_ownership'"):
        lakehouse.write(T, bad, "append")
    assert lakehouse.current_snapshot(T).snapshot_id == before.snapshot_id
    assert lakehouse.table(T).metadata_location == files_before
    assert len(lakehouse.snapshots(T)) == 1


def test_evolve_adds_columns_by_name_and_old_snapshot_keeps_old_schema(
    lakehouse: Lakehouse,
) -> None:
    s1 = lakehouse.write(T, _rows(3), "create").snapshot
    bad = pa.table({"home_ownership": ["RENT"], "id": pa.array([9], pa.int64())})
    result = lakehouse.write(T, bad, "append", evolve=True)
    assert result.new_columns == ("home_ownership",)
    now = lakehouse.read(T)
    assert now.column_names == ["id", "v", "home_ownership"]
    assert sorted(now.column("home_ownership").to_pylist(), key=str) == [None, None, None, "RENT"]
    assert lakehouse.read(T, snapshot_id=s1.snapshot_id).column_names == ["id", "v"]


def test_widening_needs_evolve_when_values_do_not_fit(lakehouse: Lakehouse) -> None:
    lakehouse.write(T, pa.table({"n": pa.array([1], pa.int32())}), "create")
    lakehouse.write(T, pa.table({"n": pa.array([2], pa.int64())}))  # fits: cast down
    big = pa.table({"n": pa.array([2**40], pa.int64())})
    with pytest.raises(SchemaMismatchError, match="'n'.*--evolve"):
        lakehouse.write(T, big)
    result = lakehouse.write(T, big, evolve=True)
    assert result.widened_columns == ("n",)
    assert sorted(lakehouse.read(T).column("n").to_pylist()) == [1, 2, 2**40]
    with pytest.raises(SchemaMismatchError, match="'n' is string"):
        lakehouse.write(T, pa.table({"n": ["x"]}), evolve=True)


def test_read_at_tag_and_time(lakehouse: Lakehouse) -> None:
    s1 = lakehouse.write(T, _rows(3), "create").snapshot
    time.sleep(0.01)
    s2 = lakehouse.write(T, _rows(2, 10)).snapshot
    lakehouse.tag(T, "first", s1.snapshot_id)
    assert lakehouse.read(T, tag="first").num_rows == 3
    assert lakehouse.read(T, as_of=s1.timestamp_ms).num_rows == 3
    assert lakehouse.read(T, as_of=s2.time).num_rows == 5
    assert lakehouse.read(T, limit=1).num_rows == 1
    assert lakehouse.tags(T) == [{"tag": "first", "snapshot_id": s1.snapshot_id}]
    # the same tag on the same snapshot again is fine; on another it is a conflict
    lakehouse.tag(T, "first", s1.snapshot_id)
    with pytest.raises(ConflictError, match="'first' already exists"):
        lakehouse.tag(T, "first", s2.snapshot_id)


def test_rollback_and_roll_forward_keep_history(lakehouse: Lakehouse) -> None:
    s1 = lakehouse.write(T, _rows(5), "create").snapshot
    s2 = lakehouse.write(T, _rows(1, 50).append_column("c", pa.array(["x"])), evolve=True).snapshot
    info = lakehouse.rollback(T, s1.snapshot_id).snapshot
    assert info.current and info.snapshot_id == s1.snapshot_id
    current = lakehouse.read(T)
    assert current.num_rows == 5 and "c" not in current.column_names
    assert lakehouse.read(T, snapshot_id=s2.snapshot_id).num_rows == 6
    assert {h.snapshot_id for h in lakehouse.snapshots(T)} == {s1.snapshot_id, s2.snapshot_id}
    lakehouse.rollback(T, s2.snapshot_id)  # roll forward
    assert lakehouse.read(T).num_rows == 6
    assert lakehouse.current_snapshot(T).snapshot_id == s2.snapshot_id


def _columns(lakehouse: Lakehouse) -> list[str]:
    """The table's current schema: what the next write is checked against."""
    return lakehouse.table(T).schema().column_names


def test_rollback_restores_the_snapshots_schema_so_the_evolve_guard_is_back(
        lakehouse: Lakehouse) -> None:
    s1 = lakehouse.write(T, _rows(5), "create").snapshot
    bad = _rows(2, 50).append_column("c", pa.array(["x", "y"]))
    with pytest.raises(SchemaMismatchError) as refused:
        lakehouse.write(T, bad)
    assert "'c'" in refused.value.message and "--evolve" in refused.value.message
    s2 = lakehouse.write(T, bad, evolve=True).snapshot
    assert _columns(lakehouse) == ["id", "v", "c"] and s2.schema_id != s1.schema_id
    commits = len(lakehouse.table(T).metadata.metadata_log)

    done = lakehouse.rollback(T, s1.snapshot_id)
    assert done.snapshot.current and done.snapshot.snapshot_id == s1.snapshot_id
    assert done.previous_snapshot_id == s2.snapshot_id
    assert (done.previous_schema_id, done.schema_id) == (s2.schema_id, s1.schema_id)
    assert done.schema_changed and done.columns_removed == ("c",)
    assert done.columns_restored == ()
    # The snapshot and the schema moved in one commit.
    assert len(lakehouse.table(T).metadata.metadata_log) == commits + 1
    assert _columns(lakehouse) == ["id", "v"]
    assert lakehouse.read(T).equals(lakehouse.read(T, snapshot_id=s1.snapshot_id))
    assert lakehouse.read(T).to_pylist() == _rows(5).to_pylist()

    # The guard is back: the same batch is refused the same way, and changes nothing.
    with pytest.raises(SchemaMismatchError) as again:
        lakehouse.write(T, bad)
    assert again.value.message == refused.value.message
    assert lakehouse.current_snapshot(T).snapshot_id == s1.snapshot_id

    # Rolling back to where the table already is, schema and all, commits nothing.
    same = lakehouse.rollback(T, s1.snapshot_id)
    assert not same.schema_changed and same.previous_snapshot_id == s1.snapshot_id
    assert len(lakehouse.table(T).metadata.metadata_log) == commits + 1

    # Roll forward: the evolved snapshot brings its columns back.
    forward = lakehouse.rollback(T, s2.snapshot_id)
    assert forward.columns_restored == ("c",) and forward.schema_id == s2.schema_id
    assert _columns(lakehouse) == ["id", "v", "c"] and lakehouse.read(T).num_rows == 7

    # With --evolve again after a rollback, the column is added again (a new field id).
    lakehouse.rollback(T, s1.snapshot_id)
    s3 = lakehouse.write(T, bad, evolve=True)
    assert s3.new_columns == ("c",) and s3.snapshot.total_rows == 7
    for snap in (s2, s3.snapshot):  # each snapshot reads its own column c
        values = lakehouse.read(T, snapshot_id=snap.snapshot_id).column("c").to_pylist()
        assert sorted(v for v in values if v is not None) == ["x", "y"]


def test_rollback_with_keep_schema_moves_only_the_snapshot(lakehouse: Lakehouse) -> None:
    s1 = lakehouse.write(T, _rows(5), "create").snapshot
    bad = _rows(2, 50).append_column("c", pa.array(["x", "y"]))
    s2 = lakehouse.write(T, bad, evolve=True).snapshot
    kept = lakehouse.rollback(T, s1.snapshot_id, keep_schema=True)
    assert kept.snapshot.snapshot_id == s1.snapshot_id
    assert not kept.schema_changed and kept.schema_id == s2.schema_id
    assert kept.columns_removed == ()
    assert _columns(lakehouse) == ["id", "v", "c"]  # the column stays in the schema
    assert "c" not in lakehouse.read(T).column_names  # reads show the snapshot's own columns
    # ...so the batch goes in without evolve: what --keep-schema is for.
    assert lakehouse.write(T, bad).snapshot.total_rows == 7
    # A later rollback without it restores the snapshot's schema.
    assert lakehouse.rollback(T, s1.snapshot_id).columns_removed == ("c",)


def test_errors_name_the_thing_and_change_nothing(lakehouse: Lakehouse) -> None:
    s1 = lakehouse.write(T, _rows(2), "create").snapshot
    with pytest.raises(NoSuchTableError, match="lending.nope"):
        lakehouse.read("lending.nope")
    with pytest.raises(NoSuchNamespaceError, match="'ghost'"):
        lakehouse.read("ghost.loans")
    with pytest.raises(NoSuchSnapshotError, match="snapshot 123 is not in the history of " + T):
        lakehouse.read(T, snapshot_id=123)
    with pytest.raises(NoSuchSnapshotError, match="snapshot 123"):
        lakehouse.rollback(T, 123)
    with pytest.raises(NoSuchSnapshotError, match="tag 'v9'"):
        lakehouse.read(T, tag="v9")
    with pytest.raises(NoSuchSnapshotError, match="no snapshot at or before"):
        lakehouse.read(T, as_of="2000-01-01T00:00:00Z")
    with pytest.raises(InvalidNameError):
        lakehouse.write("../x", _rows(1), "create")
    with pytest.raises(InvalidInputError, match="unknown column"):
        lakehouse.read(T, columns=["nope"])
    with pytest.raises(InvalidInputError, match="write mode"):
        lakehouse.write(T, _rows(1), "upsert")
    with pytest.raises(InvalidInputError, match="only one"):
        lakehouse.read(T, snapshot_id=s1.snapshot_id, tag="x")
    assert [h.snapshot_id for h in lakehouse.snapshots(T)] == [s1.snapshot_id]


def test_list_tables_and_drop(lakehouse: Lakehouse) -> None:
    lakehouse.write(T, _rows(4), "create")
    lakehouse.write("other.t", _rows(1), "create")
    listed = {t["table"]: t for t in lakehouse.tables()}
    assert set(listed) == {"lending.loans", "other.t"}
    assert listed[T]["rows"] == 4 and listed[T]["columns"] == 2
    assert [t["table"] for t in lakehouse.tables("other")] == ["other.t"]
    lakehouse.drop("other.t")
    assert [t["table"] for t in lakehouse.tables()] == [T]


def test_evolve_with_integer_data_for_a_double_column(lakehouse: Lakehouse) -> None:
    lakehouse.write(T, pa.table({"inc": [1.5]}), "create")
    batch = pa.table({"inc": pa.array([7], pa.int64()), "home": ["RENT"]})
    result = lakehouse.write(T, batch, evolve=True)
    assert result.new_columns == ("home",) and result.widened_columns == ()
    assert lakehouse.table(T).schema().find_field("inc").field_type == DoubleType()
    assert sorted(lakehouse.read(T).column("inc").to_pylist()) == [1.5, 7.0]

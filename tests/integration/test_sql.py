"""DuckDB SQL over lakehouse tables."""

import datetime as dt
import decimal
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pytest

from icefloe.errors import InvalidInputError, NoSuchTableError, QueryError
from icefloe.lakehouse import Lakehouse, sql
from icefloe.lakehouse.layout import plan_snapshot_files
from icefloe.lakehouse.names import TableName
from icefloe.lakehouse.sql import parse_pin, referenced_tables, view_sql
from tests.people import member_of


def test_referenced_tables_ignores_strings_and_comments() -> None:
    known = {TableName("a", "b"), TableName("c", "d")}
    q = "SELECT 'a.b' FROM c.d -- a.b\n JOIN \"c\".\"d\" x ON 1=1 /* a.b */"
    assert referenced_tables(q, known) == [TableName("c", "d")]


def test_sql_joins_tables_and_pins_snapshots(lakehouse: Lakehouse) -> None:
    s1 = lakehouse.write("shop.orders", pa.table({"cust": [1, 1, 2], "amt": [5.0, 7.0, 1.0]}),
                         "create").snapshot
    lakehouse.write("shop.orders", pa.table({"cust": [2], "amt": [10.0]}))
    lakehouse.write("shop.customers", pa.table({"cust": [1, 2], "name": ["ann", "bob"]}), "create")
    q = """SELECT c.name, sum(o.amt) AS total FROM shop.orders o
           JOIN shop.customers c USING (cust) GROUP BY 1 ORDER BY 1"""
    assert lakehouse.sql(q).to_pylist() == [
        {"name": "ann", "total": 12.0}, {"name": "bob", "total": 11.0}
    ]
    pinned = lakehouse.sql(q, {"shop.orders": s1.snapshot_id})
    assert pinned.column("total").to_pylist() == [12.0, 1.0]
    lakehouse.tag("shop.orders", "before", s1.snapshot_id)
    before = lakehouse.sql("SELECT count(*) n FROM shop.orders", {"shop.orders": "before"})
    assert before.to_pylist() == [{"n": 3}]


def test_sql_errors(lakehouse: Lakehouse) -> None:
    lakehouse.write("shop.orders", pa.table({"x": [1]}), "create")
    with pytest.raises(QueryError, match="SQL error"):
        lakehouse.sql("SELEC 1")
    with pytest.raises(QueryError, match="nope"):
        lakehouse.sql("SELECT nope FROM shop.orders")
    with pytest.raises(QueryError):
        lakehouse.sql("SELECT * FROM shop.missing")
    with pytest.raises(NoSuchTableError, match="shop.missing"):
        lakehouse.sql("SELECT 1", {"shop.missing": 1})
    with pytest.raises(InvalidInputError, match="empty"):
        lakehouse.sql("  ")
    with pytest.raises(InvalidInputError, match="namespace.table=SNAPSHOT_ID"):
        parse_pin("shop.orders")
    assert parse_pin("shop.orders=12") == ("shop.orders", 12)
    assert parse_pin("shop.orders=v1") == ("shop.orders", "v1")


# Refused by the statement check (only SELECT runs) or by the file allowlist.
REFUSED = "Permission|only SELECT queries run here"


def test_sql_reads_only_the_files_of_the_snapshots_it_names(lakehouse: Lakehouse) -> None:
    lakehouse.write("shop.orders", pa.table({"x": [1]}), "create")
    (old_file,) = _data_files(lakehouse, "shop.orders")
    lakehouse.write("shop.orders", pa.table({"x": [2]}), "overwrite")
    assert old_file.exists()  # kept for time travel, but not part of the current snapshot
    with pytest.raises(QueryError, match="Permission"):
        lakehouse.sql(f"SELECT * FROM shop.orders, read_parquet('{old_file}')")
    assert lakehouse.sql(f"SELECT o.x FROM shop.orders, read_parquet('{old_file}') AS o",
                         {"shop.orders": lakehouse.snapshots("shop.orders")[0].snapshot_id}
                         ).to_pylist() == [{"x": 1}]  # pinned to it: that file is its data
    for statement in ("SET threads = 1", "PRAGMA version", "CALL pragma_version()",
                      "CREATE TABLE t AS SELECT 1", "INSTALL httpfs", "LOAD httpfs"):
        with pytest.raises(QueryError, match="only SELECT queries run here"):
            lakehouse.sql(statement)


def test_sql_cannot_touch_other_files(lakehouse: Lakehouse, tmp_path) -> None:
    lakehouse.write("shop.orders", pa.table({"x": [1]}), "create")
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    with pytest.raises(QueryError, match=REFUSED):
        lakehouse.sql(f"SELECT * FROM shop.orders, read_csv('{secret}')")
    with pytest.raises(QueryError, match=REFUSED):
        lakehouse.sql(f"COPY (SELECT * FROM shop.orders) TO '{tmp_path / 'out.csv'}'")
    with pytest.raises(QueryError):
        lakehouse.sql("SET enable_external_access = true")
    assert not (tmp_path / "out.csv").exists()


def test_sql_reads_evolved_tables_from_files(lakehouse: Lakehouse) -> None:
    lakehouse.write("t.e", pa.table({"n": pa.array([1], pa.int32()), "s": ["a"]}), "create")
    lakehouse.write("t.e", pa.table({"n": pa.array([2**40]), "new": ["x"]}), evolve=True)
    out = lakehouse.sql("SELECT n, s, new FROM t.e ORDER BY n").to_pylist()
    assert out == [{"n": 1, "s": "a", "new": None}, {"n": 2**40, "s": None, "new": "x"}]
    current = lakehouse.current_snapshot("t.e")
    files = plan_snapshot_files(lakehouse.table("t.e"), current.snapshot_id)
    assert len(files.groups) == 2
    view = view_sql(files)
    assert view is not None  # DuckDB reads the files itself
    # Cast only where the file's type is not the snapshot's: the widened int32, and the
    # nulls of the column the older file predates.
    assert sorted(part.strip().split(" FROM ")[0] for part in view[0].split("UNION ALL")) == [
        'SELECT "n", "s", "new"',
        'SELECT CAST("n" AS BIGINT) AS "n", "s", CAST(NULL AS VARCHAR) AS "new"',
    ]


def _data_files(lakehouse: Lakehouse, name: str) -> list[Path]:
    current = lakehouse.current_snapshot(name)
    assert current is not None
    files = plan_snapshot_files(lakehouse.table(name), current.snapshot_id)
    return [Path(p.removeprefix("file://")) for p in files.paths]


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_sql_cannot_overwrite_or_add_to_the_tables_data_files(lakehouse: Lakehouse) -> None:
    rows = pa.table({"x": [1, 2, 3]})
    lakehouse.write("shop.orders", rows, "create")
    snapshot_before = lakehouse.current_snapshot("shop.orders")
    (data_file,) = _data_files(lakehouse, "shop.orders")
    folder = data_file.parent
    before = _listing(folder)
    assert data_file.name in before
    for attack in [
        f"COPY (SELECT 666 AS x) TO '{data_file}' (FORMAT parquet)",
        f"COPY (SELECT x FROM shop.orders WHERE x = 1) TO '{data_file}' (FORMAT parquet)",
        f"COPY (SELECT 666 AS x) TO '{folder / 'extra.parquet'}' (FORMAT parquet)",
        f"COPY (SELECT 666 AS x) TO '{folder}' (FORMAT parquet, PARTITION_BY (x), OVERWRITE)",
        f"SELECT * FROM read_parquet('{data_file}')",
        f"ATTACH '{folder / 'db.duckdb'}' AS other",
    ]:
        with pytest.raises(QueryError, match=REFUSED):
            lakehouse.sql(attack)
    assert _listing(folder) == before  # same files, same bytes
    assert lakehouse.current_snapshot("shop.orders") == snapshot_before
    assert lakehouse.read("shop.orders").sort_by("x").to_pylist() == rows.to_pylist()
    assert lakehouse.sql("SELECT x FROM shop.orders ORDER BY x").to_pylist() == rows.to_pylist()


def test_sql_cannot_read_or_write_files_in_or_beside_the_working_directory(
    lakehouse: Lakehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lakehouse.write("shop.orders", pa.table({"x": [1]}), "create")
    work = tmp_path / "work"
    (work / ".tmp").mkdir(parents=True)  # DuckDB's default temporary folder
    (work / "x").write_text("a\n1\n")
    (work / ".tmp" / "secret.csv").write_text("a\n2\n")
    (tmp_path / "beside.csv").write_text("a\n3\n")
    monkeypatch.chdir(work)
    before = _listing(tmp_path)
    for attack in [
        "COPY (SELECT * FROM shop.orders) TO 'out.csv'",
        f"COPY (SELECT * FROM shop.orders) TO '{work / 'out.csv'}'",
        "COPY (SELECT * FROM shop.orders) TO '../out.csv'",
        "COPY (SELECT * FROM shop.orders) TO '.tmp/out.csv'",
        "COPY (SELECT * FROM shop.orders) TO 'x' (FORMAT csv)",
        "SELECT * FROM read_text('./x')",
        "SELECT * FROM read_csv('./x')",
        "SELECT * FROM read_csv('.tmp/secret.csv')",
        "SELECT * FROM read_csv('../beside.csv')",
        "SELECT * FROM glob('*')",
        "EXPORT DATABASE 'dump'",
    ]:
        with pytest.raises(QueryError, match=REFUSED):
            lakehouse.sql(attack)
    assert _listing(tmp_path) == before  # nothing written, nothing overwritten
    assert lakehouse.sql("SELECT x FROM shop.orders").to_pylist() == [{"x": 1}]
    assert _listing(tmp_path) == before  # and a query leaves no temporary files here


def test_sql_temp_folder_is_private_locked_and_removed(
    lakehouse: Lakehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kept databases get little memory, so that a query must spill.
    monkeypatch.setitem(sql.SHARED_CONFIG, "memory_limit", "16MB")
    lakehouse.write("shop.orders", pa.table({"x": [1]}), "create")
    system_temp = tmp_path / "system-temp"
    system_temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_temp))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    # Kept databases have no temporary folder at all: they never spill, nothing is shared.
    for query in ("SELECT current_setting('temp_directory') AS d FROM shop.orders",
                  "SELECT current_setting('temp_directory') AS d"):
        assert lakehouse.sql(query).to_pylist() == [{"d": ""}]
    # A query that runs out of memory there runs again in a database of its own, whose
    # temporary folder is a fresh private folder, deleted after the query.
    big = "(SELECT count(DISTINCT i) FROM range(2000000) t(i))"
    first = lakehouse.sql(
        f"SELECT current_setting('temp_directory') AS d, {big} AS n FROM shop.orders")
    second = lakehouse.sql(f"SELECT current_setting('temp_directory') AS d, {big} AS n")
    assert first.column("n").to_pylist() == second.column("n").to_pylist() == [2000000]
    folders = [Path(first.column("d")[0].as_py()), Path(second.column("d")[0].as_py())]
    assert folders[0] != folders[1]  # one folder per query
    assert all(f.parent == system_temp and not f.exists() for f in folders)
    for attack in [
        f"SET temp_directory = '{tmp_path}'",
        "RESET temp_directory",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "SELECT nope FROM shop.orders",
        f"SELECT nope, {big} FROM shop.orders",
    ]:
        with pytest.raises(QueryError):
            lakehouse.sql(attack)
    assert list(system_temp.iterdir()) == []  # removed after failed queries too
    assert list(work.iterdir()) == []  # no ./.tmp either


def test_sql_sees_every_commit_and_keeps_snapshots_apart(lakehouse: Lakehouse) -> None:
    count = "SELECT count(*) AS n, sum(x) AS s FROM shop.orders"
    s1 = lakehouse.write("shop.orders", pa.table({"x": [1, 2]}), "create").snapshot
    assert lakehouse.sql(count).to_pylist() == [{"n": 2, "s": 3}]
    lakehouse.write("shop.orders", pa.table({"x": [10]}))
    assert lakehouse.sql(count).to_pylist() == [{"n": 3, "s": 13}]
    assert lakehouse.sql(count, {"shop.orders": s1.snapshot_id}).to_pylist() == [{"n": 2, "s": 3}]
    # The files of the snapshot a query does not name stay out of reach.
    (added,) = set(_data_files(lakehouse, "shop.orders")) - {
        Path(p.removeprefix("file://")) for p in plan_snapshot_files(
            lakehouse.table("shop.orders"), s1.snapshot_id).paths}
    lakehouse.sql(f"SELECT count(*) FROM shop.orders, read_parquet('{added}')")
    with pytest.raises(QueryError, match="Permission"):
        lakehouse.sql(f"SELECT count(*) FROM shop.orders, read_parquet('{added}')",
                      {"shop.orders": s1.snapshot_id})
    lakehouse.rollback("shop.orders", s1.snapshot_id)
    assert lakehouse.sql(count).to_pylist() == [{"n": 2, "s": 3}]
    other = Lakehouse(lakehouse.settings)  # another process's commits are seen too
    other.write("shop.orders", pa.table({"x": [100]}), "overwrite")
    assert lakehouse.sql(count).to_pylist() == [{"n": 1, "s": 100}]
    other.drop("shop.orders")
    with pytest.raises(QueryError):
        lakehouse.sql(count)
    other.write("shop.orders", pa.table({"x": [7]}), "create")  # same name, new table
    assert lakehouse.sql(count).to_pylist() == [{"n": 1, "s": 7}]


def test_sql_from_many_threads_with_databases_evicted(
    lakehouse: Lakehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql, "MAX_SANDBOXES", 2)
    snaps = [lakehouse.write("shop.orders", pa.table({"x": list(range(i + 1))}),
                             "create" if i == 0 else "overwrite").snapshot for i in range(5)]
    query = "SELECT count(*) AS n FROM shop.orders"

    def count(i: int) -> int:
        snap = snaps[i % len(snaps)]
        return lakehouse.sql(query, {"shop.orders": snap.snapshot_id}).column("n")[0].as_py()

    assert lakehouse.sql(query).to_pylist() == [{"n": 5}]  # the runner exists before threads
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(count, range(40)))
    assert got == [i % len(snaps) + 1 for i in range(40)]
    runner = lakehouse._sql_runner
    assert len(runner._sandboxes.items) == 2
    runner.close()
    assert lakehouse.sql(query).to_pylist() == [{"n": 5}]  # opens what it needs again


def test_sql_matches_pyiceberg_for_typed_and_evolved_tables(lakehouse: Lakehouse) -> None:
    typed = pa.table({
        "id": pa.array([1, 2, 3], pa.int32()),
        "name": pa.array(["a", None, "\u00fc"]),
        "ts": pa.array([dt.datetime(2024, 1, 1, 12), None, dt.datetime(1999, 12, 31)],
                       pa.timestamp("us")),
        "tstz": pa.array([dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC), None,
                          dt.datetime(2001, 1, 1, tzinfo=dt.UTC)], pa.timestamp("us", tz="UTC")),
        "amount": pa.array([decimal.Decimal("1.25"), None, decimal.Decimal("-3.10")],
                           pa.decimal128(10, 2)),
        "f32": pa.array([0.5, None, 1.5], pa.float32()),
        "day": pa.array([dt.date(2024, 2, 29), None, dt.date(1970, 1, 1)], pa.date32()),
        "at": pa.array([dt.time(1, 2, 3, 4), None, dt.time(23, 59)], pa.time64("us")),
        "flag": pa.array([True, None, False]),
        "blob": pa.array([b"\x00\x01", None, b""], pa.binary()),
    })
    s1 = lakehouse.write("t.typed", typed, "create").snapshot
    extra = pa.table({"id": pa.array([2**40]), "home": ["RENT"]})
    s2 = lakehouse.write("t.typed", extra, evolve=True).snapshot  # widens id, adds home
    for snap in (s1, s2):
        iceberg = lakehouse.read("t.typed", snapshot_id=snap.snapshot_id).sort_by("id")
        duck = lakehouse.sql("SELECT * FROM t.typed ORDER BY id", {"t.typed": snap.snapshot_id})
        assert duck.cast(iceberg.schema).to_pylist() == iceberg.to_pylist()
    assert lakehouse.sql("SELECT id FROM t.typed WHERE home = 'RENT'").to_pylist() == [
        {"id": 2**40}
    ]
    ids = [uuid.uuid4().bytes, None]
    lakehouse.write("t.ids", pa.table({"u": pa.array(ids, pa.uuid())}), "create")
    assert lakehouse.sql("SELECT count(u) AS n, typeof(any_value(u)) AS t FROM t.ids").to_pylist(
    ) == [{"n": 1, "t": "UUID"}]


def test_sql_over_the_arrow_fallback_is_sandboxed_too(lakehouse: Lakehouse) -> None:
    rows = pa.table({"x": [1, 2], "tags": [["a"], ["b", "c"]]})  # nested: read by PyIceberg
    lakehouse.write("t.nested", rows, "create")
    current = lakehouse.current_snapshot("t.nested")
    assert current is not None
    assert view_sql(plan_snapshot_files(lakehouse.table("t.nested"), current.snapshot_id)) is None
    assert lakehouse.sql("SELECT x, len(tags) AS n FROM t.nested ORDER BY x").to_pylist() == [
        {"x": 1, "n": 1}, {"x": 2, "n": 2}
    ]
    (data_file,) = _data_files(lakehouse, "t.nested")
    before = data_file.read_bytes()
    with pytest.raises(QueryError, match=REFUSED):
        lakehouse.sql(f"COPY (SELECT 1 AS x) TO '{data_file}' (FORMAT parquet)")
    assert data_file.read_bytes() == before


def test_sql_through_the_api_pins_writes_a_table_and_bounds_rows(
        lakehouse: Lakehouse, settings) -> None:
    import asyncio

    import httpx

    from icefloe.api.app import create_app
    from icefloe.auth import keys

    first = lakehouse.write("shop.orders", pa.table({"cust": [1, 2, 3], "amt": [5.0, 7.0, 1.0]}),
                            "create").snapshot
    lakehouse.write("shop.orders", pa.table({"cust": [4], "amt": [9.0]}))
    app = create_app(settings, start_runner=False)
    with app.state.db.session() as s:
        _, editor = keys.create_api_key(s, "ann", "editor")
        _, viewer = keys.create_api_key(s, "vic", "viewer")
        _, outsider = keys.create_api_key(s, "otto", "editor")
        member_of(s, "ann", namespaces={"shop": "read", "reports": "write"})
        member_of(s, "vic", role="viewer")
        member_of(s, "otto", project="elsewhere", namespaces={"shop": "read"})
        _, stranger = keys.create_api_key(s, "nell", "editor")
        member_of(s, "nell", project="no-grants")

    async def calls() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            as_editor = {"Authorization": f"Bearer {editor}"}
            return [
                await client.post("/api/v2/sql", headers=as_editor, json={
                    "sql": "SELECT cust, amt FROM shop.orders ORDER BY cust",
                    "at": {"shop.orders": first.snapshot_id}, "max_rows": 2,
                    "output_table": "reports.orders_then"}),
                await client.post("/api/v2/sql", headers=as_editor, json={
                    "sql": "COPY (SELECT 1) TO 'x.csv'"}),
                await client.post("/api/v2/sql", headers=as_editor, json={
                    "sql": "SELECT 1", "output_table": "no-namespace"}),
                await client.post("/api/v2/sql", headers={"Authorization": f"Bearer {viewer}"},
                                  json={"sql": "SELECT 1 AS x", "output_table": "reports.v"}),
                await client.post("/api/v2/sql", headers={"Authorization": f"Bearer {viewer}"},
                                  json={"sql": "SELECT max(amt) AS m FROM shop.orders"}),
                # A project granted read on shop reads it, and may not write reports.
                await client.post("/api/v2/sql", headers={"Authorization": f"Bearer {outsider}"},
                                  json={"sql": "SELECT count(o.amt) AS n FROM shop.orders o"}),
                await client.post("/api/v2/sql", headers={"Authorization": f"Bearer {outsider}"},
                                  json={"sql": "SELECT 1 AS x", "output_table": "reports.x"}),
                # No grant on shop: the table does not exist for this caller, pinned or not.
                await client.post("/api/v2/sql", headers={"Authorization": f"Bearer {stranger}"},
                                  json={"sql": "SELECT * FROM shop.orders"}),
                await client.post("/api/v2/sql", headers={"Authorization": f"Bearer {stranger}"},
                                  json={"sql": "SELECT 1", "at": {"shop.orders": 1}}),
            ]

    (pinned, copy, bad_name, by_viewer, viewer_reads, granted_read, no_write, hidden,
     hidden_pin) = asyncio.run(calls())
    # A viewer's key reads through SQL (a POST that only reads) and writes nothing.
    assert viewer_reads.status_code == 200 and viewer_reads.json()["rows"] == [{"m": 9.0}]
    assert "(viewer) only reads" in by_viewer.json()["error"]["message"]
    assert granted_read.status_code == 200 and granted_read.json()["rows"] == [{"n": 4}]
    assert no_write.status_code == 403 and "reports" in no_write.json()["error"]["message"]
    # Exactly what a table that does not exist gets (no hint that it does).
    assert hidden.status_code == 422 and 'Table with name "shop.orders" does not exist' in \
        hidden.json()["error"]["message"]
    assert hidden_pin.status_code == 404 and hidden_pin.json()["error"]["message"] == \
        "table shop.orders does not exist (pinned in the query)"
    assert pinned.status_code == 200, pinned.text
    body = pinned.json()
    assert body["row_count"] == 3 and body["truncated"] is True
    assert body["rows"] == [{"cust": 1, "amt": 5.0}, {"cust": 2, "amt": 7.0}]
    assert [c["name"] for c in body["columns"]] == ["cust", "amt"]
    # The whole result, not the answered rows, is the new table's first snapshot.
    assert body["output"]["rows"] == 3
    assert lakehouse.read("reports.orders_then").num_rows == 3
    assert lakehouse.current_snapshot("reports.orders_then").snapshot_id == \
        body["output"]["snapshot_id"]
    assert copy.status_code == 422 and "SELECT" in copy.text
    assert bad_name.status_code == 422 and "no-namespace" in bad_name.text
    assert by_viewer.status_code == 403

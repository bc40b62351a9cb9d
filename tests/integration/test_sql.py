"""DuckDB SQL over lakehouse tables."""

import pyarrow as pa
import pytest

from icefloe.errors import InvalidInputError, NoSuchTableError, QueryError
from icefloe.lakehouse import Lakehouse
from icefloe.lakehouse.layout import plan_snapshot_files
from icefloe.lakehouse.names import TableName
from icefloe.lakehouse.sql import parse_pin, referenced_tables, view_sql


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


def test_sql_cannot_touch_other_files(lakehouse: Lakehouse, tmp_path) -> None:
    lakehouse.write("shop.orders", pa.table({"x": [1]}), "create")
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    with pytest.raises(QueryError, match="Permission"):
        lakehouse.sql(f"SELECT * FROM shop.orders, read_csv('{secret}')")
    with pytest.raises(QueryError, match="Permission"):
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
    assert view_sql(files) is not None  # DuckDB reads the files itself

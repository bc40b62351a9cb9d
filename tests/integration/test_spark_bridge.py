"""Spark reads and writes Iceberg tables through the bridge; all three engines agree."""

import datetime as dt
import decimal

import pyarrow as pa
import pytest

from icefloe.compute.bridge import read_table, spark_to_arrow, write_table
from icefloe.errors import InvalidInputError, NoSuchSnapshotError, SchemaMismatchError
from icefloe.lakehouse import Lakehouse

pytestmark = pytest.mark.spark

TYPED = pa.table(
    {
        "id": pa.array([1, 2, 3], pa.int32()),
        "name": pa.array(["a", None, "ü"], pa.string()),
        "ts": pa.array(
            [dt.datetime(2024, 1, 1, 12), None, dt.datetime(1999, 12, 31, 23, 59, 59, 123456)],
            pa.timestamp("us"),
        ),
        "tstz": pa.array(
            [dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC), None,
             dt.datetime(2001, 1, 1, tzinfo=dt.UTC)],
            pa.timestamp("us", tz="UTC"),
        ),
        "amount": pa.array([decimal.Decimal("1.25"), None, decimal.Decimal("-3.10")],
                           pa.decimal128(10, 2)),
        "score": pa.array([0.5, None, float("inf")], pa.float64()),
        "day": pa.array([dt.date(2024, 2, 29), None, dt.date(1970, 1, 1)], pa.date32()),
        "flag": pa.array([True, None, False]),
    }
)


def _canonical(table: pa.Table) -> list[tuple]:
    """Rows as sorted tuples, timestamps normalised to UTC-aware for comparison."""
    rows = []
    for row in table.to_pylist():
        rows.append(tuple(sorted(row.items())))
    return sorted(rows, key=repr)


def _same_rows(a: pa.Table, b: pa.Table) -> None:
    assert a.column_names == b.column_names
    assert _canonical(a) == _canonical(b)


def test_spark_duckdb_and_pyiceberg_agree_at_each_snapshot(spark, lakehouse: Lakehouse) -> None:
    s1 = lakehouse.write("t.typed", TYPED, "create").snapshot
    extra = pa.table({"id": pa.array([2**40], pa.int64()), "home": ["RENT"]})
    s2 = lakehouse.write("t.typed", extra, evolve=True).snapshot  # widens id, adds home
    for snap in (s1, s2):
        iceberg = lakehouse.read("t.typed", snapshot_id=snap.snapshot_id)
        duck = lakehouse.sql("SELECT * FROM t.typed", {"t.typed": snap.snapshot_id})
        sdf = read_table(spark, "t.typed", snapshot_id=snap.snapshot_id, lakehouse=lakehouse)
        from_spark = spark_to_arrow(sdf).cast(iceberg.schema)
        assert iceberg.num_rows == snap.total_rows
        _same_rows(iceberg, duck.cast(iceberg.schema))
        _same_rows(iceberg, from_spark)
    s2_spark = read_table(spark, "t.typed", lakehouse=lakehouse)
    assert dict(s2_spark.dtypes)["id"] == "bigint"
    assert s2_spark.filter("home = 'RENT'").count() == 1
    assert s2_spark.filter("home IS NULL").count() == 3


def test_spark_reads_tags_and_rolled_back_table(spark, lakehouse: Lakehouse) -> None:
    s1 = lakehouse.write("t.r", pa.table({"x": [1, 2]}), "create").snapshot
    lakehouse.write("t.r", pa.table({"x": [3], "y": ["new"]}), evolve=True)
    lakehouse.tag("t.r", "base", s1.snapshot_id)
    assert read_table(spark, "t.r", tag="base", lakehouse=lakehouse).count() == 2
    lakehouse.rollback("t.r", s1.snapshot_id)
    current = read_table(spark, "t.r", lakehouse=lakehouse)
    assert current.columns == ["x"] and current.count() == 2
    with pytest.raises(NoSuchSnapshotError, match="tag 'nope'"):
        read_table(spark, "t.r", tag="nope", lakehouse=lakehouse)


def test_spark_writes_create_append_overwrite(spark, lakehouse: Lakehouse) -> None:
    df = spark.createDataFrame(
        [(1, "a", dt.datetime(2024, 5, 1, 8, 30), decimal.Decimal("9.99")),
         (2, None, None, None)],
        "id long, name string, at timestamp_ntz, price decimal(8,2)",
    )
    created = write_table(df, "t.spark", "create", lakehouse=lakehouse)
    assert created.snapshot.total_rows == 2
    back = lakehouse.read("t.spark")
    assert back.schema.field("at").type == pa.timestamp("us")
    assert back.schema.field("price").type == pa.decimal128(8, 2)
    assert sorted(back.to_pylist(), key=lambda r: r["id"])[0] == {
        "id": 1, "name": "a", "at": dt.datetime(2024, 5, 1, 8, 30), "price": decimal.Decimal("9.99")
    }
    write_table(df.limit(1), "t.spark", "append", lakehouse=lakehouse)
    assert lakehouse.read("t.spark").num_rows == 3
    with pytest.raises(SchemaMismatchError, match="'extra'"):
        write_table(df.selectExpr("*", "1 AS extra"), "t.spark", "append", lakehouse=lakehouse)
    write_table(df.filter("id = 2"), "t.spark", "overwrite", lakehouse=lakehouse)
    assert lakehouse.read("t.spark").column("id").to_pylist() == [2]
    # a round trip through Spark keeps every row
    again = read_table(spark, "t.spark", lakehouse=lakehouse)
    assert again.count() == 1


def test_an_etl_job_writing_with_auto_can_be_rerun(spark, lakehouse: Lakehouse) -> None:
    batch = spark.createDataFrame([(1, "a"), (2, "b")], "id long, name string")
    first = write_table(batch, "etl.out", "auto", lakehouse=lakehouse)  # no table yet
    again = write_table(batch, "etl.out", "auto", lakehouse=lakehouse)  # the rerun
    assert (first.mode, again.mode) == ("create", "append")
    assert again.snapshot.total_rows == 4
    assert [s.snapshot_id for s in lakehouse.snapshots("etl.out")] == [
        first.snapshot.snapshot_id, again.snapshot.snapshot_id]
    with pytest.raises(SchemaMismatchError, match="'extra'"):  # still refuses a new column
        write_table(batch.selectExpr("*", "1 AS extra"), "etl.out", "auto", lakehouse=lakehouse)
    evolved = write_table(batch.selectExpr("*", "1 AS extra"), "etl.out", "auto", evolve=True,
                          lakehouse=lakehouse)
    assert evolved.new_columns == ("extra",) and evolved.snapshot.total_rows == 6
    with pytest.raises(InvalidInputError, match="unknown write mode 'upsert'"):
        write_table(batch, "etl.out", "upsert", lakehouse=lakehouse)


def test_files_are_read_with_the_schema_their_footers_declare(lakehouse: Lakehouse) -> None:
    from icefloe.compute.bridge import file_schema
    from icefloe.lakehouse.layout import FileColumn, plan_snapshot_files

    lakehouse.write("t.typed", TYPED, "create")
    table = lakehouse.table("t.typed")
    files = plan_snapshot_files(table, table.current_snapshot().snapshot_id)
    (layout,) = files.groups
    declared = file_schema(layout)
    assert declared is not None
    assert [(f.name, f.dataType.simpleString()) for f in declared.fields] == [
        ("id", "int"), ("name", "string"), ("ts", "timestamp_ntz"), ("tstz", "timestamp"),
        ("amount", "decimal(10,2)"), ("score", "double"), ("day", "date"),
        ("flag", "boolean")]
    # Types Spark has its own rules for (nanoseconds, INT96), and names equal but for case,
    # are left to Spark's inference.
    assert file_schema((FileColumn(1, "t", pa.timestamp("ns")),)) is None
    assert file_schema((FileColumn(1, "a", pa.int64()), FileColumn(2, "A", pa.int64()))) is None


def test_empty_table_reads_as_empty_dataframe(spark, lakehouse: Lakehouse) -> None:
    lakehouse.write("t.e", pa.table({"x": pa.array([], pa.int64())}), "create")
    df = read_table(spark, "t.e", lakehouse=lakehouse)
    assert df.count() == 0 and df.columns == ["x"]

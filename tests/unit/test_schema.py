import datetime as dt

import pyarrow as pa
import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import DoubleType, IntegerType, LongType, NestedField, StringType

from icefloe.errors import SchemaMismatchError
from icefloe.lakehouse.schema import cast_to_table, normalize_arrow, plan_write

TABLE = Schema(
    NestedField(1, "id", IntegerType(), required=False),
    NestedField(2, "name", StringType(), required=False),
    NestedField(3, "score", DoubleType(), required=False),
)


def test_matching_data_needs_no_change() -> None:
    data = pa.schema([("id", pa.int32()), ("name", pa.string()), ("score", pa.float64())])
    assert not plan_write("t.t", TABLE, data, evolve=False).changes_schema


def test_new_column_refused_without_evolve_and_named() -> None:
    data = pa.schema([("id", pa.int32()), ("home_ownership", pa.string())])
    with pytest.raises(SchemaMismatchError, match="'home_ownership'.*--evolve"):
        plan_write("lending.loans", TABLE, data, evolve=False)
    plan = plan_write("lending.loans", TABLE, data, evolve=True)
    assert plan.new_columns == ("home_ownership",)


def test_incompatible_type_refused_even_with_evolve() -> None:
    data = pa.schema([("score", pa.string())])
    for evolve in (False, True):
        with pytest.raises(SchemaMismatchError, match="'score' is string.*double"):
            plan_write("t.t", TABLE, data, evolve=evolve)


def test_wider_data_widens_only_with_evolve() -> None:
    data = pa.schema([("id", pa.int64())])
    assert plan_write("t.t", TABLE, data, evolve=True).widened_columns == ("id",)
    assert plan_write("t.t", TABLE, data, evolve=False).widened_columns == ()


def test_narrowing_cast_refuses_values_that_do_not_fit() -> None:
    ok = cast_to_table(pa.table({"id": pa.array([1, 2], pa.int64())}), TABLE, "t.t")
    assert ok.schema.field("id").type == pa.int32()
    with pytest.raises(SchemaMismatchError, match="'id'.*do not fit"):
        cast_to_table(pa.table({"id": pa.array([2**40], pa.int64())}), TABLE, "t.t")


def test_required_column_missing_is_refused() -> None:
    schema = Schema(NestedField(1, "id", LongType(), required=True))
    with pytest.raises(SchemaMismatchError, match="'id' is required"):
        plan_write("t.t", schema, pa.schema([("x", pa.int64())]), evolve=True)


def test_normalize_makes_iceberg_types() -> None:
    data = pa.table(
        {
            "ns": pa.array([dt.datetime(2024, 1, 1, 0, 0, 0, 1)], pa.timestamp("ns")),
            "u8": pa.array([3], pa.uint8()),
            "u64": pa.array([2**40], pa.uint64()),
            "null": pa.array([None], pa.null()),
            "dict": pa.array(["a"]).dictionary_encode(),
            "big": pa.array(["x"], pa.large_string()),
        }
    )
    out = normalize_arrow(data)
    assert out.schema.field("ns").type == pa.timestamp("us")
    assert out.schema.field("u8").type == pa.int32()
    assert out.schema.field("u64").type == pa.int64()
    assert out.schema.field("null").type == pa.string()
    assert out.schema.field("dict").type == pa.string()
    assert out.schema.field("big").type == pa.string()
    with pytest.raises(SchemaMismatchError, match="'u64'"):
        normalize_arrow(pa.table({"u64": pa.array([2**63 + 1], pa.uint64())}))


def test_duplicate_columns_refused() -> None:
    data = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"])
    with pytest.raises(SchemaMismatchError, match="duplicate"):
        normalize_arrow(data)


def test_integers_fit_floating_point_columns_value_by_value() -> None:
    data = pa.schema([("score", pa.int64())])
    assert not plan_write("t.t", TABLE, data, evolve=False).changes_schema
    out = cast_to_table(pa.table({"score": pa.array([77300], pa.int64())}), TABLE, "t.t")
    assert out.column("score").to_pylist() == [77300.0]
    with pytest.raises(SchemaMismatchError, match="'score'"):
        cast_to_table(pa.table({"score": pa.array([2**60 + 1], pa.int64())}), TABLE, "t.t")

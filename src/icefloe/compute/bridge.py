"""Spark <-> Iceberg without the iceberg-spark-runtime jar.

Reads: PyIceberg plans the snapshot's data files and Spark reads them as Parquet. Files
written under older schemas are matched to the snapshot's schema by Iceberg field id, so
added columns come back as nulls, widened columns are cast and renamed columns keep their
data. Writes: Spark -> Arrow -> one PyIceberg commit (see ``icefloe.lakehouse.tables``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.schema import Schema

from icefloe.lakehouse import Lakehouse, WriteResult
from icefloe.lakehouse.layout import FileLayout, plan_snapshot_files, source_column
from icefloe.lakehouse.snapshots import resolve_snapshot

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType


def spark_schema_of(schema: Schema) -> StructType:
    """Spark schema for an Iceberg schema (timestamp -> TimestampNTZ, timestamptz -> Timestamp)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    arrow = schema_to_pyarrow(schema, include_field_ids=False)
    return from_arrow_schema(arrow, prefer_timestamp_ntz=True)


def _project(df: DataFrame, layout: FileLayout, schema: Schema, target: StructType) -> DataFrame:
    """Select the snapshot schema's columns from files of one layout, by field id."""
    from pyspark.sql import functions as F

    columns = []
    for field, spark_field in zip(schema.fields, target.fields, strict=True):
        source = source_column(layout, field.field_id, field.name)
        if source is None:
            columns.append(F.lit(None).cast(spark_field.dataType).alias(field.name))
        else:
            quoted = source.name.replace("`", "``")
            columns.append(F.col(f"`{quoted}`").cast(spark_field.dataType).alias(field.name))
    return df.select(*columns)


def read_table(
    spark: SparkSession,
    name: str,
    *,
    snapshot_id: int | None = None,
    tag: str | None = None,
    as_of: str | int | None = None,
    lakehouse: Lakehouse | None = None,
) -> DataFrame:
    """Read an Iceberg table (current, or at a snapshot id, tag or time) as a Spark DataFrame.

    Args:
        spark: The session (see :func:`icefloe.compute.spark_session`).
        name: ``namespace.table``.
        snapshot_id: Read this snapshot.
        tag: Read the snapshot this tag points at.
        as_of: Read the snapshot that was current at this time (ISO-8601 or epoch ms).
        lakehouse: The lakehouse to read from; one from the default settings if omitted.
    """
    lh = lakehouse or Lakehouse()
    table = lh.table(name)
    snap = resolve_snapshot(table, snapshot_id=snapshot_id, tag=tag, as_of=as_of)
    if snap is None:
        schema = table.schema()
        return spark.createDataFrame([], spark_schema_of(schema))
    files = plan_snapshot_files(table, snap.snapshot_id)
    target = spark_schema_of(files.schema)
    if files.has_deletes:
        # Merge-on-read deletes: let PyIceberg apply them, then hand Spark the result.
        arrow = table.scan(snapshot_id=snap.snapshot_id).to_arrow()
        return spark.createDataFrame(arrow.to_pandas(), target)
    result: DataFrame | None = None
    for layout, paths in files.groups.items():
        part = _project(spark.read.parquet(*paths), layout, files.schema, target)
        result = part if result is None else result.unionByName(part)
    return result if result is not None else spark.createDataFrame([], target)


def spark_to_arrow(df: DataFrame) -> pa.Table:
    """Collect a Spark DataFrame to the driver as Arrow, keeping Spark's types."""
    from pyspark.sql.pandas.types import to_arrow_schema

    schema = to_arrow_schema(df.schema)
    batches = df._collect_as_arrow()
    if not batches:
        return schema.empty_table()
    return pa.Table.from_batches(batches).cast(schema)


def write_table(
    df: DataFrame,
    name: str,
    mode: str = "append",
    *,
    evolve: bool = False,
    lakehouse: Lakehouse | None = None,
    properties: dict[str, str] | None = None,
) -> WriteResult:
    """Write a Spark DataFrame to an Iceberg table in one commit.

    Args:
        df: The rows.
        name: ``namespace.table``.
        mode: ``create``, ``append`` or ``overwrite``.
        evolve: Add new columns / widen types instead of refusing.
        lakehouse: The lakehouse to write to; one from the default settings if omitted.
        properties: Extra snapshot summary properties.
    """
    lh = lakehouse or Lakehouse()
    return lh.write(name, spark_to_arrow(df), mode, evolve=evolve, properties=properties)

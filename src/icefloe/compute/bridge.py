"""Spark <-> Iceberg without the iceberg-spark-runtime jar.

Reads: PyIceberg plans the snapshot's data files and Spark reads them as Parquet. Files
written under older schemas are matched to the snapshot's schema by Iceberg field id, so
added columns come back as nulls, widened columns are cast and renamed columns keep their
data. Each group of files is read with the schema its footers declare (read once by the
planner), so Spark does not run a job to infer it again. Writes: Spark -> Arrow -> one
PyIceberg commit (see ``icefloe.lakehouse.tables``); mode ``auto`` creates the table on the
first run and appends on every later one, so an ETL job can be rerun.

PyArrow, PyIceberg and the lakehouse are imported when a read or write runs, so importing
``icefloe.compute`` to start a Spark session stays light.

Lineage: a read remembers which files of which snapshot it handed Spark, and a write looks
up the files its DataFrame was computed from (``DataFrame.inputFiles``) among them, so the
snapshots a job read are recorded as the inputs of the snapshot it wrote.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING

from icefloe.happenings import Dataset, Happening, emit, process_actor, process_parent

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.schema import Schema
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

    from icefloe.lakehouse import Lakehouse, WriteResult
    from icefloe.lakehouse.layout import FileLayout


def spark_schema_of(schema: Schema) -> StructType:
    """Spark schema for an Iceberg schema (timestamp -> TimestampNTZ, timestamptz -> Timestamp)."""
    from pyiceberg.io.pyarrow import schema_to_pyarrow
    from pyspark.sql.pandas.types import from_arrow_schema

    arrow = schema_to_pyarrow(schema, include_field_ids=False)
    return from_arrow_schema(arrow, prefer_timestamp_ntz=True)


def _readable_as_declared(data_type: pa.DataType) -> bool:
    """Whether Spark's Parquet reader takes a column of this (footer) type as the Spark type
    ``from_arrow_schema`` gives it. Anything else is left to Spark's own inference."""
    import pyarrow as pa

    t = pa.types
    if t.is_timestamp(data_type):
        return data_type.unit in ("ms", "us")  # nanoseconds and INT96 need Spark's rules
    return bool(
        t.is_boolean(data_type) or t.is_signed_integer(data_type)
        or t.is_float32(data_type) or t.is_float64(data_type)
        or t.is_string(data_type) or t.is_large_string(data_type)
        or t.is_binary(data_type) or t.is_large_binary(data_type)
        or t.is_date32(data_type) or t.is_decimal128(data_type)
    )


def file_schema(layout: FileLayout) -> StructType | None:
    """The Spark read schema of files of one layout, or None to let Spark infer it."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import from_arrow_schema

    if not layout or not all(_readable_as_declared(c.type) for c in layout):
        return None
    if len({c.name.lower() for c in layout}) != len(layout):
        return None  # names equal but for case: let Spark report it its own way
    arrow = pa.schema([pa.field(c.name, c.type) for c in layout])
    return from_arrow_schema(arrow, prefer_timestamp_ntz=True)


def _project(df: DataFrame, layout: FileLayout, schema: Schema, target: StructType) -> DataFrame:
    """Select the snapshot schema's columns from files of one layout, by field id."""
    from pyspark.sql import functions as F

    from icefloe.lakehouse.layout import source_column

    columns = []
    for field, spark_field in zip(schema.fields, target.fields, strict=True):
        source = source_column(layout, field.field_id, field.name)
        if source is None:
            columns.append(F.lit(None).cast(spark_field.dataType).alias(field.name))
        else:
            quoted = source.name.replace("`", "``")
            columns.append(F.col(f"`{quoted}`").cast(spark_field.dataType).alias(field.name))
    return df.select(*columns)


MAX_REMEMBERED_READS = 64
_reads: deque[tuple[str, int, frozenset[str]]] = deque(maxlen=MAX_REMEMBERED_READS)
_reads_lock = threading.Lock()


def _file_key(path: str) -> str:
    """A data file's path as Spark and PyIceberg both can be matched on (no ``file:``)."""
    if path.startswith("file:"):
        path = "/" + path.removeprefix("file:").lstrip("/")
    return path


def _remember_read(name: str, snapshot_id: int, paths: list[str]) -> None:
    with _reads_lock:
        _reads.append((name, snapshot_id, frozenset(_file_key(p) for p in paths)))


def inputs_of(df: DataFrame) -> tuple[Dataset, ...]:
    """The snapshots (read through :func:`read_table` in this process) whose files ``df`` is
    computed from; () when Spark cannot say. Best effort: never raises."""
    try:
        files = {_file_key(str(p)) for p in df.inputFiles()}
    except Exception:  # noqa: BLE001 - lineage must never fail the write
        return ()
    found: dict[str, int] = {}
    with _reads_lock:
        remembered = list(_reads)
    for name, snapshot_id, paths in reversed(remembered):  # the newest read of a table wins
        if name not in found and files & paths:
            found[name] = snapshot_id
    return tuple(Dataset(name, snapshot_id=snap) for name, snap in sorted(found.items()))


def read_table(
    spark: SparkSession,
    name: str,
    *,
    snapshot_id: int | None = None,
    tag: str | None = None,
    as_of: str | int | None = None,
    lakehouse: Lakehouse | None = None,
    record: bool = True,
) -> DataFrame:
    """Read an Iceberg table (current, or at a snapshot id, tag or time) as a Spark DataFrame.

    Args:
        spark: The session (see :func:`icefloe.compute.spark_session`).
        name: ``namespace.table``.
        snapshot_id: Read this snapshot.
        tag: Read the snapshot this tag points at.
        as_of: Read the snapshot that was current at this time (ISO-8601 or epoch ms).
        lakehouse: The lakehouse to read from; one from the default settings if omitted.
        record: Publish the read (``table.read``); off for callers that publish their own
            happening naming it (training).
    """
    from icefloe.lakehouse import Lakehouse
    from icefloe.lakehouse.layout import plan_snapshot_files
    from icefloe.lakehouse.snapshots import resolve_snapshot

    lh = lakehouse or Lakehouse()
    table = lh.table(name)
    snap = resolve_snapshot(table, snapshot_id=snapshot_id, tag=tag, as_of=as_of)
    if snap is None:
        schema = table.schema()
        return spark.createDataFrame([], spark_schema_of(schema))
    files = plan_snapshot_files(table, snap.snapshot_id)
    _remember_read(name, snap.snapshot_id, files.paths)
    if record:
        emit(lambda: Happening("table.read", actor=process_actor(), parent=process_parent(),
                               inputs=(Dataset(name, snapshot_id=snap.snapshot_id),),
                               subject={"via": "spark"}))
    target = spark_schema_of(files.schema)
    if files.has_deletes:
        # Merge-on-read deletes: let PyIceberg apply them, then hand Spark the result.
        arrow = table.scan(snapshot_id=snap.snapshot_id).to_arrow()
        return spark.createDataFrame(arrow.to_pandas(), target)
    result: DataFrame | None = None
    for layout, paths in files.groups.items():
        reader = spark.read
        declared = file_schema(layout)
        if declared is not None:
            reader = reader.schema(declared)
        part = _project(reader.parquet(*paths), layout, files.schema, target)
        result = part if result is None else result.unionByName(part)
    return result if result is not None else spark.createDataFrame([], target)


def spark_to_arrow(df: DataFrame) -> pa.Table:
    """Collect a Spark DataFrame to the driver as Arrow, keeping Spark's types."""
    import pyarrow as pa
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
        mode: ``create`` (fails if the table exists), ``append``, ``overwrite``, or ``auto``
            (create the table if it does not exist yet, else append: a job that writes with
            ``auto`` can be rerun). The same modes as :meth:`icefloe.lakehouse.Lakehouse.write`.
        evolve: Add new columns / widen types instead of refusing.
        lakehouse: The lakehouse to write to; one from the default settings if omitted.
        properties: Extra snapshot summary properties.

    Returns:
        What the write did; its ``mode`` says ``create`` or ``append`` for ``auto``.

    Raises:
        InvalidInputError: An unknown mode (before any row is collected).
    """
    from icefloe.errors import InvalidInputError
    from icefloe.lakehouse import Lakehouse
    from icefloe.lakehouse.tables import WRITE_MODES

    if mode not in WRITE_MODES:
        raise InvalidInputError(f"unknown write mode {mode!r}; use one of {', '.join(WRITE_MODES)}")
    lh = lakehouse or Lakehouse()
    return lh.write(name, spark_to_arrow(df), mode, evolve=evolve, properties=properties,
                    inputs=inputs_of(df), subject={"via": "spark"})

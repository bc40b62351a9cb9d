"""SQL over lakehouse tables with DuckDB.

Tables are referred to as ``namespace.table``. Each table the query names becomes a DuckDB
view (in a schema of the same name, so ordinary SQL works unchanged) over the Parquet files
of its current snapshot, or of the snapshot/tag it is pinned to. DuckDB reads the files
itself (its own Parquet reader: projections, filters and statistics pushed down, streaming);
files written under older schemas are mapped by field id as in the Spark bridge.

The query is read-only over exactly those files, by two locks: only ``SELECT`` (and
``EXPLAIN``) statements run, so nothing is written (no ``COPY ... TO``, ``ATTACH``,
``INSTALL``, ``EXPORT`` or ``SET``); and external access is off with the snapshots' data
files as the only allowed paths (files, not folders), so no other file can be read or
written, the working directory and the tables' other files included. DuckDB's temporary
folder is a fresh private folder per query, deleted afterwards.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Mapping

import duckdb
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    LongType,
    StringType,
    TimestampType,
    TimestamptzType,
    TimeType,
    UUIDType,
)

from icefloe.errors import InvalidInputError, NoSuchTableError, QueryError
from icefloe.lakehouse.catalog import list_table_names, load_table
from icefloe.lakehouse.layout import SnapshotFiles, plan_snapshot_files, source_column
from icefloe.lakehouse.names import TableName, parse_table_name
from icefloe.lakehouse.snapshots import resolve_snapshot
from icefloe.lakehouse.tables import read_arrow

_QUALIFIED = re.compile(r'"?([A-Za-z_][A-Za-z0-9_]*)"?\s*\.\s*"?([A-Za-z_][A-Za-z0-9_]*)"?')
_STRING_OR_COMMENT = re.compile(r"'(?:[^']|'')*'|--[^\n]*|/\*.*?\*/", re.DOTALL)

Pin = int | str
_DUCKDB_TYPES: dict[type, str] = {
    BooleanType: "BOOLEAN",
    IntegerType: "INTEGER",
    LongType: "BIGINT",
    FloatType: "FLOAT",
    DoubleType: "DOUBLE",
    StringType: "VARCHAR",
    BinaryType: "BLOB",
    DateType: "DATE",
    TimeType: "TIME",
    TimestampType: "TIMESTAMP",
    TimestamptzType: "TIMESTAMPTZ",
    UUIDType: "UUID",
}


def referenced_tables(query: str, known: set[TableName]) -> list[TableName]:
    """Catalog tables that ``query`` mentions as ``namespace.table`` (outside string literals)."""
    code = _STRING_OR_COMMENT.sub(" ", query)
    found: list[TableName] = []
    for match in _QUALIFIED.finditer(code):
        name = TableName(match.group(1), match.group(2))
        if name in known and name not in found:
            found.append(name)
    return found


def parse_pin(text: str) -> tuple[str, Pin]:
    """Parse ``namespace.table=SNAPSHOT_ID_OR_TAG`` from the command line."""
    name, sep, ref = text.partition("=")
    if not sep or not ref:
        raise InvalidInputError(
            f"cannot parse pin {text!r}: expected namespace.table=SNAPSHOT_ID or =TAG"
        )
    parse_table_name(name)
    return name, int(ref) if ref.isdigit() else ref


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _duckdb_type(t: IcebergType) -> str | None:
    """DuckDB type for an Iceberg primitive type; None for types left to the Arrow path."""
    if isinstance(t, DecimalType):
        return f"DECIMAL({t.precision},{t.scale})"
    return _DUCKDB_TYPES.get(type(t))


def view_sql(files: SnapshotFiles) -> tuple[str, list[str]] | None:
    """SQL that reads a snapshot's Parquet files in DuckDB, mapped onto the snapshot schema.

    Returns:
        The SQL and the local files it reads, or None when DuckDB cannot read the files
        itself (delete files, remote storage, nested types, no files); the caller then hands
        DuckDB the rows PyIceberg read.
    """
    if files.has_deletes or not files.groups:
        return None
    types = {}
    for f in files.schema.fields:
        sql_type = _duckdb_type(f.field_type)
        if sql_type is None:
            return None
        types[f.field_id] = sql_type
    parts, read = [], []
    for layout, paths in files.groups.items():
        if any("://" in p and not p.startswith("file://") for p in paths):
            return None
        local = [p.removeprefix("file://") for p in paths]
        read += local
        listed = ", ".join("'" + p.replace("'", "''") + "'" for p in local)
        columns = []
        for f in files.schema.fields:
            source = source_column(layout, f.field_id, f.name)
            expr = "NULL" if source is None else _quote(source.name)
            columns.append(f"CAST({expr} AS {types[f.field_id]}) AS {_quote(f.name)}")
        parts.append(f"SELECT {', '.join(columns)} FROM read_parquet([{listed}])")
    return "\nUNION ALL\n".join(parts), read


def _expose(
    con: duckdb.DuckDBPyConnection,
    catalog: SqlCatalog,
    name: TableName,
    ref: Pin | None,
    alias: str,
) -> list[str]:
    """Create the view ``namespace.table`` in DuckDB for the snapshot the query reads.

    Returns:
        The data files the view reads (none when the rows were handed over as Arrow).
    """
    table = load_table(catalog, name)
    snap = resolve_snapshot(
        table,
        snapshot_id=ref if isinstance(ref, int) else None,
        tag=ref if isinstance(ref, str) else None,
    )
    files = plan_snapshot_files(table, snap.snapshot_id) if snap else None
    view = view_sql(files) if files else None
    read: list[str] = []
    if view is None:
        data = read_arrow(catalog, str(name), snapshot_id=snap.snapshot_id if snap else None)
        con.register(alias, data)
        body = f"SELECT * FROM {alias}"
    else:
        body, read = view
    # Namespace and table names were validated as plain identifiers.
    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{name.namespace}"')
    con.execute(f'CREATE VIEW "{name.namespace}"."{name.table}" AS {body}')
    return read


READ_ONLY = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})


def _only_reads(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Refuse a query with any statement that is not a SELECT (or EXPLAIN of one)."""
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        text = str(exc).strip()
        raise QueryError(f"SQL error: {text.splitlines()[0] if text else exc!r}") from exc
    for statement in statements:
        if statement.type not in READ_ONLY:
            kind = str(statement.type).rsplit(".", 1)[-1]
            raise QueryError(f"SQL error: only SELECT queries run here; this query has a "
                             f"{kind} statement")


def run_sql(
    catalog: SqlCatalog, query: str, pins: Mapping[str, Pin] | None = None
) -> pa.Table:
    """Run a SQL query over lakehouse tables and return the result as Arrow.

    Args:
        catalog: The catalog.
        query: DuckDB SQL naming tables as ``namespace.table``.
        pins: Optional ``{"namespace.table": snapshot_id or tag}`` for time travel.

    Raises:
        NoSuchTableError: A pinned table does not exist.
        QueryError: DuckDB refused the query (the message is DuckDB's first line).
    """
    if not query.strip():
        raise InvalidInputError("the SQL query is empty")
    known = set(list_table_names(catalog))
    pinned = {parse_table_name(k): v for k, v in (pins or {}).items()}
    for name in pinned:
        if name not in known:
            raise NoSuchTableError(f"table {name} does not exist (pinned in the query)")
    tables = referenced_tables(query, known)
    for name in pinned:
        if name not in tables:
            tables.append(name)

    # DuckDB spills to its temporary folder, which it may always read and write (and which
    # defaults to ./.tmp): give each query a private one and delete it afterwards.
    temp = tempfile.mkdtemp(prefix="icefloe-sql-")
    try:
        con = duckdb.connect(database=":memory:", config={"temp_directory": temp})
        try:
            con.execute("SET TimeZone = 'UTC'")
            _only_reads(con, query)
            read: list[str] = []
            for i, name in enumerate(tables):
                read += _expose(con, catalog, name, pinned.get(name), f"__icefloe_table_{i}")
            # The snapshot's files, by exact path, are all DuckDB may open (reads only: the
            # statements were checked above); no way to switch this back on.
            con.execute("SET allowed_paths = $paths", {"paths": sorted(set(read))})
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
            try:
                relation = con.sql(query)
                return relation.to_arrow_table() if relation is not None else pa.table({})
            except duckdb.Error as exc:
                text = str(exc).strip()
                first_line = text.splitlines()[0] if text else repr(exc)
                raise QueryError(f"SQL error: {first_line}") from exc
        finally:
            con.close()
    finally:
        shutil.rmtree(temp, ignore_errors=True)

"""SQL over lakehouse tables with DuckDB.

Tables are referred to as ``namespace.table``. Each table the query names becomes a DuckDB
view (in a schema of the same name, so ordinary SQL works unchanged) over the Parquet files
of its current snapshot, or of the snapshot/tag it is pinned to. DuckDB reads the files
itself (its own Parquet reader: projections, filters and statistics pushed down, streaming);
files written under older schemas are mapped by field id as in the Spark bridge, and a
column is cast only where the file's type differs from the snapshot's.

The query is read-only over exactly those files, by two locks: only ``SELECT`` (and
``EXPLAIN``) statements run, so nothing is written (no ``COPY ... TO``, ``ATTACH``,
``INSTALL``, ``EXPORT`` or ``SET``); and external access is off with the snapshots' data
files as the only allowed paths (files, not folders) and the configuration locked, so no
other file can be read or written, the working directory and the tables' other files
included.

Starting a DuckDB database costs more than a small query, and snapshots never change, so a
:class:`SqlRunner` keeps what it can between queries: table metadata by metadata file, the
views of a snapshot by snapshot id, and a few locked databases by the exact set of snapshot
views they hold (each query runs on a fresh cursor of one). Those kept databases have no
temporary folder at all, so nothing spills and no query sees another's spill files; a query
that runs out of memory there runs again in a database of its own whose temporary folder is
a fresh private folder, deleted afterwards. Rows that DuckDB cannot read from the files
(delete files, nested types) are handed over as Arrow, also in a database of the query's
own.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import duckdb
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import Table
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
from icefloe.lakehouse.catalog import load_table, table_locations
from icefloe.lakehouse.layout import FileColumn, SnapshotFiles, plan_snapshot_files, source_column
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
# File column types DuckDB reads as exactly the snapshot's type, so no CAST is needed (a
# CAST, even a no-op one, costs time per row and hides the column from filter pushdown).
_SAME_IN_DUCKDB: dict[type, tuple[pa.DataType, ...]] = {
    BooleanType: (pa.bool_(),),
    IntegerType: (pa.int32(),),
    LongType: (pa.int64(),),
    FloatType: (pa.float32(),),
    DoubleType: (pa.float64(),),
    StringType: (pa.string(), pa.large_string()),
    BinaryType: (pa.binary(), pa.large_binary()),
    DateType: (pa.date32(),),
    TimeType: (pa.time64("us"),),
    TimestampType: (pa.timestamp("us"),),
}

MAX_SANDBOXES = 4
MAX_PLANS = 64
MAX_TABLES = 64
# Configuration of the kept databases: no temporary folder, so they never spill.
SHARED_CONFIG: dict[str, str] = {"temp_directory": ""}
READ_ONLY = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})


def qualified_names(query: str) -> list[TableName]:
    """Every ``namespace.table``-shaped name in ``query`` (outside strings and comments)."""
    code = _STRING_OR_COMMENT.sub(" ", query)
    found: list[TableName] = []
    for match in _QUALIFIED.finditer(code):
        name = TableName(match.group(1), match.group(2))
        if name not in found:
            found.append(name)
    return found


def referenced_tables(query: str, known: set[TableName]) -> list[TableName]:
    """Catalog tables that ``query`` mentions as ``namespace.table`` (outside string literals)."""
    return [name for name in qualified_names(query) if name in known]


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


def _reads_as(column: FileColumn, t: IcebergType) -> bool:
    """True if DuckDB reads the file column as exactly the type ``t`` (no CAST needed)."""
    if isinstance(t, DecimalType):
        return column.type == pa.decimal128(t.precision, t.scale)
    if isinstance(t, TimestamptzType):  # any zone: stored as UTC instants (isAdjustedToUTC)
        return pa.types.is_timestamp(column.type) and column.type.unit == "us" and (
            column.type.tz is not None)
    return column.type in _SAME_IN_DUCKDB.get(type(t), ())


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
            if source is None:
                columns.append(f"CAST(NULL AS {types[f.field_id]}) AS {_quote(f.name)}")
            elif not _reads_as(source, f.field_type):
                columns.append(
                    f"CAST({_quote(source.name)} AS {types[f.field_id]}) AS {_quote(f.name)}")
            elif source.name != f.name:
                columns.append(f"{_quote(source.name)} AS {_quote(f.name)}")
            else:
                columns.append(_quote(f.name))
        parts.append(f"SELECT {', '.join(columns)} FROM read_parquet([{listed}], "
                     "hive_partitioning = false)")
    return "\nUNION ALL\n".join(parts), read


def _only_reads(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Refuse a query with any statement that is not a SELECT (or EXPLAIN of one)."""
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise QueryError(_sql_error(exc)) from exc
    for statement in statements:
        if statement.type not in READ_ONLY:
            kind = str(statement.type).rsplit(".", 1)[-1]
            raise QueryError(f"SQL error: only SELECT queries run here; this query has a "
                             f"{kind} statement")


def _sql_error(exc: duckdb.Error) -> str:
    text = str(exc).strip()
    return f"SQL error: {text.splitlines()[0] if text else repr(exc)}"


def _run_query(con: duckdb.DuckDBPyConnection, query: str) -> pa.Table:
    """Check and run the query; DuckDB running out of memory propagates as is."""
    _only_reads(con, query)
    try:
        relation = con.sql(query)
        return relation.to_arrow_table() if relation is not None else pa.table({})
    except duckdb.OutOfMemoryException:
        raise
    except duckdb.Error as exc:
        raise QueryError(_sql_error(exc)) from exc


@dataclass(frozen=True)
class _TableView:
    """How one table of a query is exposed: SQL over its files, or rows handed over."""

    name: TableName
    body: str | None  # None: the rows of ``snapshot_id`` are read by PyIceberg
    files: tuple[str, ...] = ()
    snapshot_id: int | None = None


RowLoader = Callable[[_TableView], pa.Table]


def _open_sandbox(
    views: Sequence[_TableView],
    temp_directory: str,
    *,
    config: Mapping[str, str] | None = None,
    query: str | None = None,
    rows_of: RowLoader | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB database with the views, locked to reading exactly their files.

    With ``query``, it is checked first, before any rows are read for the views.
    """
    con = duckdb.connect(
        database=":memory:", config={**(config or {}), "temp_directory": temp_directory})
    try:
        if query is not None:
            _only_reads(con, query)
        con.execute("SET GLOBAL TimeZone = 'UTC'")
        con.execute("SET GLOBAL parquet_metadata_cache = true")  # data files never change
        read: set[str] = set()
        for i, view in enumerate(views):
            body = view.body
            if body is None:
                if rows_of is None:
                    raise ValueError(f"no rows for {view.name}")
                alias = f"__icefloe_table_{i}"
                con.register(alias, rows_of(view))
                body = f"SELECT * FROM {alias}"
            read.update(view.files)
            # Namespace and table names were validated as plain identifiers.
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{view.name.namespace}"')
            con.execute(f'CREATE VIEW "{view.name.namespace}"."{view.name.table}" AS {body}')
        # The snapshots' files, by exact path, are all DuckDB may open (reads only: only
        # SELECT statements run); no way to switch this back on.
        con.execute("SET allowed_paths = $paths", {"paths": sorted(read)})
        # Nor may a query name a Python variable of the calling code and read it.
        con.execute("SET python_enable_replacements = false")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def _run_alone(views: Sequence[_TableView], query: str, rows_of: RowLoader) -> pa.Table:
    """Run the query in a database of its own, with a fresh private temporary folder."""
    # DuckDB spills to its temporary folder, which it may always read and write (and which
    # defaults to ./.tmp): give the query a private one and delete it afterwards.
    temp = tempfile.mkdtemp(prefix="icefloe-sql-")
    try:
        con = _open_sandbox(views, temp, query=query, rows_of=rows_of)
        try:
            return _run_query(con, query)
        except duckdb.OutOfMemoryException as exc:
            raise QueryError(_sql_error(exc)) from exc
        finally:
            con.close()
    finally:
        shutil.rmtree(temp, ignore_errors=True)


class _Sandbox:
    """A kept database; closed once evicted and no query is using it."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.users = 0
        self.evicted = False


K = TypeVar("K")
V = TypeVar("V")


class _Lru(Generic[K, V]):
    """A small least-recently-used map (callers hold the runner's lock)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self.items.get(key)
        if value is not None:
            self.items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> list[V]:
        """Store ``value``; returns the values pushed out."""
        self.items[key] = value
        self.items.move_to_end(key)
        out = []
        while len(self.items) > self.size:
            out.append(self.items.popitem(last=False)[1])
        return out


class SqlRunner:
    """Runs SQL over one catalog's tables, keeping what does not change between queries.

    Safe to use from several threads. What is kept: table metadata by metadata file
    location, each snapshot's view by table and snapshot id (both immutable), and up to
    ``MAX_SANDBOXES`` locked DuckDB databases by the views they hold.
    """

    def __init__(self, catalog: SqlCatalog) -> None:
        self.catalog = catalog
        self._lock = threading.Lock()
        self._tables: _Lru[str, Table] = _Lru(MAX_TABLES)
        # (table uuid, snapshot id) -> (view SQL or None for the Arrow path, files read)
        self._views: _Lru[tuple[str, int], tuple[str | None, tuple[str, ...]]] = _Lru(MAX_PLANS)
        self._sandboxes: _Lru[tuple[tuple[str, str], ...], _Sandbox] = _Lru(MAX_SANDBOXES)

    def run(self, query: str, pins: Mapping[str, Pin] | None = None) -> pa.Table:
        """Run a SQL query over lakehouse tables and return the result as Arrow.

        Args:
            query: DuckDB SQL naming tables as ``namespace.table``.
            pins: Optional ``{"namespace.table": snapshot_id or tag}`` for time travel.

        Raises:
            NoSuchTableError: A pinned table does not exist.
            QueryError: DuckDB refused the query (the message is DuckDB's first line).
        """
        return self.run_read(query, pins)[0]

    def run_read(self, query: str, pins: Mapping[str, Pin] | None = None, *,
                 visible: Callable[[TableName], bool] | None = None
                 ) -> tuple[pa.Table, list[tuple[str, int | None]]]:
        """Run a query like :meth:`run`; also answers ``(table, snapshot id)`` of every table
        it read (None for a table with no snapshot yet), for lineage and access tracking.

        ``visible`` says which tables the caller may read: the others are left out of the
        sandbox, so the query fails exactly as if they did not exist."""
        if not query.strip():
            raise InvalidInputError("the SQL query is empty")
        pinned = {parse_table_name(k): v for k, v in (pins or {}).items()}
        mentioned = qualified_names(query)
        locations = table_locations(self.catalog, [*mentioned, *pinned])
        if visible is not None:
            locations = {n: where for n, where in locations.items() if visible(n)}
        for name in pinned:
            if name not in locations:
                raise NoSuchTableError(f"table {name} does not exist (pinned in the query)")
        tables = [n for n in mentioned if n in locations]
        tables += [n for n in pinned if n not in tables]
        views = [self._view(n, locations[n], pinned.get(n)) for n in tables]
        read = [(str(v.name), v.snapshot_id) for v in views]
        if any(v.body is None for v in views):
            return _run_alone(views, query, self._rows), read
        key = tuple((str(v.name), v.body or "") for v in views)  # bodies name the files
        sandbox, cursor = self._checkout(key, views)
        try:
            return _run_query(cursor, query), read
        except duckdb.OutOfMemoryException:
            pass  # the kept databases cannot spill; this one can
        finally:
            self._checkin(sandbox, cursor)
        return _run_alone(views, query, self._rows), read

    def close(self) -> None:
        """Close the kept databases (those in use close when their query ends)."""
        with self._lock:
            evicted = list(self._sandboxes.items.values())
            self._sandboxes.items.clear()
            for sandbox in evicted:
                self._evict(sandbox)

    def _table(self, name: TableName, location: str) -> Table:
        with self._lock:
            table = self._tables.get(location)
        if table is None:
            table = load_table(self.catalog, name)  # newer than ``location`` after a commit
            with self._lock:
                self._tables.put(table.metadata_location, table)
        return table

    def _view(self, name: TableName, location: str, ref: Pin | None) -> _TableView:
        table = self._table(name, location)
        snap = resolve_snapshot(
            table,
            snapshot_id=ref if isinstance(ref, int) else None,
            tag=ref if isinstance(ref, str) else None,
        )
        if snap is None:  # no data yet: PyIceberg gives the empty table its columns
            return _TableView(name, None)
        key = (str(table.metadata.table_uuid), snap.snapshot_id)
        with self._lock:
            cached = self._views.get(key)
        if cached is None:
            planned = view_sql(plan_snapshot_files(table, snap.snapshot_id))
            cached = (planned[0], tuple(planned[1])) if planned else (None, ())
            with self._lock:
                self._views.put(key, cached)
        return _TableView(name, cached[0], cached[1], snap.snapshot_id)

    def _rows(self, view: _TableView) -> pa.Table:
        return read_arrow(self.catalog, str(view.name), snapshot_id=view.snapshot_id)

    def _checkout(
        self, key: tuple[tuple[str, str], ...], views: Sequence[_TableView]
    ) -> tuple[_Sandbox, duckdb.DuckDBPyConnection]:
        """A kept database holding exactly these views, and a fresh cursor on it."""
        with self._lock:
            sandbox = self._sandboxes.get(key)
            if sandbox is not None:
                sandbox.users += 1
                return sandbox, sandbox.con.cursor()
        opened = _Sandbox(_open_sandbox(views, "", config=SHARED_CONFIG))
        with self._lock:
            sandbox = self._sandboxes.get(key)
            if sandbox is None:  # else another thread opened it meanwhile: use that one
                sandbox = opened
                for old in self._sandboxes.put(key, sandbox):
                    self._evict(old)
            sandbox.users += 1
            cursor = sandbox.con.cursor()
        if sandbox is not opened:
            opened.con.close()
        return sandbox, cursor

    def _checkin(self, sandbox: _Sandbox, cursor: duckdb.DuckDBPyConnection) -> None:
        cursor.close()
        with self._lock:
            sandbox.users -= 1
            if sandbox.evicted and sandbox.users == 0:
                sandbox.con.close()

    @staticmethod
    def _evict(sandbox: _Sandbox) -> None:
        sandbox.evicted = True
        if sandbox.users == 0:
            sandbox.con.close()


def run_sql(
    catalog: SqlCatalog, query: str, pins: Mapping[str, Pin] | None = None
) -> pa.Table:
    """Run one SQL query over lakehouse tables (see :meth:`SqlRunner.run`); keeps nothing."""
    runner = SqlRunner(catalog)
    try:
        return runner.run(query, pins)
    finally:
        runner.close()

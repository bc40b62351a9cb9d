"""SQL over lakehouse tables with DuckDB.

Tables are referred to as ``namespace.table``. Each table the query names is read (at its
current snapshot, or at the snapshot/tag it is pinned to) and exposed to DuckDB as a view in
a schema of the same name, so ordinary SQL works unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import duckdb
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog

from icefloe.errors import InvalidInputError, NoSuchTableError, QueryError
from icefloe.lakehouse.catalog import list_table_names
from icefloe.lakehouse.names import TableName, parse_table_name
from icefloe.lakehouse.tables import read_arrow

_QUALIFIED = re.compile(r'"?([A-Za-z_][A-Za-z0-9_]*)"?\s*\.\s*"?([A-Za-z_][A-Za-z0-9_]*)"?')
_STRING_OR_COMMENT = re.compile(r"'(?:[^']|'')*'|--[^\n]*|/\*.*?\*/", re.DOTALL)

Pin = int | str


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

    con = duckdb.connect(database=":memory:")
    try:
        for i, name in enumerate(tables):
            ref = pinned.get(name)
            data = read_arrow(
                catalog,
                str(name),
                snapshot_id=ref if isinstance(ref, int) else None,
                tag=ref if isinstance(ref, str) else None,
            )
            alias = f"__icefloe_table_{i}"
            con.register(alias, data)
            # Names were validated as plain identifiers, so quoting them is safe.
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{name.namespace}"')
            con.execute(f'CREATE VIEW "{name.namespace}"."{name.table}" AS SELECT * FROM {alias}')
        try:
            return con.execute(query).to_arrow_table()
        except duckdb.Error as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise QueryError(f"SQL error: {first_line}") from exc
    finally:
        con.close()

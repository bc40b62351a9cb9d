"""Opening the Iceberg SQL catalog, retrying lost races, and looking tables up.

This is one of the few modules that touch the catalog database. SQLite gets WAL mode and a
busy timeout so that several processes can write at once; any other SQLAlchemy URL is used
as given.
"""

from __future__ import annotations

import contextlib
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from pyiceberg.catalog.sql import IcebergTables, SqlCatalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
)
from pyiceberg.exceptions import (
    NoSuchNamespaceError as IcebergNoSuchNamespace,
)
from pyiceberg.exceptions import (
    NoSuchTableError as IcebergNoSuchTable,
)
from pyiceberg.table import Table
from sqlalchemy import Select, bindparam, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from icefloe.config import Settings
from icefloe.errors import ConflictError, NoSuchNamespaceError, NoSuchTableError
from icefloe.home import create_file
from icefloe.lakehouse.names import TableName, parse_table_name, validate_namespace
from icefloe.storage import pyiceberg_properties
from icefloe.store.schemas import ensure_schema

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_S = 30
T = TypeVar("T")


def is_lost_race(exc: BaseException) -> bool:
    """True for errors that mean another writer got there first and a retry may succeed."""
    if isinstance(exc, CommitFailedException):
        return True
    if isinstance(exc, OperationalError | sqlite3.OperationalError):
        text = str(exc).lower()
        return "database is locked" in text or "database table is locked" in text
    return False


def retry_lost_races(
    action: Callable[[], T],
    what: str,
    *,
    attempts: int = 40,
    max_wait_s: float = 180.0,
) -> T:
    """Run ``action`` until it stops losing races to concurrent writers.

    Only errors for which :func:`is_lost_race` is true are retried, with jittered exponential
    backoff; everything else propagates at once. ``action`` must be safe to run again, i.e.
    it must check whether an earlier attempt already landed.

    Raises:
        ConflictError: Still losing after ``attempts`` tries or ``max_wait_s`` seconds.
    """
    deadline = time.monotonic() + max_wait_s
    delay = 0.02
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as exc:
            if not is_lost_race(exc):
                raise
            if attempt == attempts or time.monotonic() > deadline:
                raise ConflictError(
                    f"{what}: gave up after {attempt} attempts, other writers kept winning"
                ) from exc
            log.debug("%s lost a race (attempt %d): %s", what, attempt, exc)
            time.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter, not crypto
            delay = min(delay * 2, 1.0)
    raise AssertionError("unreachable")


def _prepare_sqlite(uri: str) -> str:
    """Create the SQLite file's folder, switch it to WAL, and add a busy timeout to the URI."""
    url = make_url(uri)
    if url.database and url.database != ":memory:":
        path = Path(url.database)
        create_file(path)  # group-writable when the lake is shared with the job user

        def set_wal() -> None:
            with sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S) as conn:
                conn.execute("PRAGMA journal_mode=WAL")

        retry_lost_races(set_wal, f"opening catalog {path}")
    if "timeout" not in url.query:
        url = url.update_query_dict({"timeout": str(SQLITE_BUSY_TIMEOUT_S)})
    return url.render_as_string(hide_password=False)


def open_catalog(settings: Settings) -> SqlCatalog:
    """Open (and create on first use) the Iceberg SQL catalog named by the settings."""
    uri = settings.resolved_catalog_uri
    if make_url(uri).get_backend_name() == "sqlite":
        uri = _prepare_sqlite(uri)
    ensure_schema(uri)
    warehouse = settings.warehouse_path
    if warehouse.startswith("file://"):
        Path(warehouse.removeprefix("file://")).mkdir(parents=True, exist_ok=True)

    def connect() -> SqlCatalog:
        try:
            return SqlCatalog(settings.catalog_name, uri=uri, warehouse=warehouse,
                              **pyiceberg_properties(settings))
        except OperationalError as exc:
            # Two processes creating the catalog tables at once: the loser sees "already
            # exists"; the next attempt finds them and goes on.
            if "already exists" in str(exc).lower():
                raise CommitFailedException(str(exc)) from exc
            raise

    return retry_lost_races(connect, "opening the Iceberg catalog")


def ensure_namespace(catalog: SqlCatalog, namespace: str) -> None:
    """Create ``namespace`` if it does not exist (safe against concurrent creators)."""
    validate_namespace(namespace)
    with contextlib.suppress(NamespaceAlreadyExistsError):  # a concurrent creator won
        catalog.create_namespace_if_not_exists(namespace)


def list_namespaces(catalog: SqlCatalog) -> list[str]:
    """All namespaces, sorted."""
    return sorted(".".join(ns) for ns in catalog.list_namespaces())


def list_table_names(catalog: SqlCatalog, namespace: str | None = None) -> list[TableName]:
    """Tables in one namespace, or in all of them, sorted by name."""
    namespaces = [validate_namespace(namespace)] if namespace else list_namespaces(catalog)
    names: list[TableName] = []
    for ns in namespaces:
        try:
            identifiers = catalog.list_tables(ns)
        except IcebergNoSuchNamespace as exc:
            raise NoSuchNamespaceError(f"namespace {ns!r} does not exist") from exc
        names.extend(TableName(ns, ident[-1]) for ident in identifiers)
    return sorted(names)


_LOCATION_QUERIES: dict[object, Select[str, str, str | None]] = {}


def _location_query(catalog: SqlCatalog) -> Select[str, str, str | None]:
    """The (kept, so compiled once) query for tables' metadata locations by name."""
    # Views written by other engines share the table; PyIceberg's own filter keeps them out.
    version = getattr(catalog, "_schema_version", None)
    cached = _LOCATION_QUERIES.get(version)
    if cached is not None:
        return cached
    stmt = select(
        IcebergTables.table_namespace,
        IcebergTables.table_name,
        IcebergTables.metadata_location,
    ).where(
        IcebergTables.catalog_name == bindparam("catalog"),
        IcebergTables.table_namespace.in_(bindparam("namespaces", expanding=True)),
        IcebergTables.table_name.in_(bindparam("tables", expanding=True)),
    )
    type_filter = getattr(catalog, "_iceberg_type_filter", lambda: None)()
    if type_filter is not None:
        stmt = stmt.where(type_filter)
    _LOCATION_QUERIES[version] = stmt
    return stmt


def table_locations(catalog: SqlCatalog, names: Iterable[TableName]) -> dict[TableName, str]:
    """The current metadata file of each of ``names`` that exists, in one catalog query.

    A metadata file never changes once written, so its location identifies the table's
    state: anything derived from it can be kept for as long as the location is current.
    """
    wanted = set(names)
    if not wanted:
        return {}
    params = {
        "catalog": catalog.name,
        "namespaces": sorted({n.namespace for n in wanted}),
        "tables": sorted({n.table for n in wanted}),
    }
    with catalog.engine.connect() as conn:
        rows = conn.execute(_location_query(catalog), params).all()
    found = {TableName(ns, table): location for ns, table, location in rows if location}
    return {name: location for name, location in found.items() if name in wanted}


def load_table(catalog: SqlCatalog, name: str | TableName) -> Table:
    """Load a table by ``namespace.table``, with an error that says which part is missing."""
    tname = name if isinstance(name, TableName) else parse_table_name(name)
    try:
        return catalog.load_table((tname.namespace, tname.table))
    except IcebergNoSuchTable as exc:
        if not catalog.namespace_exists(tname.namespace):
            raise NoSuchNamespaceError(
                f"namespace {tname.namespace!r} does not exist (table {tname})"
            ) from exc
        raise NoSuchTableError(f"table {tname} does not exist") from exc


def table_exists(catalog: SqlCatalog, name: TableName) -> bool:
    """True if the table exists."""
    return bool(catalog.table_exists((name.namespace, name.table)))

"""Incremental loads from an operational database: new rows by a watermark column into a
staging table and an Iceberg table, exactly once across reruns and crashes.

Each load reads the rows whose watermark is past the last one loaded, writes them to the
staging table (replaced each time), then appends them to the target in one commit whose
snapshot summary records the new watermark. The watermark therefore moves with the data: a
load that fails or is killed before that commit leaves the target and its watermark as they
were, and a rerun loads the same rows again; a load that committed is never repeated. Two
loads racing read the same rows, but only the first commits: the second finds the
watermark moved under it and stops (nothing written). Rolling the target back to before a
load moves its watermark back too, so the next load brings those rows again.

The watermark column must grow with every new row (an identity key, or an insert
timestamp with a tie-breaker): rows that arrive later with a watermark at or below the last
one loaded are not seen.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from icefloe.config import mask_password
from icefloe.errors import ConflictError, InvalidInputError
from icefloe.happenings import Dataset

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from icefloe.lakehouse import Lakehouse

WATERMARK_PREFIX = "icefloe.watermark."
SOURCE_PROPERTY = "icefloe.ingest.source"
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")
FETCH = 50_000  # rows per round trip to the source


@dataclass(frozen=True)
class Source:
    """A table of an operational database and its watermark column."""

    url: str
    table: str  # ``table`` or ``schema.table``
    watermark: str

    def __post_init__(self) -> None:
        parts = self.table.split(".")
        if not 1 <= len(parts) <= 2 or not all(IDENTIFIER.fullmatch(p) for p in parts):
            raise InvalidInputError(f"source table {self.table[:100]!r}: expected TABLE or "
                                    "SCHEMA.TABLE of letters, digits and _")
        if not IDENTIFIER.fullmatch(self.watermark):
            raise InvalidInputError(f"watermark column {self.watermark[:100]!r}: expected a "
                                    "name of letters, digits and _")

    @property
    def shown(self) -> str:
        """The source as printed and recorded: its URL without the password."""
        return f"{mask_password(self.url)} {self.table}"

    @property
    def key(self) -> str:
        """The summary property that holds this source's watermark (no secret in it)."""
        digest = hashlib.sha256(self.shown.encode() + b"\0" + self.watermark.encode())
        return WATERMARK_PREFIX + digest.hexdigest()[:16]


@dataclass(frozen=True)
class Loaded:
    """What one load did."""

    target: str
    rows: int
    watermark_before: Any
    watermark_after: Any
    snapshot_id: int | None
    staging_snapshot_id: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (watermarks as text)."""
        out = asdict(self)
        for key in ("watermark_before", "watermark_after"):
            value = out[key]
            out[key] = None if value is None else _text(value)
        return out


def encode(value: Any) -> str:
    """A watermark as stored in a snapshot summary: its type and its text."""
    kind = ("timestamp" if isinstance(value, datetime) else "date" if isinstance(value, date)
            else "decimal" if isinstance(value, Decimal) else "int" if isinstance(value, int)
            else "float" if isinstance(value, float) else "string")
    return json.dumps({"type": kind, "value": _text(value)})


def decode(stored: str) -> Any:
    """The watermark value :func:`encode` stored."""
    found = json.loads(stored)
    kind, text = found["type"], found["value"]
    readers: dict[str, Callable[[str], Any]] = {
        "timestamp": datetime.fromisoformat, "date": date.fromisoformat, "decimal": Decimal,
        "int": int, "float": float, "string": str}
    return readers[kind](text)


def _text(value: Any) -> str:
    return value.isoformat() if isinstance(value, (date, datetime)) else str(value)


def last_watermark(table: Table | None, source: Source) -> Any:
    """The watermark of the newest load from ``source`` in the table's current history
    (None: nothing loaded yet, or every load was rolled back)."""
    if table is None:
        return None
    by_id = {s.snapshot_id: s for s in table.metadata.snapshots}
    current = table.current_snapshot()
    at = current.snapshot_id if current is not None else None
    seen: set[int] = set()
    while at is not None and at in by_id and at not in seen:
        seen.add(at)
        snap = by_id[at]
        props = snap.summary.additional_properties if snap.summary is not None else {}
        if source.key in props:
            return decode(props[source.key])
        at = snap.parent_snapshot_id
    return None


def read_increment(source: Source, after: Any, limit: int | None = None) -> pa.Table:
    """The source's rows with a watermark past ``after`` (all rows for None), in watermark
    order, at most ``limit``. Names are bound by SQLAlchemy, values as parameters: nothing
    from the caller becomes SQL text."""
    from sqlalchemy import column, literal_column, select, table

    from icefloe.store.db import make_engine

    schema, _, name = source.table.rpartition(".")
    src = table(name, column(source.watermark), schema=schema or None)
    query: Any = select(literal_column("*")).select_from(src)
    if after is not None:
        query = query.where(src.c[source.watermark] > after)
    query = query.order_by(src.c[source.watermark])
    if limit is not None:
        query = query.limit(limit)
    engine = make_engine(source.url)
    try:
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True).execute(query)
            names = list(result.keys())
            batches = []
            while rows := result.fetchmany(FETCH):
                batches.append(pa.Table.from_pylist([dict(zip(names, r, strict=True))
                                                     for r in rows]))
    finally:
        engine.dispose()
    if not batches:
        return pa.table({n: pa.array([], pa.null()) for n in names})
    return pa.concat_tables(batches, promote_options="permissive")


def ingest(lakehouse: Lakehouse, source: Source, target: str, *, staging: str | None = None,
           limit: int | None = None, evolve: bool = False) -> Loaded:
    """Load the source's new rows into ``staging`` (replaced) and ``target`` (appended; made
    on the first load), exactly once.

    Args:
        lakehouse: Where the tables are.
        source: The operational table and its watermark column.
        target: ``namespace.table`` to append to.
        staging: ``namespace.table`` each load's rows land in first (replaced every load).
        limit: Load at most this many rows (the oldest new ones); the next load goes on.
        evolve: Add columns the source gained to the target (else such a load is refused,
            with nothing written).

    Raises:
        ConflictError: Another load of the same source into the target committed first
            (nothing was written by this one; rerun to load what is new after it).
        SchemaMismatchError: The rows do not fit the target (nothing was written to it).
    """
    before = last_watermark(_table_or_none(lakehouse, target), source)
    rows = read_increment(source, before, limit)
    return commit_increment(lakehouse, source, target, rows, before, staging=staging,
                            evolve=evolve)


def _table_or_none(lakehouse: Lakehouse, name: str) -> Table | None:
    from icefloe.lakehouse.names import parse_table_name
    from icefloe.lakehouse.tables import table_exists

    return lakehouse.table(name) if table_exists(lakehouse.catalog,
                                                 parse_table_name(name)) else None


def commit_increment(lakehouse: Lakehouse, source: Source, target: str, rows: pa.Table,
                     before: Any, *, staging: str | None = None,
                     evolve: bool = False) -> Loaded:
    """Write rows read after watermark ``before``: to staging, then to the target in one
    commit that records their last watermark, only while the target's watermark is still
    ``before`` (:class:`ConflictError` otherwise, with nothing written to the target)."""
    from icefloe.lakehouse.names import parse_table_name

    if rows.num_rows == 0:
        return Loaded(target, 0, before, before, None, None)
    after = rows.column(source.watermark)[rows.num_rows - 1].as_py()
    shown = {SOURCE_PROPERTY: source.shown[:500]}
    inputs: tuple[Dataset, ...] = ()
    staged = None
    if staging is not None:
        lakehouse.create_namespace(parse_table_name(staging).namespace)
        mode = "overwrite" if _table_or_none(lakehouse, staging) is not None else "create"
        staged = lakehouse.write(staging, rows, mode, evolve=True, properties=shown,
                                 subject={"via": "ingest"})
        inputs = (staged.dataset(rows.column_names),)

    def unchanged(table: Table) -> None:
        now = last_watermark(table, source)
        if now != before:
            raise ConflictError(f"another load from {source.table} into {target} committed "
                                f"first (watermark {None if now is None else _text(now)}); "
                                "nothing was written: rerun to load what is new after it")

    existing = _table_or_none(lakehouse, target)
    if existing is None:
        if before is not None:  # the target went away after the watermark was read
            raise ConflictError(f"{target} was dropped while loading; nothing was written")
        lakehouse.create_namespace(parse_table_name(target).namespace)
    written = lakehouse.write(
        target, rows, "append" if existing is not None else "create", evolve=evolve,
        properties={source.key: encode(after), **shown}, precondition=unchanged,
        inputs=inputs, subject={"via": "ingest"})
    return Loaded(target, rows.num_rows, before, after, written.snapshot.snapshot_id,
                  staged.snapshot.snapshot_id if staged is not None else None)

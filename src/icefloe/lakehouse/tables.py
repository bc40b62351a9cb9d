"""Writing and reading table data: create, append, overwrite, read at a snapshot.

Every write is one Iceberg commit: schema evolution and the new data land together or not at
all. Writes carry a unique id in their snapshot summary so that a retry after a lost race can
tell whether the earlier attempt landed, which makes concurrent appends exactly-once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import TableAlreadyExistsError
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from icefloe.errors import ConflictError, InvalidInputError
from icefloe.happenings import Actor, Dataset
from icefloe.lakehouse.catalog import (
    ensure_namespace,
    load_table,
    retry_lost_races,
    table_exists,
)
from icefloe.lakehouse.names import TableName, parse_table_name
from icefloe.lakehouse.schema import (
    cast_to_table,
    evolution_schema,
    normalize_arrow,
    plan_write,
)
from icefloe.lakehouse.snapshots import SnapshotInfo, resolve_snapshot, snapshot_info

WRITE_MODES: tuple[str, ...] = ("auto", "create", "append", "overwrite")
WRITE_ID_PROPERTY = "icefloe.write-id"
# Who wrote a snapshot, kept in its summary (lineage reads them back).
RUN_ID_PROPERTY = "icefloe.run-id"
USER_PROPERTY = "icefloe.user"


@dataclass(frozen=True)
class WriteResult:
    """What a write did."""

    table: str
    mode: str
    rows: int
    snapshot: SnapshotInfo
    new_columns: tuple[str, ...] = ()
    widened_columns: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """JSON-able form."""
        out = asdict(self)
        out["snapshot"] = self.snapshot.to_dict()
        return out

    def dataset(self, fields: Sequence[str] = ()) -> Dataset:
        """The snapshot written, as a happening's output."""
        return Dataset(name=self.table, snapshot_id=self.snapshot.snapshot_id,
                       fields=tuple(fields), rows=self.rows)


def writer_properties(actor: Actor) -> dict[str, str]:
    """The snapshot summary properties naming who writes: the user, and the job run."""
    props = {USER_PROPERTY: actor.user[:255]}
    if actor.run_id:
        props[RUN_ID_PROPERTY] = actor.run_id[:64]
    return props


def writer_of(snapshot: Snapshot) -> dict[str, str | None]:
    """Who wrote a snapshot, read back from its summary: ``user`` and ``run_id`` (None where
    the summary does not say, e.g. a snapshot written by another engine)."""
    props = snapshot.summary.additional_properties if snapshot.summary is not None else {}
    return {"user": props.get(USER_PROPERTY) or None,
            "run_id": props.get(RUN_ID_PROPERTY) or None}


def _landed(table: Table, write_id: str) -> int | None:
    """Last snapshot of this write if it was committed (an overwrite commits two: delete, add)."""
    found: int | None = None
    for snap in sorted(table.metadata.snapshots, key=lambda s: s.sequence_number or 0):
        props = snap.summary.additional_properties if snap.summary is not None else {}
        if props.get(WRITE_ID_PROPERTY) == write_id:
            found = snap.snapshot_id
    return found


def write_arrow(
    catalog: SqlCatalog,
    name: str,
    data: pa.Table,
    mode: str = "append",
    *,
    evolve: bool = False,
    properties: dict[str, str] | None = None,
    table_properties: dict[str, str] | None = None,
    replacing: tuple[str, Sequence[str]] | None = None,
    precondition: Callable[[Table], None] | None = None,
) -> WriteResult:
    """Write an Arrow table to an Iceberg table in one commit.

    Args:
        catalog: The catalog.
        name: ``namespace.table``; the namespace is created when creating a table.
        data: Rows to write.
        mode: ``create`` (fails if the table exists), ``append``, ``overwrite``, or ``auto``
            (create when the table does not exist yet, else append).
        evolve: Add new columns by name and widen compatible types instead of refusing.
        properties: Extra snapshot summary properties (e.g. the source file).
        table_properties: Table properties set when the table is created.
        replacing: ``(column, values)``: with ``append``, rows whose ``column`` holds one of
            ``values`` are deleted in the same commit, so rows can be replaced by key (an
            upsert whose keys the caller knows); a reader sees the old rows or the new ones.
        precondition: Called with the table as it is right before each commit attempt
            (again after a lost race); raising stops the write with nothing committed, e.g.
            when another writer moved a watermark this write depends on.

    Returns:
        The snapshot the write created.

    Raises:
        SchemaMismatchError: The data does not fit and ``evolve`` is off (or cannot help).
        ConflictError: ``create`` on an existing table, or too many lost races.
    """
    if mode not in WRITE_MODES:
        raise InvalidInputError(f"unknown write mode {mode!r}; use one of {', '.join(WRITE_MODES)}")
    tname = parse_table_name(name)
    data = normalize_arrow(data)
    write_id = uuid.uuid4().hex
    summary = {**(properties or {}), WRITE_ID_PROPERTY: write_id}

    if mode == "auto":
        mode = "append" if table_exists(catalog, tname) else "create"
    if mode == "create":
        return _create(catalog, tname, data, summary, table_properties or {})

    def attempt() -> WriteResult:
        table = load_table(catalog, tname)
        if (done := _landed(table, write_id)) is not None:
            return _result(catalog, tname, mode, data, done)
        if precondition is not None:
            precondition(table)
        plan = plan_write(str(tname), table.schema(), data.schema, evolve)
        with table.transaction() as tx:
            if plan.changes_schema:
                with tx.update_schema() as update:
                    update.union_by_name(evolution_schema(table.schema(), data.schema, plan))
            fitted = cast_to_table(data, tx.table_metadata.schema(), str(tname))
            if replacing is not None and replacing[1] and mode == "append":
                from pyiceberg.expressions import In

                # In(term, literals) at run time; its pydantic stub misleads mypy.
                keys = In(replacing[0], list(replacing[1]))  # type: ignore[call-arg,arg-type]
                tx.delete(keys, snapshot_properties=properties or {})
            if mode == "append":
                tx.append(fitted, snapshot_properties=summary)
            else:
                tx.overwrite(fitted, snapshot_properties=summary)
        done = _landed(load_table(catalog, tname), write_id)
        assert done is not None, "commit returned but its snapshot is missing"
        return _result(catalog, tname, mode, data, done, plan.new_columns, plan.widened_columns)

    return retry_lost_races(attempt, f"writing to {tname}")


def _create(
    catalog: SqlCatalog,
    tname: TableName,
    data: pa.Table,
    summary: dict[str, str],
    table_properties: dict[str, str],
) -> WriteResult:
    if table_exists(catalog, tname):
        raise ConflictError(f"table {tname} already exists; use mode append or overwrite")
    ensure_namespace(catalog, tname.namespace)
    try:
        tx = catalog.create_table_transaction(
            (tname.namespace, tname.table), schema=data.schema, properties=table_properties
        )
        fitted = cast_to_table(data, tx.table_metadata.schema(), str(tname))
        tx.append(fitted, snapshot_properties=summary)
        tx.commit_transaction()
    except TableAlreadyExistsError as exc:
        raise ConflictError(f"table {tname} already exists; use mode append or overwrite") from exc
    table = load_table(catalog, tname)
    snap_id = _landed(table, summary[WRITE_ID_PROPERTY])
    assert snap_id is not None
    return _result(catalog, tname, "create", data, snap_id, tuple(data.column_names))


def _result(
    catalog: SqlCatalog,
    tname: TableName,
    mode: str,
    data: pa.Table,
    snapshot_id: int,
    new_columns: tuple[str, ...] = (),
    widened: tuple[str, ...] = (),
) -> WriteResult:
    table = load_table(catalog, tname)
    snap = table.snapshot_by_id(snapshot_id)
    assert snap is not None
    return WriteResult(
        table=str(tname),
        mode=mode,
        rows=data.num_rows,
        snapshot=snapshot_info(table, snap),
        new_columns=new_columns,
        widened_columns=widened,
    )


def read_arrow(
    catalog: SqlCatalog,
    name: str,
    *,
    snapshot_id: int | None = None,
    tag: str | None = None,
    as_of: str | int | None = None,
    columns: list[str] | None = None,
    limit: int | None = None,
) -> pa.Table:
    """Read a table as Arrow, at its current snapshot or at a snapshot id, tag or time.

    The rows are read with the schema the snapshot was written with, so a read after a
    rollback shows exactly the columns and rows of the snapshot rolled back to.
    """
    table = load_table(catalog, name)
    snap = resolve_snapshot(table, snapshot_id=snapshot_id, tag=tag, as_of=as_of)
    if snap is None:
        return schema_to_pyarrow(table.schema(), include_field_ids=False).empty_table()
    scan = table.scan(
        snapshot_id=snap.snapshot_id,
        selected_fields=tuple(columns) if columns else ("*",),
        limit=limit,
    )
    return scan.to_arrow()


def drop_table(catalog: SqlCatalog, name: str, *, purge: bool = True) -> None:
    """Drop a table; with ``purge`` its data and metadata files are deleted too."""
    tname = parse_table_name(name)
    load_table(catalog, tname)  # raises a clear error for unknown tables
    if purge:
        catalog.purge_table((tname.namespace, tname.table))
    else:
        catalog.drop_table((tname.namespace, tname.table))

"""The lakehouse: versioned Iceberg tables with snapshots, tags, time travel and SQL.

Use :class:`Lakehouse` from Python::

    from icefloe.lakehouse import Lakehouse
    lh = Lakehouse()                       # settings from the environment / config file
    lh.write("lending.loans", arrow_or_pandas, mode="create")
    lh.read("lending.loans", snapshot_id=...)
    lh.sql("SELECT count(*) FROM lending.loans")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import Table

from icefloe.config import Settings, load_settings
from icefloe.errors import InvalidInputError
from icefloe.happenings import Actor, Dataset, Happening, emit, process_actor, process_parent
from icefloe.lakehouse import catalog as _catalog
from icefloe.lakehouse import snapshots as _snapshots
from icefloe.lakehouse import sql as _sql
from icefloe.lakehouse import tables as _tables
from icefloe.lakehouse.files import ProgressCallback, read_file
from icefloe.lakehouse.names import TableName, parse_table_name
from icefloe.lakehouse.snapshots import Rollback, SnapshotInfo
from icefloe.lakehouse.tables import WriteResult

__all__ = ["Lakehouse", "Rollback", "SnapshotInfo", "TableName", "WriteResult", "to_arrow"]


def to_arrow(data: Any) -> pa.Table:
    """Accept Arrow tables, record batches or pandas DataFrames; refuse anything else."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(data, pd.DataFrame):
        return pa.Table.from_pandas(data, preserve_index=False)
    raise InvalidInputError(
        f"cannot write a {type(data).__name__}: pass a pyarrow Table, a pandas DataFrame, "
        "or a Spark DataFrame through icefloe.compute.write_table"
    )


class Lakehouse:
    """Versioned tables in an Iceberg SQL catalog.

    Args:
        settings: Settings to use; loaded from the environment and config file if omitted.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()

    @cached_property
    def catalog(self) -> SqlCatalog:
        """The PyIceberg catalog (opened on first use)."""
        return _catalog.open_catalog(self.settings)

    def table(self, name: str) -> Table:
        """The PyIceberg table object, for anything this class does not wrap."""
        return _catalog.load_table(self.catalog, name)

    def namespaces(self) -> list[str]:
        """All namespaces."""
        return _catalog.list_namespaces(self.catalog)

    def create_namespace(self, namespace: str) -> None:
        """Create a namespace if it does not exist."""
        _catalog.ensure_namespace(self.catalog, namespace)

    def tables(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Tables with their current snapshot, row count and column count."""
        out = []
        for name in _catalog.list_table_names(self.catalog, namespace):
            table = _catalog.load_table(self.catalog, name)
            current = table.current_snapshot()
            info = _snapshots.snapshot_info(table, current) if current else None
            out.append(
                {
                    "table": str(name),
                    "current_snapshot_id": current.snapshot_id if current else None,
                    "rows": info.total_rows if info else 0,
                    "columns": len(table.schema().fields),
                    "snapshots": len(table.metadata.snapshots),
                    "location": table.location(),
                }
            )
        return out

    def write(
        self,
        name: str,
        data: Any,
        mode: str = "append",
        *,
        evolve: bool = False,
        properties: dict[str, str] | None = None,
        table_properties: dict[str, str] | None = None,
        replacing: tuple[str, Sequence[str]] | None = None,
        precondition: Callable[[Table], None] | None = None,
        inputs: Sequence[Dataset] = (),
        actor: Actor | None = None,
        happening: str | None = "table.write",
        subject: Mapping[str, Any] | None = None,
    ) -> WriteResult:
        """Create, append to or overwrite a table in one commit (see ``tables.write_arrow``;
        ``replacing`` deletes rows by key in the same commit).

        The snapshot's summary names who wrote it (``icefloe.user``, ``icefloe.run-id``) and
        the write is published on the happenings bus (lineage, access, OpenLineage).

        Args:
            inputs: What the rows were made from (snapshots read, files loaded).
            actor: Who writes (default: this process's job run and user).
            happening: The kind the write is published as (``table.write``, ``sql.report``,
                ``monitoring.window``...); None publishes nothing.
            subject: Facts for the happening, e.g. ``{"via": "export"}``.
        """
        who = actor or process_actor()
        arrow = to_arrow(data)
        result = _tables.write_arrow(
            self.catalog,
            name,
            arrow,
            mode,
            evolve=evolve,
            properties={**_tables.writer_properties(who), **(properties or {})},
            table_properties=table_properties,
            replacing=replacing,
            precondition=precondition,
        )
        if happening:
            emit(lambda: Happening(happening, actor=who, inputs=tuple(inputs),
                                   outputs=(result.dataset(arrow.column_names),),
                                   subject=dict(subject or {}), parent=process_parent()))
        return result

    def drop(self, name: str, *, purge: bool = True) -> None:
        """Drop a table (and delete its files when ``purge``)."""
        _tables.drop_table(self.catalog, name, purge=purge)

    def load_file(
        self,
        name: str,
        path: str | Path,
        mode: str = "auto",
        *,
        evolve: bool = False,
        progress: ProgressCallback | None = None,
        table_properties: dict[str, str] | None = None,
    ) -> WriteResult:
        """Load a CSV or Parquet file into a table; the file name is kept in the snapshot."""
        parse_table_name(name)  # refuse a bad name before reading a large file
        if mode not in _tables.WRITE_MODES:
            raise InvalidInputError(
                f"unknown write mode {mode!r}; use one of {', '.join(_tables.WRITE_MODES)}"
            )
        data = read_file(path, progress=progress)
        return self.write(
            name,
            data,
            mode,
            evolve=evolve,
            properties={"icefloe.source": Path(path).name},
            table_properties=table_properties,
            inputs=(Dataset(str(Path(path).absolute()), kind="file", rows=data.num_rows),),
            subject={"via": "load"},
        )

    def read(
        self,
        name: str,
        *,
        snapshot_id: int | None = None,
        tag: str | None = None,
        as_of: str | int | None = None,
        columns: list[str] | None = None,
        limit: int | None = None,
    ) -> pa.Table:
        """Read a table as Arrow at its current snapshot, a snapshot id, a tag or a time."""
        if limit is not None and limit < 0:
            raise InvalidInputError(f"limit must be >= 0, got {limit}")
        table = _catalog.load_table(self.catalog, name)
        if columns:
            missing = [c for c in columns if c not in table.schema().column_names]
            if missing:
                raise InvalidInputError(f"unknown column(s) in {name}: {', '.join(missing)}")
        return _tables.read_arrow(
            self.catalog,
            name,
            snapshot_id=snapshot_id,
            tag=tag,
            as_of=as_of,
            columns=columns,
            limit=limit,
        )

    def snapshots(self, name: str) -> list[SnapshotInfo]:
        """The table's history, oldest first."""
        return _snapshots.history(self.table(name))

    def current_snapshot(self, name: str) -> SnapshotInfo | None:
        """The current snapshot, or None for a table with no data yet."""
        table = self.table(name)
        snap = table.current_snapshot()
        return _snapshots.snapshot_info(table, snap) if snap else None

    def resolve(
        self,
        name: str,
        *,
        snapshot_id: int | None = None,
        tag: str | None = None,
        as_of: str | int | None = None,
    ) -> SnapshotInfo | None:
        """The snapshot a read with these arguments would see."""
        table = self.table(name)
        snap = _snapshots.resolve_snapshot(table, snapshot_id=snapshot_id, tag=tag, as_of=as_of)
        return _snapshots.snapshot_info(table, snap) if snap else None

    def tag(self, name: str, tag: str, snapshot_id: int | None = None) -> SnapshotInfo:
        """Tag a snapshot (the current one by default)."""
        return _snapshots.create_tag(self.catalog, name, tag, snapshot_id)

    def tags(self, name: str) -> list[dict[str, object]]:
        """The table's tags."""
        return _snapshots.list_tags(self.table(name))

    def rollback(self, name: str, snapshot_id: int | str, *,
                 keep_schema: bool = False, actor: Actor | None = None) -> Rollback:
        """Make an earlier (or rolled-back-from) snapshot current; history is kept.

        Args:
            name: ``namespace.table``.
            snapshot_id: An id, a tag or a unique id prefix.
            keep_schema: Move only the snapshot; by default the snapshot's own schema becomes
                the current schema again in the same commit, so columns a later write added
                are gone from it (and a batch that has them needs ``evolve`` again).

            actor: Who rolls back, for the happening published (default: this process's).

        Returns:
            What changed: see :class:`icefloe.lakehouse.snapshots.Rollback`.
        """
        done = _snapshots.rollback(self.catalog, name, snapshot_id, keep_schema=keep_schema)
        emit(lambda: _rolled_back(done, actor or process_actor()))
        return done

    @cached_property
    def _sql_runner(self) -> _sql.SqlRunner:
        """Runs SQL, keeping table metadata, snapshot views and DuckDB databases between
        queries (snapshots never change)."""
        return _sql.SqlRunner(self.catalog)

    def sql(self, query: str, pins: Mapping[str, int | str] | None = None) -> pa.Table:
        """Run DuckDB SQL over the tables (``namespace.table``), optionally pinned."""
        return self._sql_runner.run(query, pins)

    def sql_read(self, query: str, pins: Mapping[str, int | str] | None = None, *,
                 visible: Callable[[TableName], bool] | None = None
                 ) -> tuple[pa.Table, tuple[Dataset, ...]]:
        """Run SQL like :meth:`sql`; also answers the snapshots it read (for lineage).
        Tables ``visible`` refuses are left out, as if they did not exist."""
        result, read = self._sql_runner.run_read(query, pins, visible=visible)
        return result, tuple(Dataset(name, snapshot_id=snap) for name, snap in read)


def _rolled_back(done: Rollback, actor: Actor) -> Happening | None:
    """The happening of a rollback (None when nothing moved)."""
    if done.previous_snapshot_id == done.snapshot.snapshot_id and not done.schema_changed:
        return None
    before = (Dataset(done.table, snapshot_id=done.previous_snapshot_id),) \
        if done.previous_snapshot_id is not None else ()
    return Happening("table.rollback", actor=actor, inputs=before,
                     outputs=(Dataset(done.table, snapshot_id=done.snapshot.snapshot_id),),
                     subject={"table": done.table, "from_snapshot_id": done.previous_snapshot_id,
                              "to_snapshot_id": done.snapshot.snapshot_id,
                              "schema_changed": done.schema_changed,
                              "columns_removed": list(done.columns_removed)},
                     parent=process_parent())

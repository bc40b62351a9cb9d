"""Planning a snapshot's data files for engines that read Parquet themselves (Spark, DuckDB).

PyIceberg plans which files make up a snapshot; each file was written under some schema of
the table. Files are grouped by their physical layout (field id, column name, type per
column), so an engine can read each group with one scan and map its columns onto the
snapshot's schema by field id: columns added later come back as nulls, widened columns are
cast. Only the footers are read here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.schema import Schema
from pyiceberg.table import Table

_FIELD_ID_KEY = b"PARQUET:field_id"


@dataclass(frozen=True)
class FileColumn:
    """One top-level column of a data file."""

    field_id: int | None
    name: str
    type: pa.DataType


FileLayout = tuple[FileColumn, ...]


@dataclass(frozen=True)
class SnapshotFiles:
    """The data files of one snapshot, grouped by layout."""

    snapshot_id: int
    schema: Schema
    groups: dict[FileLayout, list[str]] = field(default_factory=dict)
    has_deletes: bool = False

    @property
    def paths(self) -> list[str]:
        """Every data file path."""
        return [p for paths in self.groups.values() for p in paths]


def file_layout(table: Table, path: str) -> FileLayout:
    """Read one data file's footer and describe its columns."""
    with table.io.new_input(path).open() as stream:
        physical = pq.read_schema(stream)
    out = []
    for f in physical:
        raw = (f.metadata or {}).get(_FIELD_ID_KEY)
        out.append(FileColumn(int(raw) if raw is not None else None, f.name, f.type))
    return tuple(out)


def source_column(layout: FileLayout, field_id: int, name: str) -> FileColumn | None:
    """The column of a file that holds the schema field, matched by id (by name for files
    imported without field ids), or None when the file predates the field."""
    with_ids = [c for c in layout if c.field_id is not None]
    if with_ids:
        return next((c for c in with_ids if c.field_id == field_id), None)
    return next((c for c in layout if c.name == name), None)


def plan_snapshot_files(table: Table, snapshot_id: int) -> SnapshotFiles:
    """Plan the files of a snapshot and group them by layout."""
    scan = table.scan(snapshot_id=snapshot_id)
    tasks = list(scan.plan_files())
    groups: dict[FileLayout, list[str]] = defaultdict(list)
    has_deletes = any(task.delete_files for task in tasks)
    if not has_deletes:
        for task in tasks:
            groups[file_layout(table, task.file.file_path)].append(task.file.file_path)
    return SnapshotFiles(snapshot_id, scan.projection(), dict(groups), has_deletes)

"""``icefloe table ...``: load, list, inspect, time-travel, tag and roll back tables."""

from __future__ import annotations

from pathlib import Path

import typer

from icefloe.cli.output import (
    arrow_rows,
    console,
    load_progress,
    note,
    print_arrow,
    print_json,
    print_rows,
    success,
)
from icefloe.cli.state import snapshot_ref, state
from icefloe.errors import InvalidInputError

app = typer.Typer(help="Versioned Iceberg tables: load, snapshots, time travel, tags, rollback.",
                  no_args_is_help=True)

JSON = typer.Option(False, "--json", help="Print JSON for scripts.")
SNAPSHOT_COLUMNS = ["id", "parent", "time", "operation", "added_rows", "total_rows", "current",
                    "tags"]
REF = "SNAPSHOT_ID|PREFIX|TAG"


@app.command("load")
def load(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Table as namespace.table, e.g. lending.loans."),
    file: Path = typer.Argument(..., help="CSV or Parquet file."),
    mode: str = typer.Option(
        "auto", "--mode", help="create | append | overwrite | auto (create if new, else append)."
    ),
    evolve: bool = typer.Option(
        False, "--evolve", help="Add new columns by name and widen compatible types."
    ),
    as_json: bool = JSON,
) -> None:
    """Load a CSV or Parquet file into a table as one new snapshot (makes the home if
    there is none yet)."""
    lh = state(ctx).new_lakehouse()
    with load_progress(f"loading {file.name}") as progress:
        result = lh.load_file(name, file, mode, evolve=evolve, progress=progress)
    if as_json:
        print_json(result.to_dict())
        return
    extra = ""
    if result.mode != "create" and result.new_columns:
        extra = f"; new column(s): {', '.join(result.new_columns)}"
    if result.widened_columns:
        extra += f"; widened: {', '.join(result.widened_columns)}"
    success(
        f"{result.mode} {result.table}: {result.rows:,} rows -> snapshot "
        f"{result.snapshot.short_id} ({result.snapshot.total_rows:,} rows in total){extra}"
    )


@app.command("list")
def list_tables(
    ctx: typer.Context,
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="Only this namespace."),
    as_json: bool = JSON,
) -> None:
    """List tables with their current snapshot and row count."""
    lh = state(ctx).lakehouse
    rows = lh.tables(namespace)
    if as_json:
        print_json(rows)
    elif not rows:
        console.print("no tables yet: icefloe table load NAMESPACE.TABLE FILE")
    else:
        for row in rows:
            current = lh.current_snapshot(row["table"]) if row["current_snapshot_id"] else None
            row["snapshot"] = current.short_id if current else None
        print_rows(rows, ["table", "snapshot", "rows", "columns", "snapshots"])


@app.command("snapshots")
def snapshots(ctx: typer.Context, name: str, as_json: bool = JSON) -> None:
    """List the table's snapshot history (rolled-back snapshots included); the id column is
    each snapshot's shortest unique prefix, accepted wherever a snapshot is named."""
    history = state(ctx).lakehouse.snapshots(name)
    rows = [s.to_dict() for s in history]
    if as_json:
        print_json(rows)
        return
    short = {s.snapshot_id: s.short_id for s in history}
    for row, snap in zip(rows, history, strict=True):
        row["id"] = snap.short_id
        row["parent"] = short.get(snap.parent_id, snap.parent_id) if snap.parent_id else None
        row["tags"] = ", ".join(snap.tags)
        row["current"] = "*" if snap.current else ""
    print_rows(rows, SNAPSHOT_COLUMNS, title=f"{name} history")


@app.command("show")
def show(
    ctx: typer.Context,
    name: str,
    snapshot: str | None = typer.Option(
        None, "--snapshot", metavar=REF,
        help="Read this snapshot: an id, a unique prefix of one (6+ digits) or a tag."),
    tag: str | None = typer.Option(None, "--tag", help="Read the snapshot of this tag."),
    as_of: str | None = typer.Option(
        None, "--as-of", help="Read what was current at this time (ISO-8601 or epoch ms)."
    ),
    limit: int = typer.Option(20, "--limit", help="Rows to show; 0 shows all."),
    as_json: bool = JSON,
) -> None:
    """Show a table's rows at its current snapshot or at a snapshot, tag or time."""
    if limit < 0:
        raise InvalidInputError(f"--limit must be >= 0, got {limit}")
    from icefloe.lakehouse.snapshots import resolve_snapshot, snapshot_info

    lh = state(ctx).lakehouse
    table = lh.table(name)
    found = resolve_snapshot(table, ref=snapshot, tag=tag, as_of=as_of)
    snap = snapshot_info(table, found) if found else None
    snap_id = snap.snapshot_id if snap else None
    data = lh.read(name, snapshot_id=snap_id, limit=limit or None) if snap else None
    if data is not None:  # a read of the table's data: access tracking and lineage see it
        from icefloe.happenings import Dataset, Happening, emit

        emit(lambda: Happening("table.read", inputs=(Dataset(
            name, snapshot_id=snap_id, rows=data.num_rows),), subject={"via": "show"}))
    total = snap.total_rows if snap else 0
    if as_json:
        print_json(
            {
                "table": name,
                "snapshot": snap.to_dict() if snap else None,
                "row_count": total,
                "schema": [{"name": f.name, "type": str(f.type)} for f in data.schema]
                if data is not None
                else [],
                "rows": arrow_rows(data) if data is not None else [],
            }
        )
        return
    if data is None:
        console.print(f"{name} has no snapshot yet")
        return
    assert snap is not None
    title = f"{name} @ snapshot {snap.short_id} ({snap.time}) — {total:,} rows"
    if data.num_rows < (total or 0):
        title += f", showing {data.num_rows:,}"
    print_arrow(data, title=title)


@app.command("tag")
def tag(
    ctx: typer.Context,
    name: str,
    tag_name: str = typer.Argument(..., metavar="TAG"),
    snapshot: str | None = typer.Option(
        None, "--snapshot", metavar=REF,
        help="Snapshot to tag (default the current one): an id, a unique prefix or a tag."),
    as_json: bool = JSON,
) -> None:
    """Tag a snapshot (the current one by default) so it can be read by name later."""
    lh = state(ctx).lakehouse
    info = lh.tag(name, tag_name, snapshot_ref(lh, name, snapshot))
    if as_json:
        print_json({"table": name, "tag": tag_name, "snapshot": info.to_dict()})
    else:
        success(f"tagged snapshot {info.short_id} of {name} as {tag_name!r}")


@app.command("tags")
def tags(ctx: typer.Context, name: str, as_json: bool = JSON) -> None:
    """List the table's tags."""
    lh = state(ctx).lakehouse
    rows = lh.tags(name)
    if as_json:
        print_json(rows)
    else:
        short = {s.snapshot_id: s.short_id for s in lh.snapshots(name)}
        for row in rows:
            row["snapshot"] = short.get(int(str(row["snapshot_id"])))
        print_rows(rows, ["tag", "snapshot", "snapshot_id"], title=f"{name} tags")


@app.command("ingest")
def ingest(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The Iceberg table to append new rows to "
                                         "(namespace.table; made on the first load)."),
    source_table: str = typer.Option(..., "--source-table",
                                     help="The operational table: TABLE or SCHEMA.TABLE."),
    watermark: str = typer.Option(..., "--watermark",
                                  help="Its column that grows with every new row (an id, an "
                                       "insert time)."),
    staging: str | None = typer.Option(None, "--staging",
                                       help="An Iceberg table each load's rows land in first "
                                            "(replaced every load)."),
    limit: int | None = typer.Option(None, "--limit", min=1,
                                     help="Load at most this many rows (the oldest new ones)."),
    evolve: bool = typer.Option(False, "--evolve",
                                help="Add columns the source gained to the table."),
    source_url_env: str = typer.Option(
        "ICEFLOE_SOURCE_URL", "--source-url-env",
        help="The environment variable holding the source database's SQLAlchemy URL (e.g. a "
             "job's secret variable); the URL is never printed with its password."),
    as_json: bool = JSON,
) -> None:
    """Load the new rows of an operational database table (by a watermark column) into a
    staging table and an Iceberg table, exactly once across reruns and crashes."""
    import os

    from icefloe.lakehouse.ingest import Source
    from icefloe.lakehouse.ingest import ingest as load

    url = os.environ.get(source_url_env, "")
    if not url:
        raise InvalidInputError(f"the source database URL is not set: put it in "
                                f"${source_url_env} (or name another variable with "
                                "--source-url-env)")
    source = Source(url, source_table, watermark)
    done = load(state(ctx).lakehouse, source, name, staging=staging, limit=limit,
                evolve=evolve)
    if as_json:
        print_json(done.to_dict())
        return
    if not done.rows:
        note(f"no new rows in {source.table} after watermark "
             f"{done.watermark_before}; {name} unchanged")
        return
    success(f"{done.rows:,} new rows from {source.table} into {name} (snapshot "
            f"{done.snapshot_id}); watermark "
            f"{'none' if done.watermark_before is None else done.watermark_before} -> "
            f"{done.watermark_after}")


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    name: str,
    to: str | None = typer.Option(
        None, "--to", metavar=REF,
        help="Snapshot to make current: an id or a unique prefix of one from `table "
             "snapshots` (6+ digits), or a tag."),
    to_model: str | None = typer.Option(
        None, "--to-model", help="The snapshot a model version was trained on (NAME/VERSION)."
    ),
    keep_schema: bool = typer.Option(
        False, "--keep-schema",
        help="Move only the snapshot: columns added since stay in the current schema (by "
             "default the snapshot's own schema is made current again, so a batch with "
             "those columns needs --evolve again)."),
    as_json: bool = JSON,
) -> None:
    """Make an earlier snapshot current (or roll forward again), with the schema it was
    written with; history is kept."""
    if (to is None) == (to_model is None):
        raise InvalidInputError(f"give exactly one of --to {REF} or --to-model NAME/VERSION")
    lh = state(ctx).lakehouse
    target = snapshot_ref(lh, name, to)
    if to_model is not None:
        from icefloe.registry.mlflow_registry import ModelRegistry

        lineage = ModelRegistry(state(ctx).settings).lineage(to_model)
        if lineage.table != name:
            raise InvalidInputError(
                f"model {to_model} was trained on {lineage.table}, not {name}"
            )
        target = lineage.snapshot_id
    assert target is not None
    done = lh.rollback(name, target, keep_schema=keep_schema)
    info = done.snapshot
    if as_json:
        print_json({**done.to_dict(), "table": name})
        return
    success(
        f"{name} now at snapshot {info.short_id} ({info.total_rows:,} rows); "
        f"was {done.previous_short_id}"
    )
    if done.schema_changed:
        moved = "; ".join(part for part in (
            _columns("removed", done.columns_removed),
            _columns("back", done.columns_restored)) if part)
        success(f"schema restored to the snapshot's: schema id {done.previous_schema_id} -> "
                f"{done.schema_id}" + (f" ({moved})" if moved else ""))
    elif keep_schema and info.schema_id is not None and info.schema_id != done.schema_id:
        note(f"schema kept (--keep-schema): the current schema is still id {done.schema_id}; "
             f"snapshot {info.short_id} was written with schema id {info.schema_id}")


def _columns(what: str, names: tuple[str, ...]) -> str:
    """``columns removed: a, b`` (at most 10 names), or "" for none."""
    if not names:
        return ""
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return f"column{'s' if len(names) > 1 else ''} {what}: {shown}"

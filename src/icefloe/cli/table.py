"""``icefloe table ...``: load, list, inspect, time-travel, tag and roll back tables."""

from __future__ import annotations

from pathlib import Path

import typer

from icefloe.cli.output import (
    arrow_rows,
    console,
    load_progress,
    print_arrow,
    print_json,
    print_rows,
    success,
)
from icefloe.cli.state import state
from icefloe.errors import InvalidInputError

app = typer.Typer(help="Versioned Iceberg tables: load, snapshots, time travel, tags, rollback.",
                  no_args_is_help=True)

JSON = typer.Option(False, "--json", help="Print JSON for scripts.")
SNAPSHOT_COLUMNS = ["snapshot_id", "parent_id", "time", "operation", "added_rows", "total_rows",
                    "current", "tags"]


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
    """Load a CSV or Parquet file into a table as one new snapshot."""
    lh = state(ctx).lakehouse
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
        f"{result.snapshot.snapshot_id} ({result.snapshot.total_rows:,} rows in total){extra}"
    )


@app.command("list")
def list_tables(
    ctx: typer.Context,
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="Only this namespace."),
    as_json: bool = JSON,
) -> None:
    """List tables with their current snapshot and row count."""
    rows = state(ctx).lakehouse.tables(namespace)
    if as_json:
        print_json(rows)
    elif not rows:
        console.print("no tables yet: icefloe table load NAMESPACE.TABLE FILE")
    else:
        print_rows(rows, ["table", "current_snapshot_id", "rows", "columns", "snapshots"])


@app.command("snapshots")
def snapshots(ctx: typer.Context, name: str, as_json: bool = JSON) -> None:
    """List the table's snapshot history (rolled-back snapshots included)."""
    history = state(ctx).lakehouse.snapshots(name)
    rows = [s.to_dict() for s in history]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        row["tags"] = ", ".join(row["tags"])  # type: ignore[arg-type]
        row["current"] = "*" if row["current"] else ""
    print_rows(rows, SNAPSHOT_COLUMNS, title=f"{name} history")


@app.command("show")
def show(
    ctx: typer.Context,
    name: str,
    snapshot: int | None = typer.Option(None, "--snapshot", help="Read this snapshot id."),
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
    lh = state(ctx).lakehouse
    snap = lh.resolve(name, snapshot_id=snapshot, tag=tag, as_of=as_of)
    snap_id = snap.snapshot_id if snap else None
    data = lh.read(name, snapshot_id=snap_id, limit=limit or None) if snap else None
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
    title = f"{name} @ snapshot {snap.snapshot_id} ({snap.time}) — {total:,} rows"
    if data.num_rows < (total or 0):
        title += f", showing {data.num_rows:,}"
    print_arrow(data, title=title)


@app.command("tag")
def tag(
    ctx: typer.Context,
    name: str,
    tag_name: str = typer.Argument(..., metavar="TAG"),
    snapshot: int | None = typer.Option(None, "--snapshot", help="Snapshot to tag (current)."),
    as_json: bool = JSON,
) -> None:
    """Tag a snapshot (the current one by default) so it can be read by name later."""
    info = state(ctx).lakehouse.tag(name, tag_name, snapshot)
    if as_json:
        print_json({"table": name, "tag": tag_name, "snapshot": info.to_dict()})
    else:
        success(f"tagged snapshot {info.snapshot_id} of {name} as {tag_name!r}")


@app.command("tags")
def tags(ctx: typer.Context, name: str, as_json: bool = JSON) -> None:
    """List the table's tags."""
    rows = state(ctx).lakehouse.tags(name)
    if as_json:
        print_json(rows)
    else:
        print_rows(rows, ["tag", "snapshot_id"], title=f"{name} tags")


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    name: str,
    to: int | None = typer.Option(None, "--to", help="Snapshot id from `table snapshots`."),
    to_model: str | None = typer.Option(
        None, "--to-model", help="The snapshot a model version was trained on (NAME/VERSION)."
    ),
    as_json: bool = JSON,
) -> None:
    """Make an earlier snapshot current (or roll forward again); history is kept."""
    if (to is None) == (to_model is None):
        raise InvalidInputError("give exactly one of --to SNAPSHOT_ID or --to-model NAME/VERSION")
    lh = state(ctx).lakehouse
    if to_model is not None:
        from icefloe.registry.store import ModelRegistry

        lineage = ModelRegistry(state(ctx).settings).lineage(to_model)
        if lineage.table != name:
            raise InvalidInputError(
                f"model {to_model} was trained on {lineage.table}, not {name}"
            )
        to = lineage.snapshot_id
    assert to is not None
    before = lh.current_snapshot(name)
    info = lh.rollback(name, to)
    if as_json:
        print_json(
            {
                "table": name,
                "previous_snapshot_id": before.snapshot_id if before else None,
                "snapshot": info.to_dict(),
            }
        )
        return
    success(
        f"{name} now at snapshot {info.snapshot_id} ({info.total_rows:,} rows); "
        f"was {before.snapshot_id if before else None}"
    )

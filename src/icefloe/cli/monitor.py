"""``icefloe monitor ...``: model monitoring (the prediction log as a table, so far)."""

from __future__ import annotations

import typer

from icefloe.cli.output import print_json, steps, success

app = typer.Typer(help="Model monitoring: the prediction log as an Iceberg table.",
                  no_args_is_help=True)


@app.command("export")
def export(ctx: typer.Context,
           as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts.")
           ) -> None:
    """Bring monitoring.predictions up to date with the prediction log (new predictions,
    and ground truth that arrived since); safe to rerun, also after a crash."""
    from icefloe.cli.state import state

    settings = state(ctx).home_settings()
    with steps("monitor export") as step:
        step("reading the table's state and the prediction log")
        from icefloe.monitoring.export import export_predictions
        from icefloe.store.db import Database

        db = Database(settings.resolved_platform_db_url)
        try:
            result = export_predictions(db, state(ctx).lakehouse,
                                        progress=lambda n: step(f"{n:,} log rows read"))
        finally:
            db.dispose()
    if as_json:
        print_json(result.to_dict())
        return
    success(f"{result.table}: {result.added:,} predictions added, {result.truth_updated:,} "
            f"given their ground truth; {result.rows:,} rows")

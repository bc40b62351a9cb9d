"""``icefloe monitor ...``: a deployment's metrics per window, and the prediction log as a
table. ``icefloe monitor DEPLOYMENT`` is short for ``icefloe monitor show DEPLOYMENT``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from icefloe.cli.output import print_json, print_rows, steps, success
from icefloe.errors import InvalidInputError


class _ShowByDefault(TyperGroup):
    """A first word that is not a subcommand is the deployment of ``show``."""

    default_command = "show"

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = [self.default_command, *args]
        return super().resolve_command(ctx, args)


app = typer.Typer(cls=_ShowByDefault, no_args_is_help=True,
                  help="Model monitoring: a deployment's metrics per window (icefloe monitor "
                       "DEPLOYMENT), the prediction log as an Iceberg table.")


@app.command("show")
def show(ctx: typer.Context,
         deployment: str = typer.Argument(..., metavar="DEPLOYMENT"),
         window: str = typer.Option("1h", "--window", "-w",
                                    help="30m, 1h, 7d (ending now) or 500 (the last 500)."),
         min_samples: int = typer.Option(100, "--min-samples", min=1,
                                         help="Fewer samples: insufficient, not drift."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts.")
         ) -> None:
    """A deployment's metrics over a window, each with its samples.

    Requests, latency, drift against the training profile, and accuracy where ground truth
    arrived; fewer samples than --min-samples is insufficient, not drift."""
    from icefloe.cli.state import state

    settings = state(ctx).home_settings()
    with steps("monitor") as step:
        step("exporting the prediction log, reading the window")
        from icefloe.monitoring.monitor import monitor_deployment
        from icefloe.store.db import Database

        db = Database(settings.resolved_platform_db_url)
        try:
            result = monitor_deployment(db, state(ctx).lakehouse, deployment, window,
                                        min_samples=min_samples)
        finally:
            db.dispose()
    if as_json:
        print_json(result)
        return
    rows = [{**f, "value": None if f["value"] is None else f"{f['value']:.4g}",
             "reading": f.get("reading", "")} for f in result["figures"]]
    reference = result["reference"]
    against = (f"; reference {reference['table']}@{reference['snapshot_id']}" if reference
               else "; no reference profile (icefloe model profile, then a new build)")
    print_rows(rows, ["metric", "feature", "value", "samples", "status", "reading"],
               title=f"deployment {deployment} ({result['model']}/{result['model_version']}), "
                     f"window {result['window']}{against}")
    for agg in result["aggregates"]:
        print_rows([{"metric": k, "value": v} for k, v in agg["metrics"].items()],
                   ["metric", "value"],
                   title=f"aggregate metrics {agg['start_ms']}..{agg['end_ms']}")


@app.command("report")
def report(ctx: typer.Context,
           deployment: str = typer.Argument(..., metavar="DEPLOYMENT"),
           output: Path = typer.Option(..., "--output", "-o", help="The HTML file to write."),
           window: str = typer.Option("7d", "--window", "-w",
                                      help="30m, 1h, 7d (ending now) or 500 (the last 500)."),
           min_samples: int = typer.Option(100, "--min-samples", min=1),
           as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts.")
           ) -> None:
    """Write a self-contained HTML report of a deployment's window.

    Accuracy and label coverage over time, latency, drift per feature against the training
    data with the PSI levels drawn, and every figure; no script or asset from anywhere."""
    from icefloe.cli.state import state

    if output.suffix.lower() not in (".html", ".htm"):
        raise InvalidInputError(f"--output {output} must be an .html file")
    settings = state(ctx).home_settings()
    with steps("monitor report") as step:
        step("exporting the prediction log, reading the window")
        from icefloe.monitoring.monitor import report_deployment
        from icefloe.store.db import Database

        db = Database(settings.resolved_platform_db_url)
        try:
            result = report_deployment(db, state(ctx).lakehouse, deployment, output, window,
                                       min_samples=min_samples)
        finally:
            db.dispose()
    if as_json:
        print_json({"output": str(output), **result})
        return
    requests = next(f["value"] for f in result["figures"] if f["metric"] == "requests")
    success(f"wrote {output}: deployment {deployment}, window {result['window']}, "
            f"{int(requests or 0):,} predictions")


@app.command("export")
def export(ctx: typer.Context,
           as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts.")
           ) -> None:
    """Bring monitoring.predictions up to date with the prediction log.

    Adds new predictions and the ground truth that arrived since; safe to rerun, also after
    a crash."""
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

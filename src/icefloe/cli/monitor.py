"""``icefloe monitor ...``: a deployment's metrics per window, and the prediction log as a
table. ``icefloe monitor DEPLOYMENT`` is short for ``icefloe monitor show DEPLOYMENT``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from icefloe.cli.output import print_json, print_rows, steps, success
from icefloe.cli.remote import JSON, KEY, KEY_FILE, URL, connect
from icefloe.cli.secrets import SecretSource, resolve_secret
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


rule_app = typer.Typer(help="Alert rules on a deployment's figures (webhooks, signed).",
                       no_args_is_help=True)
app.add_typer(rule_app, name="rule")
SECRET = SecretSource("webhook secret", "--secret", "--secret-file", "ICEFLOE_WEBHOOK_SECRET")
RULE_COLUMNS = ["id", "metric", "feature", "comparison", "threshold", "window", "state",
                "last_value", "last_samples", "target"]


@rule_app.command("create")
def rule_create(
    deployment: str = typer.Argument(..., metavar="DEPLOYMENT"),
    metric: str = typer.Option(..., "--metric", help="psi, ks, js_distance, unseen_share, "
                               "null_share (with --feature), accuracy, auc, f1, "
                               "prediction_psi, latency_p99_ms, ..."),
    feature: str = typer.Option("", "--feature", help="The feature of a per-feature metric."),
    above: float | None = typer.Option(None, "--above", help="Fire when the value is above."),
    below: float | None = typer.Option(None, "--below", help="Fire when the value is below."),
    window: str = typer.Option("1h", "--window", "-w", help="30m, 1h, 7d or 500."),
    min_samples: int = typer.Option(100, "--min-samples", min=1),
    cooldown: int = typer.Option(0, "--cooldown", min=0, help="Seconds a state lasts at least."),
    webhook: str | None = typer.Option(None, "--webhook",
                                       help="http(s) URL that receives the changes."),
    email: str | None = typer.Option(None, "--email", help="Address that receives them."),
    secret: str | None = typer.Option(None, "--secret", metavar="-",
                                      help="- reads the signing secret from stdin."),
    secret_file: Path | None = typer.Option(None, "--secret-file", metavar="PATH",
                                            help="Read the signing secret from this file."),
    url: str | None = URL, api_key: str | None = KEY, api_key_file: Path | None = KEY_FILE,
    as_json: bool = JSON,
) -> None:
    """Alert when a figure of a deployment crosses a threshold.

    Each change of state (FIRING, RESOLVED) is sent once: POSTed to the webhook, signed with
    HMAC-SHA256 under the secret, or e-mailed through the control plane's mail server."""
    if (above is None) == (below is None):
        raise InvalidInputError("give exactly one of --above X or --below X")
    if (webhook is None) == (email is None):
        raise InvalidInputError("give exactly one of --webhook URL or --email ADDRESS")
    signing = resolve_secret(SECRET, secret, secret_file, required=True) if webhook else ""
    target = webhook or email or ""
    with connect(url, api_key, api_key_file) as client:
        rule = client.create_rule(
            deployment, metric=metric, feature=feature,
            comparison=">" if above is not None else "<",
            threshold=above if above is not None else float(below or 0.0), target=target,
            secret=signing or "", window=window, min_samples=min_samples, cooldown_s=cooldown,
            channel="webhook" if webhook else "email")
    if as_json:
        print_json(rule)
    else:
        success(f"rule {rule['id']}: {metric}{f' of {feature}' if feature else ''} "
                f"{rule['comparison']} {rule['threshold']:g} over {window} -> {target}")


@rule_app.command("list")
def rule_list(deployment: str = typer.Argument(..., metavar="DEPLOYMENT"),
              url: str | None = URL, api_key: str | None = KEY,
              api_key_file: Path | None = KEY_FILE, as_json: bool = JSON) -> None:
    """A deployment's rules and their state."""
    with connect(url, api_key, api_key_file) as client:
        rows = client.rules(deployment)
    if as_json:
        print_json(rows)
    else:
        print_rows(rows, RULE_COLUMNS, title=f"alert rules of {deployment}")


@rule_app.command("events")
def rule_events(rule_id: str = typer.Argument(..., metavar="RULE"),
                url: str | None = URL, api_key: str | None = KEY,
                api_key_file: Path | None = KEY_FILE, as_json: bool = JSON) -> None:
    """A rule's state changes and whether each was delivered."""
    with connect(url, api_key, api_key_file) as client:
        rows = client.rule_events(rule_id)
    if as_json:
        print_json(rows)
    else:
        print_rows(rows, ["id", "at", "from", "to", "value", "samples", "delivered",
                          "attempts", "error"], title=f"rule {rule_id}")


@rule_app.command("delete")
def rule_delete(rule_id: str = typer.Argument(..., metavar="RULE"),
                url: str | None = URL, api_key: str | None = KEY,
                api_key_file: Path | None = KEY_FILE) -> None:
    """Delete a rule and its history."""
    with connect(url, api_key, api_key_file) as client:
        client.delete_rule(rule_id)
    success(f"rule {rule_id} deleted")


@app.command("evaluate")
def evaluate(deployment: str = typer.Argument(..., metavar="DEPLOYMENT"),
             url: str | None = URL, api_key: str | None = KEY,
             api_key_file: Path | None = KEY_FILE, as_json: bool = JSON) -> None:
    """Evaluate a deployment's rules now (the control plane also does every
    monitor_interval seconds); prints the changes, each notified once."""
    with connect(url, api_key, api_key_file, timeout=300.0) as client:
        changes = client.evaluate_rules(deployment)
    if as_json:
        print_json(changes)
    elif changes:
        print_rows(changes, ["rule", "from", "to", "value", "samples"],
                   title=f"changes of {deployment}'s rules")
    else:
        success(f"no rule of {deployment} changed state")

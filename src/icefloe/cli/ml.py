"""``icefloe train``, ``score``, ``lineage`` and ``icefloe model ...``."""

from __future__ import annotations

import typer

from icefloe.cli.output import console, err_console, error, note, print_json, print_rows, success
from icefloe.cli.state import state

JSON = typer.Option(False, "--json", help="Print JSON for scripts.")
model_app = typer.Typer(help="Registered models: list, versions, show, alias.",
                        no_args_is_help=True)


def _columns(text: str | None) -> tuple[str, ...]:
    return tuple(c.strip() for c in (text or "").split(",") if c.strip())


def train(
    ctx: typer.Context,
    table: str = typer.Option(..., "--table", help="Table to train on (namespace.table)."),
    label: str = typer.Option(..., "--label", help="Label column."),
    positive: str | None = typer.Option(
        None, "--positive", help="Comma-separated label values that mean 1 (else 0/1 column)."),
    pipeline: str = typer.Option("baseline", "--pipeline", help="baseline | categorical | tree."),
    model: str | None = typer.Option(None, "--model", help="Registered model name."),
    features: str | None = typer.Option(None, "--features", help="Comma-separated features."),
    exclude: str | None = typer.Option(None, "--exclude", help="Columns never used."),
    nulls: str = typer.Option("drop", "--nulls", help="drop rows with nulls, or impute them."),
    snapshot: int | None = typer.Option(None, "--snapshot", help="Train on this snapshot."),
    tag: str | None = typer.Option(None, "--tag", help="Train on the snapshot of this tag."),
    seed: int = typer.Option(42, "--seed"),
    test_fraction: float = typer.Option(0.2, "--test-fraction"),
    experiment: str = typer.Option("icefloe", "--experiment", help="MLflow experiment."),
    as_json: bool = JSON,
) -> None:
    """Train on a table snapshot, evaluate, compile to ONNX and register a model version."""
    from icefloe.ml.spec import LabelSpec, TrainSpec, parse_positive
    from icefloe.ml.train import train as run_training

    spec = TrainSpec(
        table=table,
        label=LabelSpec(label, parse_positive(positive)),
        model_name=model or table.replace(".", "-"),
        pipeline=pipeline,
        features=_columns(features),
        exclude=_columns(exclude),
        nulls=nulls,
        snapshot_id=snapshot,
        tag=tag,
        seed=seed,
        test_fraction=test_fraction,
        experiment=experiment,
    )
    with err_console.status("training", spinner="dots") as status:
        result = run_training(spec, state(ctx).settings,
                              on_step=lambda step: status.update(f"training: {step}"))
    dropped = result.lineage.dropped_rows
    if dropped:
        note(f"{dropped:,} rows with a null label or number were dropped "
             f"(--nulls {spec.nulls}); see rows_dropped_* metrics")
    unknown = int(result.metrics.get("rows_null_category", 0))
    if unknown:
        note(f"{unknown:,} rows have a null category, encoded as 'unknown'")
    if as_json:
        print_json(result.to_dict())
        return
    success(f"registered {result.model_name}/{result.version}")
    for line in result.summary_lines():
        console.print(line, markup=False)


def lineage(ctx: typer.Context, ref: str = typer.Argument(..., metavar="NAME/VERSION|NAME@ALIAS"),
            as_json: bool = JSON) -> None:
    """Show the exact data a model version learned from."""
    from icefloe.registry.store import ModelRegistry

    ln = ModelRegistry(state(ctx).settings).lineage(ref)
    if as_json:
        print_json({"model": ref, **ln.to_dict()})
        return
    rows = [
        {"field": "table", "value": ln.table},
        {"field": "snapshot", "value": f"{ln.snapshot_id} ({ln.snapshot_time})"},
        {"field": "rows", "value": f"{ln.row_count:,}"},
        {"field": "fingerprint", "value": ln.fingerprint},
        {"field": "label", "value": ln.label},
        {"field": "features", "value": ", ".join(ln.features)},
        {"field": "pipeline", "value": f"{ln.pipeline} (nulls: {ln.nulls}, seed {ln.seed})"},
        {"field": "training run", "value": ln.run_id},
        {"field": "test AUC", "value": f"{ln.metrics.get('auc', float('nan')):.4f}"},
        {"field": "accuracy", "value": f"{ln.metrics.get('accuracy', float('nan')):.4f}"},
    ]
    print_rows(rows, ["field", "value"], title=f"lineage of {ref}")


def score(
    ctx: typer.Context,
    model: str = typer.Option(..., "--model", help="NAME/VERSION or NAME@ALIAS."),
    table: str = typer.Option(..., "--table", help="Table to score."),
    output_table: str = typer.Option(..., "--output-table", help="Table to append scores to."),
    snapshot: int | None = typer.Option(None, "--snapshot", help="Score this snapshot."),
    as_json: bool = JSON,
) -> None:
    """Score a table snapshot with a registered model; append the scores to a table."""
    from icefloe.ml.scoring import score_table

    result = score_table(model, table, output_table, snapshot_id=snapshot,
                         settings=state(ctx).settings)
    if as_json:
        print_json(result.to_dict())
        return
    success(f"scored {result.rows:,} rows of {result.source_table}@{result.source_snapshot_id} "
            f"with {result.model}/{result.version} -> {result.output_table} "
            f"(snapshot {result.output_snapshot_id})")
    if result.unscored_rows:
        note(f"{result.unscored_rows:,} rows had missing numbers the model does not impute; "
             "their scores are null")


@model_app.command("list")
def model_list(ctx: typer.Context, as_json: bool = JSON) -> None:
    """List registered models."""
    from icefloe.registry.store import ModelRegistry

    rows = ModelRegistry(state(ctx).settings).list_models()
    if as_json:
        print_json(rows)
    else:
        print_rows([{**r, "aliases": ", ".join(f"{k}->{v}" for k, v in r["aliases"].items())}
                    for r in rows], ["name", "latest_version", "versions", "aliases"])


@model_app.command("versions")
def model_versions(ctx: typer.Context, name: str, as_json: bool = JSON) -> None:
    """List the versions of a model with their training data."""
    from icefloe.registry.store import ModelRegistry

    rows = ModelRegistry(state(ctx).settings).versions(name)
    if as_json:
        print_json(rows)
    else:
        print_rows([{**r, "aliases": ", ".join(r["aliases"])} for r in rows],
                   ["version", "aliases", "table", "snapshot_id", "pipeline", "run_id"])


@model_app.command("show")
def model_show(ctx: typer.Context,
               ref: str = typer.Argument(..., metavar="NAME/VERSION|NAME@ALIAS"),
               as_json: bool = JSON) -> None:
    """Show one model version."""
    from icefloe.registry.store import ModelRegistry

    registry = ModelRegistry(state(ctx).settings)
    info = registry.describe(registry.resolve(ref))
    info["metrics"] = registry.lineage(ref).metrics
    if as_json:
        print_json(info)
    else:
        print_rows([{"field": k, "value": v} for k, v in info.items() if k != "metrics"],
                   ["field", "value"], title=ref)
        print_rows([{"metric": k, "value": v} for k, v in sorted(info["metrics"].items())],
                   ["metric", "value"])


@model_app.command("alias")
def model_alias(ctx: typer.Context,
                ref: str = typer.Argument(..., metavar="NAME/VERSION"),
                alias: str = typer.Argument(...),
                as_json: bool = JSON) -> None:
    """Point an alias (e.g. champion) at a version; NAME@ALIAS then works everywhere."""
    from icefloe.registry.store import ModelRegistry

    registry = ModelRegistry(state(ctx).settings)
    mv = registry.set_alias(ref, alias)
    if as_json:
        print_json(registry.describe(mv))
    else:
        success(f"{mv.name}@{alias} -> version {mv.version}")


@model_app.command("build")
def model_build(ctx: typer.Context,
                ref: str = typer.Argument(..., metavar="NAME/VERSION|NAME@ALIAS"),
                as_json: bool = JSON) -> None:
    """Build a serving artifact of a model version (self-tested against Spark)."""
    from icefloe.serving.builds import READY, build_json, create_build
    from icefloe.store.db import Database

    settings = state(ctx).settings
    db = Database(settings.resolved_platform_db_url)
    build = create_build(db, settings, ref, "cli")
    if as_json:
        print_json(build_json(build))
    elif build.status == READY:
        success(f"build {build.id} of {build.model_name}/{build.model_version} is ready "
                f"(self-test parity {build.parity:.1e}, checksum {build.checksum[:12]})")
    if build.status != READY:
        error(build.reason, label=f"build {build.id} failed:")
        raise typer.Exit(7)


def register(app: typer.Typer) -> None:
    """Add the ML commands to the root app."""
    app.command("train")(train)
    app.command("lineage")(lineage)
    app.command("score")(score)
    app.add_typer(model_app, name="model")

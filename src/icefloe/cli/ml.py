"""``icefloe train``, ``score``, ``lineage`` and ``icefloe model ...``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from icefloe.cli.output import console, error, note, print_json, print_rows, steps, success
from icefloe.cli.remote import KEY, KEY_FILE, URL, connect
from icefloe.cli.state import snapshot_ref, state

JSON = typer.Option(False, "--json", help="Print JSON for scripts.")
model_app = typer.Typer(help="Registered models: list, versions, show, alias, build, schema, "
                             "profile, deploy.", no_args_is_help=True)


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
    snapshot: str | None = typer.Option(
        None, "--snapshot", metavar="SNAPSHOT_ID|PREFIX|TAG",
        help="Train on this snapshot: an id, a unique prefix of one or a tag."),
    tag: str | None = typer.Option(None, "--tag", help="Train on the snapshot of this tag."),
    seed: int = typer.Option(42, "--seed"),
    test_fraction: float = typer.Option(0.2, "--test-fraction"),
    experiment: str = typer.Option("icefloe", "--experiment", help="MLflow experiment."),
    as_json: bool = JSON,
) -> None:
    """Train on a table snapshot, evaluate, compile to ONNX and register a model version.

    Each step is shown on stderr as it starts; stdout has only the result."""
    from icefloe.ml.spec import LabelSpec, TrainSpec, parse_positive

    st = state(ctx)
    settings = st.home_settings()
    snapshot_id = snapshot_ref(st.lakehouse, table, snapshot) if snapshot is not None else None
    spec = TrainSpec(
        table=table,
        label=LabelSpec(label, parse_positive(positive)),
        model_name=model or table.replace(".", "-"),
        pipeline=pipeline,
        features=_columns(features),
        exclude=_columns(exclude),
        nulls=nulls,
        snapshot_id=snapshot_id,
        tag=tag,
        seed=seed,
        test_fraction=test_fraction,
        experiment=experiment,
    )
    spec.validate()
    with steps("train") as step:
        step("starting Spark, loading MLflow")
        from icefloe.compute.spark import start_spark_session

        # The JVM boots while this process imports and opens the stores.
        starting = start_spark_session(settings, app_name=f"icefloe-train-{spec.model_name}")
        from icefloe.ml.train import train as run_training

        result = run_training(spec, settings, spark=starting, on_step=step)
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


def lineage(
    ctx: typer.Context,
    node: str = typer.Argument(..., metavar="NODE|NAME/VERSION|NAME@ALIAS",
                               help="A lineage node (kind:id, e.g. prediction:<uuid>, "
                                    "snapshot:lending.loans@<id>, run:<id>), or a model "
                                    "version for the data it learned from."),
    upstream: bool = typer.Option(False, "--upstream", help="Only where it came from."),
    downstream: bool = typer.Option(False, "--downstream", help="Only what came of it."),
    depth: int | None = typer.Option(None, "--depth", min=1, max=50,
                                     help="At most this many edges away."),
    dot: bool = typer.Option(False, "--dot", help="Print Graphviz DOT (dot -Tsvg)."),
    url: str | None = URL, api_key: str | None = KEY, api_key_file: Path | None = KEY_FILE,
    as_json: bool = JSON,
) -> None:
    """The lineage graph around a node, from source batches to predictions.

    With --url (or $ICEFLOE_URL) the control plane answers; without, the home's platform DB.
    A model version (NAME/VERSION) shows the exact data it learned from, as before."""
    from icefloe.errors import InvalidInputError
    from icefloe.lineage.nodes import looks_like_node

    if not looks_like_node(node):
        _model_lineage(ctx, node, as_json)
        return
    if upstream and downstream:
        raise InvalidInputError("give at most one of --upstream and --downstream")
    if dot and as_json:
        raise InvalidInputError("give at most one of --json and --dot")
    direction = "upstream" if upstream else "downstream" if downstream else "both"
    if url:
        with connect(url, api_key, api_key_file) as client:
            graph = client.lineage(node, direction, depth)
    else:
        from icefloe.lineage.assemble import lineage_graph
        from icefloe.store.db import Database

        settings = state(ctx).home_settings()
        db = Database(settings.resolved_platform_db_url)
        try:
            graph = lineage_graph(db, settings, node, direction=direction, depth=depth)
        finally:
            db.dispose()
    if as_json:
        print_json(graph)
        return
    from icefloe.lineage.graph import from_dict, to_dot

    whole, root = from_dict(graph)
    if dot:
        import sys

        sys.stdout.write(to_dot(whole, root))  # exactly the text, never wrapped
        return
    _print_tree(whole, root, direction)


def _print_tree(graph: Any, root: str, direction: str) -> None:
    """The graph as a Rich tree: where the root came from, then what came of it."""
    from rich.text import Text
    from rich.tree import Tree

    def label(node: str) -> str:
        return str(graph.nodes.get(node, {}).get("label") or node)

    top = Tree(Text(f"{label(root)}  [{root}]", style="bold"))

    def grow(branch: Tree, node: str, upward: bool, shown: set[str]) -> None:
        edges = graph.upstream_of(node) if upward else graph.downstream_of(node)
        for edge in sorted(edges, key=lambda e: (e.relation, e.src if upward else e.dst)):
            other = edge.src if upward else edge.dst
            state = edge.detail.get("state")
            failed = f" ({state.lower()})" if state in ("FAIL", "ABORT") else ""
            again = " (shown above)" if other in shown else ""
            who = f" · {edge.actor}" if edge.actor else ""
            child = branch.add(Text.assemble((f"{edge.relation}{failed}: ", "dim"),
                                             label(other), (f"  [{other}]{again}{who}", "dim")))
            if other not in shown:
                shown.add(other)
                grow(child, other, upward, shown)

    for upward, title in ((True, "upstream (where it came from)"),
                          (False, "downstream (what came of it)")):
        if direction in ("both", "upstream" if upward else "downstream"):
            branch = top.add(Text(title, style="cyan"))
            grow(branch, root, upward, {root})
            if not branch.children:
                branch.add(Text("nothing recorded", style="dim"))
    console.print(top)


def _model_lineage(ctx: typer.Context, ref: str, as_json: bool) -> None:
    """The exact data a model version learned from (``icefloe lineage NAME/VERSION``)."""
    from icefloe.registry.mlflow_registry import ModelRegistry

    ln = ModelRegistry(state(ctx).home_settings()).lineage(ref)
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
    snapshot: str | None = typer.Option(
        None, "--snapshot", metavar="SNAPSHOT_ID|PREFIX|TAG",
        help="Score this snapshot: an id, a unique prefix of one or a tag."),
    as_json: bool = JSON,
) -> None:
    """Score a table snapshot with a registered model; append the scores to a table."""
    st = state(ctx)
    settings = st.home_settings()
    snapshot_id = snapshot_ref(st.lakehouse, table, snapshot)
    with steps("score") as step:
        step(f"loading the model {model} and reading {table}")
        from icefloe.ml.scoring import score_table

        result = score_table(model, table, output_table, snapshot_id=snapshot_id,
                             settings=settings)
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
    from icefloe.registry.mlflow_registry import ModelRegistry

    rows = ModelRegistry(state(ctx).home_settings()).list_models()
    if as_json:
        print_json(rows)
    else:
        print_rows([{**r, "aliases": ", ".join(f"{k}->{v}" for k, v in r["aliases"].items())}
                    for r in rows], ["name", "latest_version", "versions", "aliases"])


@model_app.command("versions")
def model_versions(ctx: typer.Context, name: str, as_json: bool = JSON) -> None:
    """List the versions of a model with their training data."""
    from icefloe.registry.mlflow_registry import ModelRegistry

    rows = ModelRegistry(state(ctx).home_settings()).versions(name)
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
    from icefloe.registry.mlflow_registry import ModelRegistry

    registry = ModelRegistry(state(ctx).home_settings())
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
    from icefloe.registry.mlflow_registry import ModelRegistry

    registry = ModelRegistry(state(ctx).home_settings())
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
    settings = state(ctx).home_settings()
    with steps("build") as step:
        step("loading ONNX and MLflow")
        from icefloe.serving.builds import READY, build_json, create_build
        from icefloe.store.db import Database

        step(f"building {ref}: compiling, self-testing against the recorded Spark scores")
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


@model_app.command("schema")
def model_schema(ctx: typer.Context,
                 target: str = typer.Argument(..., metavar="DEPLOYMENT|NAME/VERSION|NAME@ALIAS"),
                 url: str | None = URL, api_key: str | None = KEY,
                 api_key_file: Path | None = KEY_FILE, as_json: bool = JSON) -> None:
    """Print the input fields a model takes and an example request.

    A deployment id asks the control plane (the schema of the build it serves); a model
    version is read from the home's registry (the schema a build of it will have)."""
    from icefloe.serving.schema import example_request

    if "/" in target or "@" in target:
        from icefloe.registry.mlflow_registry import ModelRegistry
        from icefloe.serving.builds import schema_from_onnx

        registry = ModelRegistry(state(ctx).home_settings())
        mv, onnx_bytes = registry.onnx_bytes(target)
        lineage = registry.lineage(f"{mv.name}/{mv.version}")
        info: dict[str, Any] = {"deployment": None, "build_id": None, "model": mv.name,
                                "model_version": int(mv.version),
                                "input_schema": schema_from_onnx(onnx_bytes, lineage).to_dict()}
    else:
        with connect(url, api_key, api_key_file) as client:
            dep = client.get_deployment(target)
            stored = dep.get("input_schema") or client.get_build(dep["build_id"])["input_schema"]
        info = {"deployment": dep["id"], "build_id": dep["build_id"], "model": dep["model"],
                "model_version": dep["model_version"], "input_schema": stored}
    info["example_request"] = example_request(info["input_schema"])
    if as_json:
        print_json(info)
        return
    where = (f"deployment {info['deployment']} (build {info['build_id']}) of "
             if info["deployment"] else "")
    print_rows([{"field": f["name"], "kind": f["kind"], "nullable": f.get("nullable", False),
                 "optional": f.get("optional", False),
                 "categories": ", ".join(f.get("levels") or [])}
                for f in info["input_schema"]["fields"]],
               ["field", "kind", "nullable", "optional", "categories"],
               title=f"input of {where}{info['model']}/{info['model_version']}")
    console.print("example request (icefloe predict --data, or \"request\" of POST /model):")
    console.print(json.dumps(info["example_request"], ensure_ascii=False), soft_wrap=True)


@model_app.command("profile")
def model_profile(ctx: typer.Context,
                  ref: str = typer.Argument(..., metavar="NAME/VERSION|NAME@ALIAS"),
                  rebuild: bool = typer.Option(
                      False, "--rebuild", help="Make it again even if the version has one."),
                  as_json: bool = JSON) -> None:
    """Show the reference profile drift is measured against (made at training; made now,
    from the training snapshot checked by fingerprint, for a version trained before)."""
    settings = state(ctx).home_settings()
    with steps("profile") as step:
        step(f"reading the reference profile of {ref}")
        from icefloe.monitoring.reference import profile_version

        profile, made = profile_version(settings, ref, replace=rebuild)
    if as_json:
        print_json({"model": ref, "made_now": made, **profile.to_dict()})
        return
    rows: list[dict[str, Any]] = []
    for name, num in profile.numeric.items():
        rows.append({"feature": name, "kind": "number", "rows": num.rows,
                     "null_share": f"{num.null_share:.3f}",
                     "min": None if num.min is None else f"{num.min:.4g}",
                     "max": None if num.max is None else f"{num.max:.4g}",
                     "bins / categories": len(num.counts)})
    for name, cat in profile.categorical.items():
        top = ", ".join(list(cat.frequencies)[:5])
        rows.append({"feature": name, "kind": "string", "rows": cat.rows,
                     "null_share": f"{cat.null_share:.3f}", "min": None, "max": None,
                     "bins / categories": f"{len(cat.frequencies)} ({top}"
                                          f"{', ...' if len(cat.frequencies) > 5 else ''})"})
    print_rows(rows, ["feature", "kind", "rows", "null_share", "min", "max",
                      "bins / categories"],
               title=f"reference profile of {ref}: {profile.table}@{profile.snapshot_id}")
    scores = profile.scores
    note(f"scores: {scores.rows:,} from {profile.scores_from}; fingerprint "
         f"{profile.fingerprint}{' (made now)' if made else ''}")


def register(app: typer.Typer) -> None:
    """Add the ML commands to the root app."""
    app.command("train")(train)
    app.command("lineage")(lineage)
    app.command("score")(score)
    app.add_typer(model_app, name="model")

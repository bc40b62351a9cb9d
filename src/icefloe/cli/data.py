"""``icefloe data ...``: the seeded loan-book generator."""

from __future__ import annotations

from pathlib import Path

import typer

from icefloe.cli.output import print_json, steps, success

app = typer.Typer(help="Data sets: generate the demo loan book.", no_args_is_help=True)


@app.command("generate")
def generate(
    rows: int = typer.Option(5000, "--rows", help="Number of loans."),
    seed: int = typer.Option(42, "--seed", help="Random seed; same seed, same file."),
    output: Path = typer.Option(..., "--output", "-o", help="Output file (.parquet or .csv)."),
    bad_batch: bool = typer.Option(
        False, "--bad-batch", help="Add the categorical columns of the failure story."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Generate a LendingClub-style loan book with a feature-dependent default label."""
    from icefloe.demo.loans import generate_loans, write_loans
    from icefloe.lakehouse.files import file_format

    file_format(output)  # refuse a bad extension before generating
    table = generate_loans(rows, seed, bad_batch=bad_batch)
    path = write_loans(table, output)
    if as_json:
        print_json({"output": str(path), "rows": table.num_rows, "columns": table.column_names})
    else:
        success(f"wrote {table.num_rows:,} loans ({table.num_columns} columns) to {path}")


@app.command("reproduce")
def reproduce(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="NAME/VERSION|NAME@ALIAS"),
    output: Path = typer.Option(..., "--output", "-o", help="Output file (.parquet or .csv)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Write exactly the rows a model version was trained on, checked by fingerprint.

    Its steps are shown on stderr as they start; stdout has only the result."""
    from icefloe.cli.state import state
    from icefloe.lakehouse.files import file_format

    file_format(output)
    settings = state(ctx).home_settings()
    with steps("reproduce") as step:
        step(f"reading the lineage of {ref} from the registry")
        from icefloe.registry.mlflow_registry import ModelRegistry
        from icefloe.registry.reproduce import reproduce_training_data

        lineage = ModelRegistry(settings).lineage(ref)
        step(f"reading {lineage.row_count:,} rows of {lineage.table} at snapshot "
             f"{lineage.snapshot_id}, checking their fingerprint, writing {output}")
        result = reproduce_training_data(settings, ref, output)
    if as_json:
        print_json(result)
    else:
        success(
            f"wrote {result['rows']:,} rows of {result['table']}@{result['snapshot_id']} to "
            f"{result['output']}; fingerprint matches the training data ({result['fingerprint']})"
        )

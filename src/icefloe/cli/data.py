"""``icefloe data ...``: the seeded loan-book generator."""

from __future__ import annotations

from pathlib import Path

import typer

from icefloe.cli.output import print_json, success
from icefloe.demo.loans import generate_loans, write_loans
from icefloe.lakehouse.files import file_format

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
    file_format(output)  # refuse a bad extension before generating
    table = generate_loans(rows, seed, bad_batch=bad_batch)
    path = write_loans(table, output)
    if as_json:
        print_json({"output": str(path), "rows": table.num_rows, "columns": table.column_names})
    else:
        success(f"wrote {table.num_rows:,} loans ({table.num_columns} columns) to {path}")

"""Printing for the CLI: Rich tables for people, plain JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from icefloe.records import arrow_rows, jsonable

__all__ = ["arrow_rows", "jsonable"]  # re-exported for the CLI modules

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def print_json(obj: Any) -> None:
    """Print one JSON document to stdout."""
    sys.stdout.write(json.dumps(jsonable(obj), indent=2) + "\n")
    sys.stdout.flush()


def _cell(value: Any) -> str:
    if value is None:
        return "[dim]null[/dim]"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(jsonable(value))


def print_rows(
    rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, title: str | None = None
) -> None:
    """Print dict rows as a Rich table."""
    cols = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    if title:
        # A title line of its own: Rich would wrap a title to the width of a narrow table.
        console.print(f"[bold]{title}[/bold]")
    table = Table(show_lines=False)
    for col in cols:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in cols))
    console.print(table)


def print_arrow(data: pa.Table, title: str | None = None) -> None:
    """Print an Arrow table as a Rich table."""
    print_rows(data.to_pylist(), data.column_names, title)


def success(message: str) -> None:
    """A one-line confirmation on stderr (keeps stdout clean for pipes)."""
    err_console.print(f"[green]✓[/green] {message}")


@contextmanager
def load_progress(description: str) -> Iterator[Callable[[int, int], None]]:
    """A byte progress bar on stderr, shown only on a terminal; yields the update callback."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )
    task = progress.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    with progress:
        yield update

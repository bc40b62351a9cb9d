"""Printing for the CLI: Rich tables for people, plain JSON for scripts.

Both consoles have Rich markup off: data, names, paths and error messages are printed as
the text they are (a value ``[/x]`` or ``[bold red]`` is shown, never interpreted, and
cannot crash the CLI). Colour comes only from the styled prefixes below (:func:`success`,
:func:`note`, :func:`warning`, :func:`error`), built as :class:`rich.text.Text`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from icefloe.records import arrow_rows, jsonable

if TYPE_CHECKING:  # the CLI starts without pyarrow; commands that print tables have it
    import pyarrow as pa

__all__ = ["arrow_rows", "jsonable"]  # re-exported for the CLI modules

console = Console(highlight=False, markup=False)
err_console = Console(stderr=True, highlight=False, markup=False)


def print_json(obj: Any) -> None:
    """Print one JSON document to stdout."""
    sys.stdout.write(json.dumps(jsonable(obj), indent=2) + "\n")
    sys.stdout.flush()


def _cell(value: Any) -> Text:
    """A table cell as plain text (a :class:`Text` given by the caller keeps its style)."""
    if isinstance(value, Text):
        return value
    if value is None:
        return Text("null", style="dim")
    if isinstance(value, float):
        return Text(f"{value:.6g}")
    return Text(str(jsonable(value)))


def print_rows(
    rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, title: str | None = None
) -> None:
    """Print dict rows as a Rich table."""
    cols = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    if title:
        # A title line of its own: Rich would wrap a title to the width of a narrow table.
        console.print(Text(title, style="bold"))
    table = Table(show_lines=False)
    for col in cols:
        table.add_column(Text(str(col)), overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in cols))
    console.print(table)


def print_arrow(data: pa.Table, title: str | None = None) -> None:
    """Print an Arrow table as a Rich table."""
    print_rows(data.to_pylist(), data.column_names, title)


def _line(label: str, style: str, message: str) -> None:
    err_console.print(Text.assemble((label, style), " ", message), soft_wrap=True)


def success(message: str) -> None:
    """A one-line confirmation on stderr (keeps stdout clean for pipes)."""
    _line("✓", "green", message)


def note(message: str) -> None:
    """Something worth knowing about a result, on stderr."""
    _line("note:", "yellow", message)


def warning(message: str) -> None:
    """A warning on stderr: the command goes on."""
    _line("warning:", "yellow", message)


def error(message: str, label: str = "error:") -> None:
    """An error on stderr (the caller decides the exit code)."""
    _line(label, "red", message)


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
    task = progress.add_task(escape(description), total=None)  # TextColumn renders markup

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    with progress:
        yield update


@contextmanager
def steps(what: str) -> Iterator[Callable[[str], None]]:
    """Show a long command's steps on stderr as they happen; yields ``step(text)``.

    stdout keeps only the result (``--json`` stays clean). Off a terminal (a pipe, a CI log)
    each step is one line as it starts; on a terminal a spinner shows the current step with
    its time, and each finished step stays as a line with how long it took.
    """
    label = f"{what}:"
    if not err_console.is_terminal:
        def plain(text: str) -> None:
            _line(label, "cyan", text)
            sys.stderr.flush()

        yield plain
        return
    current: list[tuple[str, float]] = []

    def finish() -> None:
        if current:
            text, started = current.pop()
            _line("·", "dim", f"{text} ({time.monotonic() - started:.1f} s)")

    with err_console.status(Text(label), spinner="dots") as status:
        def live(text: str) -> None:
            finish()
            current.append((text, time.monotonic()))
            status.update(Text.assemble((label, "cyan"), " ", text))

        yield live
        finish()  # not after a failure: the error line says what happened

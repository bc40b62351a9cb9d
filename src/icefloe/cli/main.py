"""The ``icefloe`` command: entry point, global options and error reporting.

Errors a user can cause are :class:`icefloe.errors.IcefloeError`: one line on stderr and the
error's exit code. Anything else is a bug: one line too, and the traceback with ``--debug``.

The global options work anywhere on the line: ``--home DIR`` and ``--debug`` after the
subcommand are moved in front of it, and ``--json`` before it is moved to the subcommand
(see :func:`place_global_options`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, NoReturn

import click
import typer

from icefloe.cli import access as access_cli
from icefloe.cli import catalog as catalog_cli
from icefloe.cli import data as data_cli
from icefloe.cli import jobs as jobs_cli
from icefloe.cli import ml as ml_cli
from icefloe.cli import monitor as monitor_cli
from icefloe.cli import people as people_cli
from icefloe.cli import server as server_cli
from icefloe.cli import serving as serving_cli
from icefloe.cli import system as system_cli
from icefloe.cli import table as table_cli
from icefloe.cli.output import err_console, error
from icefloe.cli.state import State
from icefloe.errors import IcefloeError

app = typer.Typer(
    name="icefloe",
    help="icefloe: versioned Iceberg tables, Spark, SQL and ML lifecycle on one laptop.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    home: Path | None = typer.Option(
        None, "--home", help="icefloe home folder (default $ICEFLOE_HOME or ./.icefloe)."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
) -> None:
    """Global options may also follow the subcommand: icefloe table list --home DIR --json."""
    ctx.obj = State(home=home, debug=debug)


app.add_typer(table_cli.app, name="table")
app.add_typer(data_cli.app, name="data")
app.add_typer(monitor_cli.app, name="monitor")
app.add_typer(catalog_cli.app, name="catalog")
system_cli.register(app)
ml_cli.register(app)
server_cli.register(app)
jobs_cli.register(app)
people_cli.register(app)
serving_cli.register(app, ml_cli.model_app)
access_cli.register(app)


def _usage_errors() -> tuple[type[Exception], ...]:
    """Click's usage errors, and those of the click copy newer Typer releases carry."""
    classes: list[type[Exception]] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as TyperClickException
    except ImportError:
        pass
    else:
        classes.append(TyperClickException)
    return tuple(classes)


GLOBAL_VALUED = frozenset({"--home"})
GLOBAL_FLAGS = frozenset({"--debug"})


def _options(command: Any) -> dict[str, bool]:
    """A click command's option names, each with whether it takes a value."""
    names: dict[str, bool] = {}
    for param in getattr(command, "params", []):
        if getattr(param, "param_type_name", "") != "option":
            continue
        takes_value = not (getattr(param, "is_flag", False) or getattr(param, "count", False))
        for name in (*param.opts, *getattr(param, "secondary_opts", [])):
            names[name] = takes_value
    return names


def place_global_options(args: list[str], root: Any) -> list[str]:
    """The command line with ``--home``/``--debug`` moved before the subcommand and a
    ``--json`` given before it moved after it, walking the command tree so that option
    values (``--arguments --debug``) and anything after ``--`` are left alone."""
    front: list[str] = []
    rest: list[str] = []
    end: int | None = None  # where a real `--` (not an option's value) starts in rest
    early_json = False
    command = root
    i = 0
    while i < len(args):
        word = args[i]
        name, eq, _ = word.partition("=")
        subcommands = getattr(command, "commands", None)
        own = _options(command)
        if word == "--":
            end = len(rest)
            rest.extend(args[i:])
            break
        if name in GLOBAL_VALUED and (command is root or name not in own):
            taken = 1 if eq or i + 1 == len(args) else 2
            front.extend(args[i:i + taken])
            i += taken
            continue
        if word in GLOBAL_FLAGS and (command is root or word not in own):
            front.append(word)
        elif word == "--json" and subcommands is not None:
            early_json = True
        elif name in own:
            rest.append(word)
            if own[name] and not eq and i + 1 < len(args):
                i += 1
                rest.append(args[i])
        elif subcommands is not None and word in subcommands:
            command = subcommands[word]
            rest.append(word)
        else:
            rest.append(word)
        i += 1
    if early_json:
        rest.insert(len(rest) if end is None else end, "--json")
    return front + rest


def leading_globals(args: list[str]) -> list[str]:
    """The global options at the front of a line :func:`place_global_options` arranged."""
    out: list[str] = []
    i = 0
    while i < len(args):
        name, eq, _ = args[i].partition("=")
        if name in GLOBAL_VALUED:
            taken = 1 if eq else 2
        elif args[i] in GLOBAL_FLAGS:
            taken = 1
        else:
            break
        out.extend(args[i:i + taken])
        i += taken
    return out


def _leave_now(code: int) -> None:
    """End the process at once if this command started Spark; return otherwise.

    Python's teardown after a Spark command frees every Py4J object one message to the JVM at
    a time (about a second after training); the JVM ends by itself when this process does.
    Everything a normal exit does before that teardown is done first, in its order: other
    threads are joined (and thread pools shut down, their queued work done), the exit
    handlers run, the streams are flushed; then the process ends.
    """
    context = getattr(sys.modules.get("pyspark"), "SparkContext", None)
    if context is None or getattr(context, "_active_spark_context", None) is None:
        return
    join_threads = getattr(threading, "_shutdown", None)  # what Python's own exit calls
    if join_threads is None:
        return  # an interpreter without it: leave the normal way
    join_threads()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with the right code.

    Args:
        argv: The arguments (the process's own when None: then a command that started
            Spark leaves without Python's teardown, see :func:`_leave_now`).
    """
    def leave(code: int) -> NoReturn:
        if argv is None:
            _leave_now(code)
        sys.exit(code)

    command = typer.main.get_command(app)
    args = place_global_options(list(sys.argv[1:] if argv is None else argv), command)
    debug = "--debug" in leading_globals(args)
    try:
        result = command(args=args, prog_name="icefloe", standalone_mode=False)
    except IcefloeError as exc:
        if debug:
            traceback.print_exc()
        error(exc.message)
        leave(exc.exit_code)
    except click.exceptions.Abort:
        err_console.print("aborted")
        leave(130)
    except _usage_errors() as exc:
        exc.show()  # type: ignore[attr-defined]
        leave(exc.exit_code)  # type: ignore[attr-defined]
    except KeyboardInterrupt:
        err_console.print("interrupted")
        leave(130)
    except Exception as exc:
        if debug:
            traceback.print_exc()
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        error(f"internal error {type(exc).__name__}: {detail} "
              "(run with --debug for the traceback)")
        leave(1)
    leave(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()

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
import traceback
from pathlib import Path
from typing import Any, NoReturn

import click
import typer

from icefloe.cli import data as data_cli
from icefloe.cli import jobs as jobs_cli
from icefloe.cli import ml as ml_cli
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
system_cli.register(app)
ml_cli.register(app)
server_cli.register(app)
jobs_cli.register(app)
serving_cli.register(app, ml_cli.model_app)


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
    early_json = False
    command = root
    i = 0
    while i < len(args):
        word = args[i]
        name, eq, _ = word.partition("=")
        subcommands = getattr(command, "commands", None)
        own = _options(command)
        if word == "--":
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
        end = rest.index("--") if "--" in rest else len(rest)
        rest.insert(end, "--json")
    return front + rest


def _leave_now(code: int) -> None:
    """End the process at once if this command started Spark; return otherwise.

    Python's teardown after a Spark command frees every Py4J object one message to the JVM at
    a time (about a second after training); the JVM ends by itself when this process does.
    The command's work is complete here (results printed, commits made, background threads
    joined), so the exit handlers run, the streams are flushed, and the process ends.
    """
    context = getattr(sys.modules.get("pyspark"), "SparkContext", None)
    if context is None or getattr(context, "_active_spark_context", None) is None:
        return
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
    debug = "--debug" in args[:args.index("--")] if "--" in args else "--debug" in args
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

"""The ``icefloe`` command: entry point, global options and error reporting.

Errors a user can cause are :class:`icefloe.errors.IcefloeError`: one line on stderr and the
error's exit code. Anything else is a bug: one line too, and the traceback with ``--debug``.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

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


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with the right code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        result = app(args=args, prog_name="icefloe", standalone_mode=False)
    except IcefloeError as exc:
        if debug:
            traceback.print_exc()
        error(exc.message)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except _usage_errors() as exc:
        exc.show()  # type: ignore[attr-defined]
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if debug:
            traceback.print_exc()
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        error(f"internal error {type(exc).__name__}: {detail} "
              "(run with --debug for the traceback)")
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()

"""Global options anywhere on the command line, and nothing else moved."""

import pytest
import typer

from icefloe.cli.main import app, place_global_options

ROOT = typer.main.get_command(app)


@pytest.mark.parametrize(("given", "placed"), [
    (["table", "list", "--home", "D", "--json"], ["--home", "D", "table", "list", "--json"]),
    (["--json", "table", "list", "--home=D"], ["--home=D", "table", "list", "--json"]),
    (["--home", "D", "--debug", "sql", "q"], ["--home", "D", "--debug", "sql", "q"]),
    (["--json", "job", "run", "J", "-p", "P", "--wait"],
     ["job", "run", "J", "-p", "P", "--wait", "--json"]),
    (["table", "--home", "D", "show", "t"], ["--home", "D", "table", "show", "t"]),
    # option values and what follows -- stay as they are
    (["job", "create", "--arguments", "--debug", "-p", "x", "--debug"],
     ["--debug", "job", "create", "--arguments", "--debug", "-p", "x"]),
    (["job", "create", "--arguments=--home", "-p", "x"],
     ["job", "create", "--arguments=--home", "-p", "x"]),
    (["sql", "q", "--", "--home", "x"], ["sql", "q", "--", "--home", "x"]),
    (["--json", "sql", "q", "--", "--home"], ["sql", "q", "--json", "--", "--home"]),
    (["table", "list", "--home"], ["--home", "table", "list"]),  # click says what is missing
])
def test_global_options_are_placed_for_click(given: list[str], placed: list[str]) -> None:
    assert place_global_options(given, ROOT) == placed

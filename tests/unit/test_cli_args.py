"""Global options anywhere on the command line, and nothing else moved."""

import pytest
import typer

from icefloe.cli.main import app, leading_globals, place_global_options

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
    # `--` as an option's value is a value, not the end of the options
    (["--json", "job", "create", "--arguments", "--", "-p", "x"],
     ["job", "create", "--arguments", "--", "-p", "x", "--json"]),
])
def test_global_options_are_placed_for_click(given: list[str], placed: list[str]) -> None:
    assert place_global_options(given, ROOT) == placed


def test_debug_is_only_the_global_flag_not_an_option_value() -> None:
    placed = place_global_options(["job", "create", "--arguments", "--debug", "-p", "x"], ROOT)
    assert "--debug" not in leading_globals(placed)
    placed = place_global_options(["table", "list", "--home", "D", "--debug"], ROOT)
    assert leading_globals(placed) == ["--home", "D", "--debug"]

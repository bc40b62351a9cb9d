"""The README is tested: every command and route it shows is run by some test.

In the spirit of datasette's documentation tests, this reads README.md and the test suite's
sources (nothing is run here):

- every ``icefloe ...`` line of the README's code blocks, and every ``icefloe ...`` in its
  inline code, is resolved against the real command tree (a command or option the CLI does
  not have is an error), then looked for among the command lines the tests run (the string
  lists of the modules that run the real command, through ``run_cli``, the helpers around it
  or a process of their own): a test must run the same command with at least the same
  options (the global ``--home``, ``--debug`` and ``--json`` aside, which any command
  takes);
- every REST route the README names (``METHOD /path`` in inline code, and ``curl`` lines)
  is looked for among the HTTP calls of the tests (``client.get(f"/projects/{p}")`` ...) and
  the SDK methods they call (each SDK method's route is read from ``icefloe/client.py``).

A failure lists what no test runs. ``pytest -v`` prints every README command and route with
the test that runs it.
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer

from icefloe.cli.main import GLOBAL_FLAGS, GLOBAL_VALUED, app

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
TESTS = ROOT / "tests"
CLIENT = ROOT / "src" / "icefloe" / "client.py"
GLOBAL = GLOBAL_VALUED | GLOBAL_FLAGS | {"--json"}
METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")
ROOT_ROUTES = ("/model", "/model/batch", "/metrics")  # served outside /api/v2
# Cloudera's token route and the CDE virtual clusters are served outside /api/v2 too.
ROOT_PREFIXES = ("/api/v0/", "/cde/")
COMMAND = typer.main.get_command(app)
UNKNOWN = None  # a token a test computes (a variable, a call): matches nothing
# How a module runs the real command: the conftest helper, the suite's helpers around it, or
# a process of its own. Command lists in other modules (e.g. argument parsing) do not count.
RUNNERS = ("run_cli(", "cli(", "icefloe(", "subprocess.", "Popen(")


# -- the command tree ----------------------------------------------------------------------


def _options(command: Any) -> dict[str, tuple[str, bool]]:
    """Option spellings of a command -> (canonical name, takes a value)."""
    out: dict[str, tuple[str, bool]] = {}
    for param in getattr(command, "params", []):
        if getattr(param, "param_type_name", "") != "option":
            continue
        names = [*param.opts, *getattr(param, "secondary_opts", [])]
        canonical = max(names, key=len)
        flag = getattr(param, "is_flag", False) or getattr(param, "count", False)
        for name in names:
            out[name] = (canonical, not flag)
    return out


@dataclass(frozen=True)
class Invocation:
    """A command line resolved against the command tree."""

    path: tuple[str, ...]
    options: frozenset[str]
    problems: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return " ".join(("icefloe", *self.path))


def resolve(tokens: list[str | None]) -> Invocation:
    """Which command a command line runs, with which options (canonical long names)."""
    command: Any = COMMAND
    path: list[str] = []
    options: set[str] = set()
    problems: list[str] = []
    root_options = _options(COMMAND)
    i = 0
    while i < len(tokens):
        word = tokens[i]
        i += 1
        if word is None:
            continue
        if word == "--":
            break
        subcommands = getattr(command, "commands", None)
        if word.startswith("-") and len(word) > 1:
            name, eq, _ = word.partition("=")
            own = {**root_options, **_options(command)}
            if name == "--json" and name not in own:
                own[name] = ("--json", False)
            if name in own:
                canonical, takes_value = own[name]
                options.add(canonical)
                if takes_value and not eq:
                    i += 1
            elif name != "--help":
                problems.append(f"{' '.join(('icefloe', *path))} has no option {name}")
        elif subcommands is not None:
            # `icefloe monitor DEP` is `icefloe monitor show DEP`
            default = getattr(command, "default_command", None)
            if word not in subcommands and default in subcommands:
                command = subcommands[default]
                path.append(default)
                i -= 1  # the word is the default command's argument
            elif word in subcommands:
                command = subcommands[word]
                path.append(word)
            else:
                problems.append(f"{' '.join(('icefloe', *path))} has no command {word!r}")
                return Invocation(tuple(path), frozenset(options), tuple(problems))
    if getattr(command, "commands", None) is not None and path:
        problems.append(f"{' '.join(('icefloe', *path))} is a group, not a command")
    return Invocation(tuple(path), frozenset(options), tuple(problems))


# -- what the README shows -----------------------------------------------------------------


@dataclass(frozen=True)
class Shown:
    """A command line of the README."""

    line: str
    invocation: Invocation


def _code_blocks(text: str) -> Iterator[str]:
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
        if match.group(1) in ("sh", "bash", "shell", "console"):
            yield match.group(2)


def _shell_lines(block: str) -> Iterator[str]:
    """Logical lines: continuations and quotes over several lines joined, comments dropped."""
    pending = ""
    for line in re.sub(r"\\\n\s*", " ", block).splitlines():
        pending = f"{pending}\n{line}" if pending else line
        try:
            words = shlex.split(pending, comments=True)
        except ValueError:  # a quote goes on to the next line
            continue
        pending = ""
        if words:
            yield shlex.join(words)
    assert not pending, f"README code does not parse as shell: {pending!r}"


def readme_commands(text: str | None = None) -> list[Shown]:
    """Every ``icefloe`` command line the README shows (code blocks and inline code)."""
    text = README.read_text() if text is None else text
    lines: list[str] = []
    for block in _code_blocks(text):
        lines += [line for line in _shell_lines(block) if line.startswith("icefloe ")]
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    lines += [" ".join(m.group(1).split()) for m in re.finditer(r"`(icefloe\s[^`]+)`", prose)]
    shown: list[Shown] = []
    for line in dict.fromkeys(lines):
        shown.append(Shown(line, resolve(list(shlex.split(line))[1:])))
    return shown


def readme_routes(text: str | None = None) -> list[tuple[str, str]]:
    """Every REST route the README names: ``(METHOD, /full/path)``."""
    text = README.read_text() if text is None else text
    found: list[tuple[str, str]] = []
    methods = "|".join(METHODS)
    for match in re.finditer(rf"`((?:{methods})(?:\|(?:{methods}))*) (/[^`\s]*)`", text):
        for method in match.group(1).split("|"):
            found.append((method, _full(match.group(2))))
    for block in _code_blocks(text):
        for line in _shell_lines(block):
            if line.startswith("curl "):
                found.append(_curl_route(shlex.split(line)))
    return list(dict.fromkeys(found))


def _full(path: str) -> str:
    path = path.split("?")[0]
    if path.startswith(("/api/v2", *ROOT_PREFIXES)) or path in ROOT_ROUTES:
        return path
    return "/api/v2" + path


def _curl_route(words: list[str]) -> tuple[str, str]:
    method = "POST" if any(w in ("-d", "--data") for w in words) else "GET"
    if "-X" in words:
        method = words[words.index("-X") + 1]
    url = next(w for w in words if "ICEFLOE_URL" in w)
    return method, _full(url.split("ICEFLOE_URL", 1)[1].lstrip("}"))


# -- what the tests run --------------------------------------------------------------------


def _tokens(nodes: list[ast.expr], lists: dict[str, list[str | None]]) -> list[str | None]:
    out: list[str | None] = []
    for node in nodes:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append(node.value)
        elif isinstance(node, ast.Starred) and isinstance(node.value, ast.Name) \
                and node.value.id in lists:
            out += lists[node.value.id]
        else:
            out.append(UNKNOWN)
    return out


def _string_lists(tree: ast.AST) -> dict[str, list[str | None]]:
    """Names assigned a literal list or tuple anywhere in a module (``TRAIN = [...]``)."""
    lists: dict[str, list[str | None]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.List | ast.Tuple):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    lists[target.id] = _tokens(list(node.value.elts), lists)
    return lists


def _rendered(node: ast.expr) -> str | None:
    """A path-like string argument; computed parts of an f-string become ``{}``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


@dataclass(frozen=True)
class Source:
    """What one test module runs."""

    module: str
    commands: list[Invocation]
    requests: list[tuple[str | None, str]]  # (METHOD or None if unknown, rendered path)
    calls: set[str]  # attribute names called (SDK methods, if it imports the SDK)


def _scan(path: Path) -> Source:
    tree = ast.parse(path.read_text(), str(path))
    lists = _string_lists(tree)
    tops = set(getattr(COMMAND, "commands", {}))
    commands: list[Invocation] = []
    requests: list[tuple[str | None, str]] = []
    calls: set[str] = set()
    for node in ast.walk(tree):
        sequence: list[ast.expr] | None = None
        if isinstance(node, ast.List | ast.Tuple):
            sequence = list(node.elts)
        elif isinstance(node, ast.Call):
            sequence = list(node.args)
            func = node.func
            if isinstance(func, ast.Attribute):
                calls.add(func.attr)
                method = func.attr.upper()
                if method in METHODS and node.args and (text := _rendered(node.args[0])):
                    requests.append((method, text))
                if func.attr in ("request", "stream") and len(node.args) >= 2:
                    verb, text = _rendered(node.args[0]), _rendered(node.args[1])
                    if text:
                        requests.append((verb.upper() if verb else None, text))
        if sequence is None:
            continue
        tokens = _tokens(sequence, lists)
        start = next((i for i, t in enumerate(tokens) if t in tops), None)
        if start is not None and all(t is None or t.startswith("-") or "." in t
                                     for t in tokens[:start]):
            commands.append(resolve(tokens[start:]))  # [python, "-m", "icefloe.cli.main", ...]
        if isinstance(node, ast.Tuple | ast.List) and len(sequence) >= 2:
            verb, text = _rendered(sequence[0]), _rendered(sequence[1])
            if verb in METHODS and text and "/" in text:
                requests.append((verb, text))
    text = path.read_text()
    if "from icefloe.client import Client" not in text:
        calls = set()  # a store or repo function of the same name is not the SDK's
    if not any(runner in text for runner in RUNNERS):
        commands = []  # lists of words in a module that never runs the command (parsing)
    return Source(str(path.relative_to(ROOT)), commands, requests, calls)


def scan_tests() -> list[Source]:
    """Every module of the test suite (helpers such as ``servers.py`` too) but this one."""
    return [_scan(p) for p in sorted(TESTS.rglob("*.py")) if p.resolve() != Path(__file__)]


def sdk_routes() -> dict[str, list[tuple[str, str]]]:
    """Each SDK method's routes, read from its ``self._call``/``self._pages`` calls."""
    routes: dict[str, list[tuple[str, str]]] = {}
    tree = ast.parse(CLIENT.read_text())
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Client"):
        for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            for node in ast.walk(fn):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                verb, text = None, None
                if node.func.attr == "_call" and len(node.args) >= 2:
                    verb, text = _rendered(node.args[0]), _rendered(node.args[1])
                elif node.func.attr == "_pages" and node.args:
                    verb, text = "GET", _rendered(node.args[0])
                if verb and text:  # relative paths are under the SDK's /api/v2 base
                    full = "/api/v2" + text if text.startswith("/") else text
                    routes.setdefault(fn.name, []).append((verb, full))
    return routes


# -- matching ------------------------------------------------------------------------------


def runs(test: Invocation, shown: Invocation) -> bool:
    """Does the test's command line run the README's command (with its options)?"""
    return test.path == shown.path and shown.options - GLOBAL <= test.options


def route_pattern(path: str) -> re.Pattern[str]:
    """A README route as a regex over rendered test paths (a computed prefix such as
    ``{cp.url}`` or ``{base}`` may stand for the server, with or without ``/api/v2``)."""
    api = path.startswith("/api/v2")
    body = path.removeprefix("/api/v2") if api else path
    parts = re.split(r"\{[^}]*\}", body)
    template = r"[^/?]+".join(re.escape(p) for p in parts)
    prefix = r"(?:\{\}|https?://[^/]+)?" + (r"(?:/api/v2)?" if api else "")
    return re.compile(rf"^{prefix}{template}/?(?:\?.*)?$")


def route_run_by(method: str, path: str, sources: list[Source],
                 sdk: dict[str, list[tuple[str, str]]]) -> str | None:
    """The first test module that calls this route (by HTTP or through the SDK)."""
    pattern = route_pattern(path)
    for source in sources:
        for verb, text in source.requests:
            if verb in (method, None) and pattern.match(text):
                return source.module
        for name in source.calls & set(sdk):
            if any(verb == method and pattern.match(text) for verb, text in sdk[name]):
                return f"{source.module} (SDK {name})"
    return None


def app_routes() -> set[tuple[str, str]]:
    """The routes the control plane serves, read from the route decorators of
    ``icefloe/api`` (``@router.get`` is under /api/v2), the gateway and the OpenAPI URL."""
    routes = {("GET", "/api/v2/openapi.json"), ("POST", "/model"), ("POST", "/model/batch")}
    for path in sorted((ROOT / "src" / "icefloe" / "api").glob("*.py")):
        tree = ast.parse(path.read_text())
        # Module constants (a route path named once) and a router's own prefix, if it has
        # one (APIRouter(prefix=...) in this module); else the router is under /api/v2.
        constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                     for t in n.targets if isinstance(t, ast.Name)
                     and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)}
        prefix = next((_rendered(k.value) for n in ast.walk(tree) if isinstance(n, ast.Call)
                       and isinstance(n.func, ast.Name) and n.func.id == "APIRouter"
                       for k in n.keywords if k.arg == "prefix"), None) or "/api/v2"
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.args):
                continue
            verb, owner = node.func.attr.upper(), node.func.value.id
            arg = node.args[0]
            text = constants.get(arg.id) if isinstance(arg, ast.Name) else _rendered(arg)
            if verb in METHODS and owner in ("router", "app") and text:
                routes.add((verb, (prefix if owner == "router" else "") + text))
    return routes


def _same_route(a: str, b: str) -> bool:
    return re.sub(r"\{[^}]*\}", "{}", a) == re.sub(r"\{[^}]*\}", "{}", b)


@pytest.fixture(scope="module")
def sources() -> list[Source]:
    return scan_tests()


def test_the_readme_shows_real_commands_and_options() -> None:
    shown = readme_commands()
    assert len(shown) >= 20, "the README parser found too few commands"
    wrong = [f"{s.line}: {'; '.join(s.invocation.problems)}" for s in shown
             if s.invocation.problems]
    assert not wrong, "README commands the CLI does not have:\n" + "\n".join(wrong)


def test_the_readme_shows_real_routes() -> None:
    served = app_routes()
    assert ("GET", "/api/v2/projects/{project_id}") in served and len(served) >= 30
    wrong = [f"  {method} {path}" for method, path in readme_routes()
             if not any(m == method and _same_route(path, p) for m, p in served)]
    assert not wrong, "README routes the control plane does not serve:\n" + "\n".join(wrong)


def test_every_readme_command_is_run_by_a_test(sources: list[Source],
                                               request: pytest.FixtureRequest,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    report, missing = [], []
    for shown in readme_commands():
        where = next((s.module for s in sources
                      if any(runs(c, shown.invocation) for c in s.commands)), None)
        line = " ".join(shown.line.split())
        report.append(f"  {'ok ' if where else 'NO '} {line}  <- {where or 'no test'}")
        if where is None:
            options = " ".join(sorted(shown.invocation.options - GLOBAL))
            missing.append(f"  {shown.invocation.name} {options}".rstrip() + f"    ({line})")
    if request.config.getoption("verbose") > 0:
        with capsys.disabled():
            print("\nREADME commands and the tests that run them:\n" + "\n".join(report))
    assert not missing, "README commands no test runs:\n" + "\n".join(missing)


def test_every_readme_route_is_called_by_a_test(sources: list[Source],
                                                request: pytest.FixtureRequest,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    routes = readme_routes()
    assert len(routes) >= 20, "the README parser found too few routes"
    sdk = sdk_routes()
    report, missing = [], []
    for method, path in routes:
        where = route_run_by(method, path, sources, sdk)
        report.append(f"  {'ok ' if where else 'NO '} {method} {path}  <- {where or 'no test'}")
        if where is None:
            missing.append(f"  {method} {path}")
    if request.config.getoption("verbose") > 0:
        with capsys.disabled():
            print("\nREADME routes and the tests that call them:\n" + "\n".join(report))
    assert not missing, "README routes no test calls:\n" + "\n".join(missing)


# -- the checker checks itself ---------------------------------------------------------------


def test_the_parsers_read_what_they_should() -> None:
    text = (
        "Run `icefloe table list --home DIR` or:\n\n```sh\n"
        "icefloe train --table t --label y \\\n      --pipeline tree --json   # note\n"
        "# icefloe commented out\nexport X=1\n"
        "curl -X POST $ICEFLOE_URL/model -d '{}'\n```\n"
        "and `GET|DELETE /projects/{p}`, `POST /api/v2/models/builds`.\n"
    )
    shown = {s.line: s.invocation for s in readme_commands(text)}
    assert set(shown) == {"icefloe table list --home DIR",
                          "icefloe train --table t --label y --pipeline tree --json"}
    train = shown["icefloe train --table t --label y --pipeline tree --json"]
    assert train.path == ("train",) and not train.problems
    assert train.options == {"--table", "--label", "--pipeline", "--json"}
    assert readme_routes(text) == [("GET", "/api/v2/projects/{p}"),
                                   ("DELETE", "/api/v2/projects/{p}"),
                                   ("POST", "/api/v2/models/builds"), ("POST", "/model")]
    assert resolve(["table", "lsit"]).problems == ("icefloe table has no command 'lsit'",)
    assert resolve(["sql", "q", "--nope"]).problems == ("icefloe sql has no option --nope",)


def test_matching_can_fail() -> None:
    readme = resolve(["table", "show", "t", "--snapshot", "S1", "--limit", "5"])
    assert runs(resolve(["table", "show", "x", "--limit", "1", "--snapshot", None]), readme)
    assert not runs(resolve(["table", "show", "x", "--limit", "1"]), readme)
    assert not runs(resolve(["table", "tags", "x", "--limit", "1"]), readme)
    assert runs(resolve(["job", "logs", "j", "-p", "x", "--run", "r", "-f"]),
                resolve(["job", "logs", "J", "--project", "P", "--run", "R", "--follow"]))
    pattern = route_pattern("/api/v2/projects/{p}/jobs/{j}/runs/{r}:stop")
    assert pattern.match("/projects/{}/jobs/{}/runs/{}:stop")
    assert pattern.match("{}/projects/{}/jobs/{}/runs/{}:stop")
    assert not pattern.match("/projects/{}/jobs/{}/runs/{}")
    assert not route_pattern("/model").match("/model/batch")
    fake = Source("tests/x.py", [], [("GET", "/projects")], {"stop_run"})
    sdk = {"stop_run": [("POST", "/projects/{}/jobs/{}/runs/{}:stop")]}
    assert route_run_by("GET", "/api/v2/projects", [fake], sdk) == "tests/x.py"
    assert route_run_by("POST", "/api/v2/projects", [fake], sdk) is None
    assert route_run_by("POST", "/api/v2/projects/{p}/jobs/{j}/runs/{r}:stop", [fake], sdk)

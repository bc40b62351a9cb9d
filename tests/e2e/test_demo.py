"""The acceptance story as `make demo` runs it (slow: starts Spark in a subprocess)."""

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.e2e


def test_demo_runs_the_data_story_twice(tmp_path) -> None:
    home = tmp_path / "home"
    first = run_cli(["demo", "--rows", "2000", "--bad-rows", "500"], home)
    assert first.returncode == 0, first.stderr + first.stdout
    out = first.stdout
    for expected in (
        "Land the raw data",
        "class balance",
        "refused: column(s) 'home_ownership', 'purpose' not in table lending.loans",
        "2,500 rows, new columns home_ownership, purpose",
        "S2 still reads 2,500 rows",
        "registered loan-default/1\ntest AUC",
        "training failed: the baseline pipeline cannot assemble string column(s) 'home_ownership'",
        "reproduced 2,000 rows; fingerprint matches the training data",
        "LoadBatch: ENGINE_SUCCEEDED",
        "TrainModel (started by LoadBatch's success): ENGINE_SUCCEEDED",
        "read_metrics: 5 predictions, 5 with ground truth",
    ):
        assert expected in out, expected
    assert "Traceback" not in first.stderr
    # Re-running replaces the demo's own table and tells the user so.
    second = run_cli(["demo", "--rows", "2000", "--bad-rows", "500"], home)
    assert second.returncode == 0, second.stderr
    assert "replacing lending.loans from an earlier demo run" in second.stdout
    assert "replacing model loan-default from an earlier demo run" in second.stdout
    assert "registered loan-default/1" in second.stdout


def test_demo_refuses_to_replace_a_user_table(tmp_path) -> None:
    home = tmp_path / "home"
    data = tmp_path / "mine.csv"
    data.write_text("a\n1\n")
    run_cli(["table", "load", "lending.loans", str(data)], home, check=True)
    proc = run_cli(["demo"], home)
    assert proc.returncode == 5
    assert "was not created by the demo" in proc.stderr
    rows = run_cli(["sql", "SELECT count(*) AS n FROM lending.loans", "--json"], home, check=True)
    assert '"n": 1' in rows.stdout

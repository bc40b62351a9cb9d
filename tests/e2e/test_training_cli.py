"""The training story through the real CLI, as the issue's acceptance check runs it."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from icefloe.lakehouse.fingerprint import fingerprint
from tests.conftest import run_cli

pytestmark = pytest.mark.e2e
TRAIN = ["train", "--table", "lending.loans", "--label", "loan_status",
         "--positive", "Charged Off,Default", "--model", "loan-default"]


def _json(home: Path, *args: str) -> dict:
    return json.loads(run_cli([*args, "--json"], home, check=True).stdout)


def test_train_lineage_reproduce_rollback_fail_and_fix(tmp_path: Path) -> None:
    home = tmp_path / "home"
    base, bad = tmp_path / "loans.parquet", tmp_path / "bad.parquet"
    run_cli(["data", "generate", "--rows", "5000", "--output", str(base)], home, check=True)
    run_cli(["data", "generate", "--rows", "1000", "--bad-batch", "--output", str(bad)], home,
            check=True)
    s1 = _json(home, "table", "load", "lending.loans", str(base))["snapshot"]["snapshot_id"]
    run_cli(["table", "tag", "lending.loans", "s1-base"], home, check=True)

    trained = run_cli([*TRAIN, "--pipeline", "baseline", "--json"], home, check=True)
    v1 = json.loads(trained.stdout)  # stdout holds the result alone; the steps are on stderr
    steps = [line.removeprefix("train: ") for line in trained.stderr.splitlines()
             if line.startswith("train: ")]
    assert steps[0] == "starting Spark, loading MLflow" and len(steps) >= 5, trained.stderr
    assert steps.index("fit") < steps.index("register"), trained.stderr
    assert v1["version"] == 1 and v1["metrics"]["auc"] >= 0.65 and v1["parity"] <= 1e-5
    assert v1["lineage"]["snapshot_id"] == s1

    s2 = _json(home, "table", "load", "lending.loans", str(bad), "--evolve")["snapshot"]
    run_cli(["table", "tag", "lending.loans", "s2-evolved"], home, check=True)
    run_cli(["table", "rollback", "lending.loans", "--to", "s1-base"], home, check=True)
    assert _json(home, "lineage", "loan-default/1")["snapshot_id"] == s1

    out = tmp_path / "repro.parquet"
    repro = run_cli(["data", "reproduce", "loan-default/1", "--output", str(out)], home,
                    check=True)
    assert "fingerprint matches" in repro.stderr
    rows = pq.read_table(out)
    assert rows.num_rows == 5000 and fingerprint(rows) == v1["lineage"]["fingerprint"]

    failed = run_cli([*TRAIN, "--pipeline", "baseline", "--snapshot", "s2-evolved"], home)
    assert failed.returncode == 7
    assert "'home_ownership'" in failed.stderr and "--pipeline categorical" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert [v["version"] for v in _json(home, "model", "versions", "loan-default")] == [1]

    v2 = _json(home, *TRAIN, "--snapshot", "s2-evolved", "--pipeline", "categorical")
    assert v2["version"] == 2 and v2["lineage"]["snapshot_id"] == s2["snapshot_id"]
    assert _json(home, "model", "list") == [{"name": "loan-default", "latest_version": 2,
                                             "versions": 2, "aliases": {}}]
    run_cli(["model", "alias", "loan-default/2", "champion"], home, check=True)
    assert _json(home, "model", "show", "loan-default@champion")["version"] == 2
    run_cli(["table", "rollback", "lending.loans", "--to", "s2-evolved"], home, check=True)

    rolled = _json(home, "table", "rollback", "lending.loans", "--to-model", "loan-default/1")
    assert rolled["snapshot"]["snapshot_id"] == s1
    # The schema v1 learned from is current again: the bad batch needs --evolve again.
    assert rolled["schema_changed"] and rolled["schema_id"] == rolled["snapshot"]["schema_id"]
    assert sorted(rolled["columns_removed"]) == ["home_ownership", "purpose"]
    refused = run_cli(["table", "load", "lending.loans", str(bad)], home)
    assert refused.returncode == 5 and "'home_ownership'" in refused.stderr
    assert "--evolve" in refused.stderr
    current = _json(home, "sql", "SELECT count(*) AS n FROM lending.loans")
    assert current == [{"n": 5000}]

    scored = _json(home, "score", "--model", "loan-default/1", "--table", "lending.loans",
                   "--output-table", "lending.scores")
    assert scored["rows"] == 5000 and scored["source_snapshot_id"] == s1
    bad_ref = run_cli(["lineage", "loan-default/9"], home)
    assert bad_ref.returncode == 3 and "has no version 9" in bad_ref.stderr

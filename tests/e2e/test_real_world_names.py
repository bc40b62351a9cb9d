"""Column names as spreadsheets export them, through the whole path with the real CLI: load,
SQL (quoted), train (baseline and a categorical tree with imputation), ONNX parity, build,
deploy, /model requests by the original names, batch scoring and reproduce."""

import csv
import json
import random
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.integration.test_cli_control_plane import cli
from tests.integration.test_control_plane import ControlPlane, running

pytestmark = pytest.mark.e2e

NUMBERS = ["mean radius", "x.y", "a-b", "größe", "1st", "select"]
CATEGORY = "kind of thing"
LABEL = "is it bad?"


def _write_csv(path: Path, rows: int = 400, extra: tuple[str, ...] = ()) -> None:
    rng = random.Random(7)
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow([*NUMBERS, *extra, CATEGORY, LABEL])
        for _ in range(rows):
            values = [rng.gauss(10, 2), rng.random(), rng.random(), rng.gauss(0, 1),
                      rng.randint(0, 5), rng.random(), *(rng.random() for _ in extra)]
            kind = rng.choice(["red", "green", "blue"])
            bad = values[0] + 3 * values[1] + (1.5 if kind == "red" else 0) \
                + rng.gauss(0, 1) > 13
            out.writerow([*values, kind, "yes" if bad else "no"])


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    yield from running(tmp_path_factory.mktemp("names") / "home")


def _ok(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_spreadsheet_column_names_work_end_to_end(plane: ControlPlane, tmp_path: Path) -> None:
    data = tmp_path / "export.csv"
    _write_csv(data)
    _ok(cli(plane, "table", "load", "sheets.odd", str(data)))
    sql = json.loads(_ok(cli(plane, "sql", "--json", 'SELECT "mean radius", "x.y", "größe", '
                             '"select", "kind of thing" FROM sheets.odd LIMIT 3')))
    assert list(sql[0]) == ["mean radius", "x.y", "größe", "select", "kind of thing"]

    # "probability" is also the name of the model's own output inside Spark and ONNX.
    clash = tmp_path / "clash.csv"
    _write_csv(clash, 100, extra=("probability",))
    _ok(cli(plane, "table", "load", "sheets.clash", str(clash)))
    refused = cli(plane, "train", "--table", "sheets.clash", "--label", LABEL, "--positive",
                  "yes", "--model", "clash", "--exclude", CATEGORY)
    assert refused.returncode != 0
    assert "internal error" not in refused.stderr and "'probability'" in refused.stderr

    base = json.loads(_ok(cli(plane, "train", "--table", "sheets.odd", "--label", LABEL,
                              "--positive", "yes", "--model", "odd", "--json",
                              "--exclude", CATEGORY)))
    assert base["lineage"]["features"] == NUMBERS
    assert base["metrics"]["onnx_parity_max_abs_diff"] <= 1e-5
    tree = json.loads(_ok(cli(plane, "train", "--table", "sheets.odd", "--label", LABEL,
                              "--positive", "yes", "--model", "odd", "--pipeline", "tree",
                              "--nulls", "impute", "--json")))
    assert tree["lineage"]["categorical_features"] == [CATEGORY]
    assert tree["metrics"]["auc"] > 0.7

    schema = json.loads(_ok(cli(plane, "model", "schema", "odd/2", "--json")))
    assert [f["name"] for f in schema["input_schema"]["fields"]] == [*NUMBERS, CATEGORY]
    dep = json.loads(_ok(cli(plane, "model", "deploy", "odd/2", "--json")))
    record = {**schema["example_request"], "mean radius": 16.0, "x.y": 0.9, CATEGORY: "red"}
    model = plane.url.removesuffix("/api/v2") + "/model"
    r = plane.client.post(model, json={"accessKey": dep["access_key"], "request": record})
    assert r.status_code == 200, r.text
    assert r.json()["response"]["prediction"] == 1
    r = plane.client.post(model, json={"accessKey": dep["access_key"],
                                       "request": {**record, "größe": None}})
    assert r.status_code == 200 and r.json()["response"]["probability"] >= 0  # imputed
    r = plane.client.post(model, json={
        "accessKey": dep["access_key"], "request": {**record, "x.y": "high"}})
    assert r.status_code == 422 and "x.y" in r.text  # the field named as the user named it

    scored = json.loads(_ok(cli(plane, "score", "--model", "odd/1", "--table", "sheets.odd",
                                "--output-table", "sheets.scored", "--json")))
    assert scored["rows"] == 400 and scored["unscored_rows"] == 0
    copy = tmp_path / "trained-on.parquet"
    _ok(cli(plane, "data", "reproduce", "odd/2", "-o", str(copy)))
    assert pq.read_table(copy).column_names == [*NUMBERS, CATEGORY, LABEL]

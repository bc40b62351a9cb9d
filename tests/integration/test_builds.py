"""Builds of trained models: self-test, schema, checksum, scoring, and failure leaves nothing."""

import json
from pathlib import Path

import pytest

import icefloe.serving.builds as builds
from icefloe.config import Settings
from icefloe.demo.loans import generate_loans
from icefloe.errors import InvalidInputError, ParityError
from icefloe.lakehouse import Lakehouse
from icefloe.ml.scoring import score_table
from icefloe.ml.spec import LabelSpec, TrainSpec
from icefloe.ml.train import train
from icefloe.serving.builds import create_build
from icefloe.serving.scorer import BuildScorer
from icefloe.store.db import Database

pytestmark = pytest.mark.spark


@pytest.fixture
def trained(spark, settings: Settings) -> Settings:
    lh = Lakehouse(settings)
    lh.write("lending.loans", generate_loans(1500, 2, bad_batch=True), "create")
    train(TrainSpec(table="lending.loans", label=LabelSpec("loan_status",
                                                           ("Charged Off", "Default")),
                    model_name="loan-default", pipeline="categorical"), settings, spark=spark)
    return settings


def test_build_is_ready_self_tested_and_scores_like_batch_scoring(trained: Settings) -> None:
    db = Database(trained.resolved_platform_db_url)
    build = create_build(db, trained, "loan-default/1", "alice")
    assert build.status == "BUILD_READY" and build.parity <= 1e-5
    folder = Path(build.path)
    assert {p.name for p in folder.iterdir()} == {"model.onnx", "schema.json", "manifest.json",
                                                  "profile.json"}
    fields = {f["name"]: f for f in build.input_schema["fields"]}
    assert fields["home_ownership"]["kind"] == "string"
    assert set(fields["home_ownership"]["levels"]) == {"MORTGAGE", "RENT", "OWN", "OTHER"}
    assert fields["annual_inc"]["kind"] == "number"
    # Strings have a declared default (the unknown category); numbers have none.
    assert {n for n, f in fields.items() if f["optional"]} == {"home_ownership", "purpose"}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["checksum"] == build.checksum and manifest["lineage"]["table"] == \
        "lending.loans"

    scorer = BuildScorer.load(folder)
    names = [f["name"] for f in build.input_schema["fields"]]
    numbers = [f["name"] for f in build.input_schema["fields"] if f["kind"] == "number"]
    rows = Lakehouse(trained).read("lending.loans").to_pylist()
    complete = [i for i, r in enumerate(rows) if all(r[n] is not None for n in numbers)][:20]
    records = [{n: rows[i][n] for n in names} for i in complete]
    served = scorer.predict(records)
    score_table("loan-default/1", "lending.loans", "lending.scores", settings=trained)
    batch = Lakehouse(trained).read("lending.scores").column("probability").to_pylist()
    assert [answer["probability"] for answer, _ in served] == pytest.approx(
        [batch[i] for i in complete], abs=1e-9)
    with_null = next(i for i, r in enumerate(rows) if r["emp_length"] is None)
    with pytest.raises(InvalidInputError, match="'emp_length' may not be null"):
        scorer.predict([{n: rows[with_null][n] for n in names}])
    unseen, tracked = scorer.predict([{**records[0], "home_ownership": "CASTLE"}])[0]
    assert 0 <= unseen["probability"] <= 1 and tracked == {"unseen_categories":
                                                           ["home_ownership"]}
    assert served[0][1] == {}
    with pytest.raises(InvalidInputError, match="record 1: missing field 'int_rate'"):
        scorer.predict([records[0], {k: v for k, v in records[1].items() if k != "int_rate"}])
    # A string left out scores as the unknown category, as a null does, and is counted.
    older = {k: v for k, v in records[0].items() if k not in ("home_ownership", "purpose")}
    (left_out, counted), (as_null, none) = scorer.predict(
        [older, {**older, "home_ownership": None, "purpose": None}])
    assert left_out == as_null and 0 <= left_out["probability"] <= 1
    assert counted == {"missing_fields": ["home_ownership", "purpose"]} and none == {}
    _, both = scorer.predict([{**older, "home_ownership": "CASTLE"}])[0]
    assert both == {"unseen_categories": ["home_ownership"], "missing_fields": ["purpose"]}

    (folder / "schema.json").write_text((folder / "schema.json").read_text() + " ")
    with pytest.raises(ParityError, match="checksum"):
        BuildScorer.load(folder)


def test_failed_self_test_leaves_nothing(trained: Settings, monkeypatch) -> None:
    db = Database(trained.resolved_platform_db_url)
    monkeypatch.setattr(builds, "PARITY_LIMIT", -1.0)
    build = create_build(db, trained, "loan-default/1")
    assert build.status == "BUILD_FAILED" and "self-test" in build.reason
    assert build.path == "" and not any(
        (trained.home / "builds").iterdir())


def test_training_keeps_a_reference_profile_that_travels_with_builds(trained: Settings) -> None:
    from icefloe.monitoring.profile import PROFILE_ARTIFACT, PROFILE_FILE, ReferenceProfile
    from icefloe.monitoring.reference import ALL_ROWS, TEST_ROWS
    from icefloe.registry.mlflow_registry import ModelRegistry
    from tests.conftest import run_cli

    registry = ModelRegistry(trained)
    lineage = registry.lineage("loan-default/1")
    profile = registry.reference_profile("loan-default/1")
    assert profile is not None and profile.scores_from == TEST_ROWS
    assert (profile.table, profile.snapshot_id, profile.fingerprint) == (
        lineage.table, lineage.snapshot_id, lineage.fingerprint)
    assert list(profile.numeric) == lineage.numeric_features
    assert list(profile.categorical) == lineage.categorical_features
    assert profile.rows == lineage.row_count and profile.scores.rows == lineage.test_rows
    for feature in profile.numeric.values():
        assert sum(feature.counts) + feature.nulls == lineage.row_count
    assert sum(profile.categorical["purpose"].frequencies.values()) + \
        profile.categorical["purpose"].nulls == lineage.row_count

    build = create_build(Database(trained.resolved_platform_db_url), trained, "loan-default/1")
    kept = json.loads((Path(build.path) / PROFILE_FILE).read_text())
    assert ReferenceProfile.from_dict(kept) == profile
    assert json.loads((Path(build.path) / "manifest.json").read_text())["profile"] == \
        PROFILE_FILE

    # A version trained before profiles existed: the command makes one from its snapshot.
    (stored,) = trained.home.rglob(PROFILE_ARTIFACT)
    stored.unlink()
    assert registry.reference_profile("loan-default/1") is None
    shown = run_cli(["model", "profile", "loan-default/1", "--json"], trained.home, check=True)
    made = json.loads(shown.stdout)
    assert made["made_now"] is True and made["scores_from"] == ALL_ROWS
    assert made["scores"]["rows"] == lineage.row_count
    assert made["numeric"] == {k: v.__dict__ for k, v in profile.numeric.items()}
    again = run_cli(["model", "profile", "loan-default/1"], trained.home, check=True)
    assert "annual_inc" in again.stdout and "made now" not in again.stderr

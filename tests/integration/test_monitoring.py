"""A deployment's metrics per window against the profile its build carries: no drift for
rows drawn from the training data, drift for a shifted feature and a new category, accuracy
once ground truth arrives, insufficient below the minimum samples, results kept in
monitoring.metrics. Real training, build, platform DB, Iceberg tables and CLI."""

import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from icefloe.config import Settings
from icefloe.demo.loans import generate_loans
from icefloe.lakehouse import Lakehouse
from icefloe.ml.spec import LabelSpec, TrainSpec
from icefloe.ml.train import train
from icefloe.monitoring.monitor import METRICS, monitor_deployment
from icefloe.serving.builds import create_build
from icefloe.serving.predictions import track_delayed_metrics
from icefloe.serving.scorer import BuildScorer
from icefloe.store import repo
from icefloe.store.db import Database
from icefloe.store.orm import Deployment, Prediction
from tests.conftest import run_cli
from tests.postgres import home_settings

pytestmark = pytest.mark.spark

NOW = 1_790_000_000_000


@dataclass
class Served:
    settings: Settings
    db: Database
    deployment: str
    scorer: BuildScorer
    label_of: dict[str, float]


@pytest.fixture(scope="module")
def served(spark, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from pathlib import Path

    settings = home_settings(tmp_path_factory.mktemp("monitoring") / "home")
    Lakehouse(settings).write("lending.loans", generate_loans(3000, 11, bad_batch=True),
                              "create")
    train(TrainSpec(table="lending.loans", label=LabelSpec("loan_status",
                                                           ("Charged Off", "Default")),
                    model_name="loan-default", pipeline="categorical"), settings, spark=spark)
    db = Database(settings.resolved_platform_db_url)
    build = create_build(db, settings, "loan-default/1")
    assert build.status == "BUILD_READY", build.reason
    with db.session() as s:
        dep = Deployment(id=repo.new_id(), build_id=build.id, model_name="loan-default",
                         model_version=1, access_key_hash="0" * 64, auth_enabled=True,
                         replicas=1, status="DEPLOYED", reason="", created_by="",
                         created_at=repo.now(), updated_at=repo.now())
        s.add(dep)
        dep_id = dep.id
    yield Served(settings, db, dep_id, BuildScorer.load(Path(build.path)), {})
    db.dispose()


def _call(served: Served, records: list[dict], first_ms: int, labels: list[float]) -> list[str]:
    """Record answered predictions of ``records`` as the gateway would (real scores)."""
    answers = served.scorer.predict(records)
    uuids = []
    with served.db.session() as s:
        for i, ((answer, metrics), record) in enumerate(zip(answers, records, strict=True)):
            uuid = repo.new_id()
            s.add(Prediction(uuid=uuid, deployment_id=served.deployment,
                             build_id=served.scorer.build_id,
                             model_name="loan-default", model_version=1,
                             timestamp_ms=first_ms + i, caller="sim", inputs=record,
                             outputs=answer, latency_ms=0.3 + (i % 10) / 10, metrics=metrics))
            served.label_of[uuid] = labels[i]
            uuids.append(uuid)
    return uuids


def _records(seed: int, n: int) -> tuple[list[dict], list[float]]:
    """``n`` loans the model accepts (the generator also makes rows with nulls)."""
    from icefloe.demo.loans import NUMERIC_FEATURES

    rows = [r for r in generate_loans(2 * n, seed, bad_batch=True).to_pylist()
            if all(r[k] is not None for k in NUMERIC_FEATURES)][:n]
    assert len(rows) == n
    fields = served_fields()
    records = [{k: r[k] for k in fields} for r in rows]
    labels = [1.0 if r["loan_status"] in ("Charged Off", "Default") else 0.0 for r in rows]
    return records, labels


def served_fields() -> list[str]:
    from icefloe.demo.loans import CATEGORICAL_FEATURES, NUMERIC_FEATURES

    return [*NUMERIC_FEATURES, *CATEGORICAL_FEATURES]


def _by(result: dict, metric: str, feature: str = "") -> dict:
    return next(f for f in result["figures"] if (f["metric"], f["feature"]) == (metric, feature))


def test_training_like_traffic_does_not_drift_and_a_shift_does(served: Served) -> None:
    records, labels = _records(101, 2000)  # same generator as the training data
    _call(served, records, NOW - 3_000_000, labels)
    calm = monitor_deployment(served.db, Lakehouse(served.settings), served.deployment, "1h",
                              now_ms=NOW)
    assert _by(calm, "requests")["value"] == 2000
    psis = {f["feature"]: f["value"] for f in calm["figures"] if f["metric"] == "psi"}
    assert set(psis) >= {"annual_inc", "dti", "int_rate"} and max(psis.values()) < 0.1, psis
    assert _by(calm, "prediction_psi")["value"] < 0.1
    assert _by(calm, "unseen_share", "purpose")["value"] == 0.0
    assert _by(calm, "label_coverage")["value"] == 0.0
    assert calm["reference"]["table"] == "lending.loans"

    # One feature moved by two standard deviations, and a category training never saw.
    shifted, labels = _records(202, 2000)
    spread = float(np.std([r["dti"] for r in records]))
    for r in shifted:
        r["dti"] = r["dti"] + 2 * spread
        r["purpose"] = "crypto"
    _call(served, shifted, NOW + 1_000_000, labels)
    later = NOW + 2_000_000
    drifted = monitor_deployment(served.db, Lakehouse(served.settings), served.deployment,
                                 "30m", now_ms=later)
    assert _by(drifted, "requests")["value"] == 2000
    assert _by(drifted, "psi", "dti")["value"] > 0.25
    assert _by(drifted, "psi", "dti")["reading"] == "significant"
    assert _by(drifted, "ks", "dti")["value"] > 0.5
    assert _by(drifted, "psi", "annual_inc")["value"] < 0.1
    assert _by(drifted, "unseen_share", "purpose")["value"] == 1.0
    assert _by(drifted, "js_distance", "purpose")["value"] > 0.5


def test_accuracy_appears_with_ground_truth_and_small_windows_are_insufficient(
        served: Served) -> None:
    records, labels = _records(303, 400)
    start = NOW + 10_000_000
    uuids = _call(served, records, start, labels)
    for uuid in uuids[:300]:
        track_delayed_metrics(served.db, uuid, {"final_label": served.label_of[uuid]})
    result = monitor_deployment(served.db, Lakehouse(served.settings), served.deployment,
                                "400", now_ms=start + 1000)
    assert _by(result, "label_coverage")["value"] == 0.75
    accuracy = _by(result, "accuracy")
    assert accuracy["samples"] == 300 and 0.5 < accuracy["value"] <= 1.0
    assert _by(result, "auc")["value"] > 0.6

    small = monitor_deployment(served.db, Lakehouse(served.settings), served.deployment,
                               "50", now_ms=start + 1000)
    assert _by(small, "requests")["value"] == 50
    assert {f["status"] for f in small["figures"] if f["metric"] != "requests"} <= {
        "insufficient", "n/a"}
    kept = Lakehouse(served.settings).sql(
        f"SELECT window_spec, count(*) AS n FROM {METRICS} GROUP BY 1 ORDER BY 1")
    assert {r["window_spec"] for r in kept.to_pylist()} >= {"400", "50"}


def test_the_cli_shows_a_window_and_names_what_is_wrong(served: Served) -> None:
    home = served.settings.home
    shown = run_cli(["monitor", served.deployment, "--window", "7d", "--json"], home,
                    check=True)
    body = json.loads(shown.stdout)
    assert body["deployment"] == served.deployment and body["window"] == "7d"
    table = run_cli(["monitor", "show", served.deployment, "--window", "500"], home,
                    check=True)
    assert "prediction_psi" in table.stdout and "lending.loans@" in table.stdout
    bad = run_cli(["monitor", served.deployment, "--window", "soon"], home)
    assert bad.returncode != 0 and "window 'soon'" in bad.stderr
    missing = run_cli(["monitor", "no-such-deployment"], home)
    assert missing.returncode != 0 and "'no-such-deployment' does not exist" in missing.stderr


def test_the_html_report_is_written_whole_and_stands_alone(served: Served, tmp_path) -> None:
    home = served.settings.home
    page = tmp_path / "report.html"
    made = run_cli(["monitor", "report", served.deployment, "--output", str(page),
                    "--window", "5000"], home, check=True)  # the tests' calls are in the past
    assert f"wrote {page}" in made.stderr and "4,400 predictions" in made.stderr
    text = page.read_text()
    assert text.count("<svg") == 3 and "accuracy and label coverage" in text
    assert "dti (PSI)" in text and "lending.loans@" in text
    assert "<script" not in text and "https://" not in text and "http://" not in text
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no partial file left
    refused = run_cli(["monitor", "report", served.deployment, "--output",
                       str(tmp_path / "r.pdf")], home)
    assert refused.returncode != 0 and "must be an .html file" in refused.stderr


def test_the_control_plane_schedule_evaluates_rules_on_its_own(served: Served) -> None:
    import dataclasses
    import time

    from icefloe.monitoring.alerts import Evaluator, create_rule, rule_events
    from icefloe.monitoring.rules import RuleSpec
    from tests.servers import Receiver

    receiver = Receiver()
    settings = dataclasses.replace(served.settings, webhook_allowlist="127.0.0.1")
    rule = create_rule(served.db, settings, served.deployment, RuleSpec(
        metric="requests", comparison=">", threshold=1, window="500", min_samples=1,
        target=receiver.url), "a-secret-of-sixteen+")
    evaluator = Evaluator(served.db, settings, interval=0.2)
    evaluator.start()
    try:
        deadline = time.monotonic() + 120
        while not receiver.received:
            assert time.monotonic() < deadline, "the schedule never evaluated the rule"
            time.sleep(0.05)
    finally:
        evaluator.stop()
    assert receiver.states() == [(rule.id, "FIRING")]
    assert [(e.to_state, e.delivered) for e in rule_events(served.db, rule.id)] == [
        ("FIRING", True)]
    receiver.server.shutdown()

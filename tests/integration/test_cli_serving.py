"""The README's serving block through the real CLI against a real control plane: build,
schema, deploy with its steps on stderr, predict with the README's own record, metrics,
redeploy."""

import json
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_cli_control_plane import TIME, cli
from tests.integration.test_control_plane import ControlPlane
from tests.unit.test_docs import readme_commands

pytestmark = pytest.mark.spark


def _readme_record() -> str:
    """The --data of the README's predict example, exactly as written there."""
    line = next(s.line for s in readme_commands() if s.invocation.path == ("predict",))
    words = shlex.split(line)
    return words[words.index("--data") + 1]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, spark) -> Iterator[ControlPlane]:
    """A control plane whose home has loan-default/1 and /2 (both baseline, numbers only),
    /3 (those numbers, two string fields and a new number, ``bureau_score``) and /4 (those
    numbers and the two string fields)."""
    import dataclasses

    import numpy as np
    import pyarrow as pa

    from icefloe.config import load_settings
    from icefloe.demo.loans import generate_loans
    from icefloe.lakehouse import Lakehouse
    from icefloe.ml.spec import LabelSpec, TrainSpec
    from icefloe.ml.train import train

    plane = ControlPlane(tmp_path_factory.mktemp("cli-serving") / "home")
    settings = load_settings(env={}, home=plane.home)
    lakehouse = Lakehouse(settings)
    spec = TrainSpec(table="lending.loans", label=LabelSpec("loan_status",
                                                            ("Charged Off", "Default")),
                     model_name="loan-default")
    lakehouse.write("lending.loans", generate_loans(1200, 8), "create")
    train(spec, settings, spark=spark)
    lakehouse.write("lending.loans", generate_loans(600, 9), "append")
    train(spec, settings, spark=spark)
    wider = generate_loans(1200, 10, bad_batch=True)
    scores = np.round(np.random.default_rng(10).normal(680, 60, wider.num_rows))
    lakehouse.write("lending.scored", wider.append_column("bureau_score", pa.array(scores)),
                    "create")
    lakehouse.write("lending.evolved", wider, "create")
    for table in ("lending.scored", "lending.evolved"):
        train(dataclasses.replace(spec, table=table, pipeline="categorical"), settings,
              spark=spark)
    plane.start()
    yield plane
    plane.stop()


def _after(stderr: str, *fragments: str) -> None:
    """Each fragment is on a line of stderr after the line of the one before."""
    lines = stderr.splitlines()
    at = -1
    for fragment in fragments:
        at = next((i for i, line in enumerate(lines) if i > at and fragment in line), -2)
        assert at >= 0, f"{fragment!r} not in order in:\n{stderr}"


def test_the_readme_serving_block(served: ControlPlane, tmp_path: Path) -> None:
    cp = served
    built = cli(cp, "model", "build", "loan-default/1")
    assert built.returncode == 0, built.stderr
    assert built.stdout == ""
    _after(built.stderr, "build: loading ONNX and MLflow", "build: building loan-default/1",
           "of loan-default/1 is ready")
    build = json.loads(cli(cp, "model", "build", "loan-default/1", "--json").stdout)
    assert build["status"] == "BUILD_READY" and TIME.match(build["created_at"])
    names = [f["name"] for f in build["input_schema"]["fields"]]
    assert len(names) == 11 and list(build["example_request"]) == names

    schema = json.loads(cli(cp, "model", "schema", "loan-default/1", "--json").stdout)
    assert schema["input_schema"] == build["input_schema"]
    assert schema["example_request"] == build["example_request"]
    assert (schema["model"], schema["model_version"], schema["deployment"]) == (
        "loan-default", 1, None)

    deployed = cli(cp, "model", "deploy", "loan-default/1", "--replicas", "2", "--json")
    assert deployed.returncode == 0, deployed.stderr
    dep = json.loads(deployed.stdout)  # stdout is the JSON document alone
    _after(deployed.stderr, "deploy: building loan-default/1", "deploy: deploying build")
    assert "starting 2 replica(s)" in deployed.stderr
    assert dep["access_key"].startswith("m") and len(dep["replica_status"]) == 2
    assert dep["input_schema"] == build["input_schema"]
    assert dep["example_request"] == build["example_request"]
    assert TIME.match(dep["created_at"]) and TIME.match(dep["updated_at"])
    answer = cp.client.get(f"/models/deployments/{dep['id']}").json()
    assert answer["example_request"] == build["example_request"]

    by_deployment = json.loads(cli(cp, "model", "schema", dep["id"], "--json").stdout)
    assert by_deployment["deployment"] == dep["id"]
    assert by_deployment["example_request"] == build["example_request"]
    shown = cli(cp, "model", "schema", dep["id"])
    assert shown.returncode == 0 and f"input of deployment {dep['id']}" in shown.stdout
    assert "annual_inc" in shown.stdout and json.dumps(build["example_request"]) in shown.stdout

    key = tmp_path / "model.key"
    key.write_text(dep["access_key"] + "\n")
    key.chmod(0o600)
    answers = []
    for record in (_readme_record(), json.dumps(dep["example_request"])):
        predicted = cli(cp, "predict", "--access-key-file", str(key), "--data", record)
        assert predicted.returncode == 0, predicted.stderr
        body = json.loads(predicted.stdout)
        assert body["success"] is True and 0 <= body["response"]["probability"] <= 1
        answers.append(body["response"]["uuid"])
    deadline = time.monotonic() + 30
    while True:  # the prediction log is written off the request path
        metrics = cli(cp, "metrics", "read", "--deployment", dep["id"])
        assert metrics.returncode == 0, metrics.stderr
        logged = {m["predictionUuid"] for m in json.loads(metrics.stdout)["metrics"]}
        if logged >= set(answers) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert logged >= set(answers)

    listed = json.loads(cli(cp, "deployments", "--json").stdout)
    assert [(d["id"], d["model_version"]) for d in listed] == [(dep["id"], 1)]
    assert [d["id"] for d in cp.client.get("/models/deployments").json()["deployments"]] == [
        dep["id"]]
    moved = cli(cp, "model", "deploy", "loan-default/2", "--replace", dep["id"], "--json")
    assert moved.returncode == 0, moved.stderr
    _after(moved.stderr, "deploy: building loan-default/2", f"moving deployment {dep['id']}")
    assert json.loads(moved.stdout)["model_version"] == 2
    again = cli(cp, "predict", "--access-key-file", str(key), "--data", _readme_record())
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["response"]["model_version"] == 2  # same key, new build


def test_the_readme_record_is_every_field_of_the_model_it_deploys() -> None:
    from icefloe.demo.loans import NUMERIC_FEATURES

    assert "..." not in _readme_record()
    assert sorted(json.loads(_readme_record())) == sorted(NUMERIC_FEATURES)


def _words(text: str) -> str:
    """Text with line wrapping undone (Rich wraps long messages at the terminal width)."""
    return " ".join(text.split())


def test_a_redeploy_that_would_break_callers_is_refused_unless_accepted(
        served: ControlPlane, tmp_path: Path) -> None:
    cp = served
    dep = json.loads(cli(cp, "model", "deploy", "loan-default/2", "--json").stdout)
    serving = dep["build_id"]
    key = tmp_path / "model.key"
    key.write_text(dep["access_key"] + "\n")
    key.chmod(0o600)
    record = _readme_record()  # what callers of loan-default/2 send: its numbers

    def predict() -> "subprocess.CompletedProcess[str]":
        return cli(cp, "predict", "--access-key-file", str(key), "--data", record)

    # /3 requires a number /2 does not take: refused, naming it (not the strings, which
    # have a default); nothing moves.
    refused = cli(cp, "model", "deploy", "loan-default/3", "--replace", dep["id"])
    assert refused.returncode == 5, refused.stderr
    said = _words(refused.stderr)
    assert "requires new field(s) 'bureau_score' (number), unlike what deployment " \
        f"{dep['id']} takes today" in said
    assert "--accept-new-fields" in said and "home_ownership" not in said
    build3 = json.loads(cli(cp, "model", "build", "loan-default/3", "--json").stdout)["id"]
    api = cp.client.post(f"/models/deployments/{dep['id']}:redeploy", json={"build_id": build3})
    assert api.status_code == 409, api.text
    assert "'bureau_score' (number)" in api.json()["error"]["message"]
    still = cp.client.get(f"/models/deployments/{dep['id']}").json()
    assert (still["build_id"], still["model_version"], still["reason"]) == (serving, 2, "")
    assert {r["build_id"] for r in still["replica_status"]} == {serving}
    answer = predict()
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["response"]["model_version"] == 2

    # /4 adds only string fields: moved without acceptance, and a call as callers make it
    # today is answered, the fields it left out scored as unknown and counted.
    moved = cli(cp, "model", "deploy", "loan-default/4", "--replace", dep["id"])
    assert moved.returncode == 0, moved.stderr
    assert "new input field(s) 'home_ownership' (string), 'purpose' (string): calls " \
        "without them score them as the unknown category" in _words(moved.stderr)
    answer = predict()
    assert answer.returncode == 0, answer.stderr
    response = json.loads(answer.stdout)["response"]
    assert response["model_version"] == 4 and 0 <= response["probability"] <= 1
    deadline = time.monotonic() + 30
    while True:  # the prediction log is written off the request path
        logged = json.loads(cli(cp, "metrics", "read", "--deployment", dep["id"]).stdout)
        mine = [m for m in logged["metrics"] if m["predictionUuid"] == response["uuid"]]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert mine[0]["metrics"]["missing_fields"] == ["home_ownership", "purpose"]

    # Accepted: /3 serves, and its callers must send the number from now on.
    accepted = cli(cp, "model", "deploy", "loan-default/3", "--replace", dep["id"],
                   "--accept-new-fields")
    assert accepted.returncode == 0, accepted.stderr
    assert "callers must now send 'bureau_score' (number)" in _words(accepted.stderr)
    assert cp.client.get(f"/models/deployments/{dep['id']}").json()["model_version"] == 3
    old_call = predict()
    assert old_call.returncode == 2 and "missing field 'bureau_score'" in old_call.stderr
    audit = [e["detail"] for e in cp.client.get("/audit").json()["events"]
             if e["action"] == "deployment.redeploy" and e["target"] ==
             f"deployment/{dep['id']}"]
    assert any("new required field(s) accepted: 'bureau_score' (number)" in d for d in audit)
    lone = cli(cp, "model", "deploy", "loan-default/3", "--accept-new-fields")
    assert lone.returncode == 2 and "give --replace DEPLOYMENT too" in lone.stderr

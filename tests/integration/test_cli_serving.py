"""The README's serving block through the real CLI against a real control plane: build,
schema, deploy with its steps on stderr, predict with the README's own record, metrics,
redeploy."""

import json
import shlex
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
    """A control plane whose home has loan-default/1 and /2 (both baseline)."""
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

"""The model catalog on a real `icefloe up` (real MLflow store, lakehouse and replicas):
cards set and shown, every field checked (422 naming it), search finding column annual_inc
and the models that learned from it, a deployed version with its deployment and health, its
alerts, and the CLI end to end (control plane and home) with --json."""

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from icefloe.client import Client
from tests.conftest import ICEFLOE
from tests.servers import Receiver, Server

pytestmark = pytest.mark.spark

SECRET = "a-webhook-secret-of-some-length"
NUMBERS = ("acc_now_delinq", "acc_open_past_24mths", "annual_inc", "avg_cur_bal",
           "funded_amnt")


@pytest.fixture(scope="module")
def plane(spark, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A control plane whose home has loan-default/1 (every number of lending.loans) and
    small-model/1 (two of them, not annual_inc)."""
    from icefloe.config import load_settings
    from icefloe.demo.loans import generate_loans
    from icefloe.lakehouse import Lakehouse
    from icefloe.ml.spec import LabelSpec, TrainSpec
    from icefloe.ml.train import train

    server = Server(tmp_path_factory.mktemp("catalog") / "home")
    settings = load_settings(env={}, home=server.home)
    Lakehouse(settings).write("lending.loans", generate_loans(1200, 31), "create")
    label = LabelSpec("loan_status", ("Charged Off", "Default"))
    train(TrainSpec(table="lending.loans", label=label, model_name="loan-default"), settings,
          spark=spark)
    train(TrainSpec(table="lending.loans", label=label, model_name="small-model",
                    features=("funded_amnt", "avg_cur_bal")), settings, spark=spark)
    extra = {"ICEFLOE_WEBHOOK_ALLOWLIST": "127.0.0.1", "ICEFLOE_MONITOR_INTERVAL": "0"}
    os.environ.update(extra)
    try:
        server.start()
    finally:
        for name in extra:
            del os.environ[name]
    yield server
    server.stop()


@pytest.fixture(scope="module")
def deployed(plane: Server) -> dict[str, Any]:
    """loan-default/1 built and deployed, one call answered, and an alert rule that fired."""
    build = plane.client.post("/models/builds", json={"model": "loan-default/1"}, timeout=300)
    assert build.status_code == 201 and build.json()["status"] == "BUILD_READY", build.text
    dep = plane.client.post("/models/deployments", json={"build_id": build.json()["id"]},
                            timeout=300)
    assert dep.status_code == 201, dep.text
    base = plane.url.removesuffix("/api/v2")
    answer = plane.client.post(f"{base}/model", json={
        "accessKey": dep.json()["access_key"], "request": build.json()["example_request"]})
    assert answer.status_code == 200, answer.text
    rule = plane.client.post(f"/models/deployments/{dep.json()['id']}/rules", json={
        "metric": "requests", "comparison": ">=", "threshold": 1, "window": "500",
        "min_samples": 1, "target": Receiver().url, "secret": SECRET})
    assert rule.status_code == 201, rule.text
    # a read of the metrics writes the prediction log first: the evaluation sees the call
    assert plane.client.get("/metrics", params={
        "model_deployment_crn": dep.json()["id"]}).status_code == 200
    fired = plane.client.post(f"/models/deployments/{dep.json()['id']}/rules:evaluate",
                              timeout=300)
    assert fired.status_code == 200, fired.text
    assert [(c["from"], c["to"]) for c in fired.json()["changes"]] == [("OK", "FIRING")]
    return {"build": build.json()["id"], "deployment": dep.json()["id"],
            "rule": rule.json()["id"]}


def catalog_cli(plane: Server, *args: str, remote: bool = True) -> subprocess.CompletedProcess:
    """The real command, against the control plane (remote) or on its home."""
    env = {k: v for k, v in os.environ.items() if k not in ("ICEFLOE_URL", "ICEFLOE_API_KEY")}
    env.update({"ICEFLOE_HOME": str(plane.home), "COLUMNS": "200"})
    if remote:
        env.update({"ICEFLOE_URL": plane.url.removesuffix("/api/v2"),
                    "ICEFLOE_API_KEY": plane.key})
    return subprocess.run([*ICEFLOE, *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)


def _refused(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    assert all(w in message for w in words), message


def test_a_card_is_set_merged_shown_and_audited(plane: Server) -> None:
    http = plane.client
    listed = http.get("/catalog/models", params={"page_size": 1})
    assert listed.status_code == 200, listed.text
    assert [m["name"] for m in listed.json()["models"]] == ["loan-default"]
    rest = http.get("/catalog/models",
                    params={"page_size": 1, "page_token": listed.json()["next_page_token"]})
    assert [m["name"] for m in rest.json()["models"]] == ["small-model"]
    assert rest.json()["next_page_token"] == ""

    changed = http.patch("/catalog/models/small-model", json={
        "description": "A small model on two amounts", "tags": ["credit", "demo", "credit"],
        "use_case": "smoke tests", "risk_level": "High", "owner": "alice",
        "extra": {"team": "risk", "ticket": 42}})
    assert changed.status_code == 200, changed.text
    card = changed.json()
    assert (card["risk_level"], card["tags"], card["owner"]) == ("high", ["credit", "demo"],
                                                                 "alice")
    merged = http.patch("/catalog/models/small-model",
                        json={"extra": {"ticket": None, "reviewed": "2025-01"}})
    assert merged.json()["extra"] == {"team": "risk", "reviewed": "2025-01"}
    assert merged.json()["description"] == "A small model on two amounts"

    shown = http.get("/catalog/models/small-model").json()
    assert shown["use_case"] == "smoke tests" and shown["latest_version"] == 1
    (version,) = shown["versions"]
    assert version["table"] == "lending.loans" and version["snapshot_id"]
    assert version["features"] == ["funded_amnt", "avg_cur_bal"]
    assert version["label_column"] == "loan_status" and version["deployments"] == []
    events = [(e["action"], e["target"], e["detail"]) for e in http.get("/audit").json()["events"]]
    assert ("model.card.update", "model/small-model",
            "description, extra, owner, risk_level, tags, use_case") in events
    assert ("model.card.update", "model/small-model", "extra") in events


@pytest.mark.parametrize(("body", "field"), [
    ({"risk_level": "severe"}, "risk_level"),
    ({"tags": [f"t{i}" for i in range(51)]}, "tags"),
    ({"tags": ["no spaces please"]}, "tags"),
    ({"extra": {"blob": "x" * 70_000}}, "extra"),
    ({"extra": ["not", "an", "object"]}, "extra"),
    ({"description": "d" * 10_001}, "description"),
    ({"owner": "two\nlines"}, "owner"),
    ({"colour": "blue"}, "colour"),
    ({}, "nothing to change"),
])
def test_every_card_field_is_checked(plane: Server, body: dict, field: str) -> None:
    before = plane.client.get("/catalog/models/loan-default").json()
    _refused(plane.client.patch("/catalog/models/loan-default", json=body), 422, field)
    after = plane.client.get("/catalog/models/loan-default").json()
    assert {k: after[k] for k in ("description", "tags", "extra", "risk_level", "owner")} == \
        {k: before[k] for k in ("description", "tags", "extra", "risk_level", "owner")}


def test_an_unknown_model_is_404_naming_it(plane: Server) -> None:
    _refused(plane.client.get("/catalog/models/no-such-model"), 404, "'no-such-model'")
    _refused(plane.client.patch("/catalog/models/no-such-model", json={"owner": "x"}), 404,
             "'no-such-model'")
    with Client(plane.url.removesuffix("/api/v2"), plane.key) as sdk:
        from icefloe.errors import NotFoundError

        with pytest.raises(NotFoundError, match="'no-such-model' is not registered"):
            sdk.catalog_model("no-such-model")


def test_search_finds_column_annual_inc_and_the_models_using_it(plane: Server) -> None:
    found = plane.client.get("/catalog/search", params={"q": "annual_inc"})
    assert found.status_code == 200, found.text
    top = found.json()["results"][0]
    assert (top["kind"], top["table"], top["name"], top["type"]) == (
        "column", "lending.loans", "annual_inc", "double")
    # small-model learned from the same table, but not from this column
    assert top["models"] == [{"name": "loan-default", "versions": [1], "as": ["feature"]}]
    label = plane.client.get("/catalog/search",
                             params={"q": "loan_status", "kind": "column"}).json()["results"]
    assert label[0]["models"] == [{"name": "loan-default", "versions": [1], "as": ["label"]},
                                  {"name": "small-model", "versions": [1], "as": ["label"]}]
    with Client(plane.url.removesuffix("/api/v2"), plane.key) as sdk:
        tables = sdk.catalog_search("loans", kind="table")
        assert [t["name"] for t in tables] == ["lending.loans"]
        assert tables[0]["columns"] >= len(NUMBERS) + 1
        assert sdk.update_model_card("loan-default", tags=["credit-risk"])["tags"] == [
            "credit-risk"]
        sdk.update_model_card("small-model", tags=["credit"])
        models = sdk.catalog_search("credit", kind="model")
        # an exact tag outranks a tag that starts with the word
        assert [(m["name"], m["matched"]) for m in models] == [
            ("small-model", ["tags"]), ("loan-default", ["tags"])]
        assert models[0]["score"] > models[1]["score"]
    _refused(plane.client.get("/catalog/search", params={"q": "x", "kind": "view"}), 422,
             "kind")


def test_a_deployed_version_shows_its_deployment_health_and_alerts(
        plane: Server, deployed: dict[str, Any]) -> None:
    with Client(plane.url.removesuffix("/api/v2"), plane.key) as sdk:
        entry = sdk.catalog_model("loan-default")
        models = {m["name"]: m for m in sdk.catalog_models()}
    (version,) = entry["versions"]
    assert set(NUMBERS) <= set(version["features"]) and version["metrics"]["auc"] > 0.5
    (dep,) = version["deployments"]
    assert (dep["id"], dep["status"], dep["replicas"], dep["ready_replicas"], dep["health"]) \
        == (deployed["deployment"], "DEPLOYED", 1, 1, "healthy")
    (firing,) = entry["alerts"]["firing"]
    assert (firing["rule"], firing["metric"], firing["deployment"]) == (
        deployed["rule"], "requests", deployed["deployment"])
    assert [(e["rule"], e["from"], e["to"]) for e in entry["alerts"]["recent"]] == [
        (deployed["rule"], "OK", "FIRING")]
    summary = models["loan-default"]
    assert summary["firing_alerts"] == 1 and summary["latest_version"] == 1
    assert [(d["id"], d["health"]) for d in summary["deployed"]] == [
        (deployed["deployment"], "healthy")]
    assert models["small-model"]["deployed"] == [] and models["small-model"]["firing_alerts"] == 0
    # the first build gave the model its card, in the build's project
    from icefloe.config import load_settings
    from icefloe.store.db import Database
    from icefloe.store.orm import Build, ModelCard

    db = Database(load_settings(env={}, home=plane.home).resolved_platform_db_url)
    try:
        with db.session() as s:
            card = s.get(ModelCard, "loan-default")
            build = s.get(Build, deployed["build"])
            assert card is not None and build is not None
            assert card.project_id == (build.project_id or "")
    finally:
        db.dispose()


def test_the_cli_end_to_end(plane: Server, deployed: dict[str, Any]) -> None:
    set_card = catalog_cli(plane, "catalog", "set", "loan-default", "--description",
                           "Default risk of a retail loan", "--tag", "credit", "--tag", "retail",
                           "--use-case", "loan approval", "--risk", "medium", "--owner", "bob",
                           "--meta", "team=risk", "--meta", "sla=24h", "--json")
    assert set_card.returncode == 0, set_card.stderr
    card = json.loads(set_card.stdout)
    assert (card["tags"], card["risk_level"], card["owner"]) == (["credit", "retail"],
                                                                 "medium", "bob")
    assert card["extra"]["team"] == "risk" and card["extra"]["sla"] == "24h"

    remote = catalog_cli(plane, "catalog", "show", "loan-default", "--json")
    assert remote.returncode == 0, remote.stderr
    (dep,) = json.loads(remote.stdout)["versions"][0]["deployments"]
    assert (dep["id"], dep["health"]) == (deployed["deployment"], "healthy")
    # on the home there is no supervisor: the recorded status stands for health
    local = catalog_cli(plane, "catalog", "show", "loan-default", "--json", remote=False)
    assert local.returncode == 0, local.stderr
    entry = json.loads(local.stdout)
    assert entry["description"] == "Default risk of a retail loan"
    (dep,) = entry["versions"][0]["deployments"]
    assert (dep["ready_replicas"], dep["health"]) == (None, "deployed")
    assert entry["alerts"]["firing"][0]["rule"] == deployed["rule"]

    removed = catalog_cli(plane, "catalog", "set", "loan-default", "--meta", "sla=", "--json",
                          remote=False)
    assert removed.returncode == 0, removed.stderr
    assert json.loads(removed.stdout)["extra"] == {"team": "risk"}

    for remote_side in (True, False):
        listed = catalog_cli(plane, "catalog", "list", "--json", remote=remote_side)
        assert listed.returncode == 0, listed.stderr
        assert [m["name"] for m in json.loads(listed.stdout)] == ["loan-default",
                                                                  "small-model"]
        found = catalog_cli(plane, "catalog", "search", "annual_inc", "--kind", "column",
                            "--json", remote=remote_side)
        assert found.returncode == 0, found.stderr
        hit, *others = json.loads(found.stdout)["results"]
        assert (hit["table"], hit["name"]) == ("lending.loans", "annual_inc"), others
        assert all(o["models"] == [] for o in others), others
        assert hit["models"] == [{"name": "loan-default", "versions": [1], "as": ["feature"]}]
    bare = catalog_cli(plane, "catalog", "--json", remote=False)  # `icefloe catalog` lists
    assert [m["name"] for m in json.loads(bare.stdout)] == ["loan-default", "small-model"]
    table = catalog_cli(plane, "catalog", "search", "annual_inc")
    assert table.returncode == 0 and "lending.loans.annual_inc" in table.stdout
    assert "loan-default (v1)" in table.stdout
    shown = catalog_cli(plane, "catalog", "show", "loan-default")
    assert shown.returncode == 0, shown.stderr
    assert "v1 healthy" in shown.stdout and "OK -> FIRING" in shown.stdout
    assert "lending.loans@" in shown.stdout and '{"team": "risk"}' in shown.stdout
    listed = catalog_cli(plane, "catalog", "list", remote=False)
    assert listed.returncode == 0 and "v1 deployed" in listed.stdout, listed.stderr

    for remote_side in (True, False):
        missing = catalog_cli(plane, "catalog", "show", "no-such-model", remote=remote_side)
        assert missing.returncode == 3 and "'no-such-model'" in missing.stderr, missing.stderr
        bad = catalog_cli(plane, "catalog", "set", "loan-default", "--risk", "severe",
                          remote=remote_side)
        assert bad.returncode == 2 and "risk_level" in bad.stderr, bad.stderr

"""One lineage graph, recorded as things happen, with the real components.

The story: a batch file lands as snapshot S1; a job run started by an Airflow task (its
idempotency key as the Airflow provider sets it) appends S2 through the control plane; a bad
batch lands as S3 and is rolled back to S2; a model is trained on S2, built, deployed and
called. Walking upstream from that prediction must reach the training snapshot, the
rollback, and the job run and Airflow task that loaded the batch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from icefloe import happenings
from icefloe.client import Client
from icefloe.config import Settings, load_settings
from icefloe.demo.loans import NUMERIC_FEATURES, generate_loans, write_loans
from icefloe.errors import NotFoundError
from icefloe.lakehouse import Lakehouse
from icefloe.lineage.assemble import explain_prediction, lineage_graph
from icefloe.ml.spec import LabelSpec, TrainSpec
from icefloe.ml.train import train
from icefloe.store.db import Database
from icefloe.store.orm import LineageEdge
from tests.conftest import run_cli
from tests.servers import Server
from tests.unit.test_lineage_graph import parse_dot

pytestmark = pytest.mark.spark

TABLE = "lending.loans"
AIRFLOW_KEY = "airflow:mlops_success:manual__2026-11-27T10:00:00+00:00:load_batch:-1"
TASK = "airflow:mlops_success/manual__2026-11-27T10:00:00+00:00/load_batch"
LOAD = """from icefloe.demo.loans import generate_loans
from icefloe.lakehouse import Lakehouse

done = Lakehouse().write("lending.loans", generate_loans(400, 11), "append")
print("snapshot", done.snapshot.snapshot_id, flush=True)
"""
TERMINAL = {"ENGINE_SUCCEEDED", "ENGINE_FAILED", "ENGINE_STOPPED", "ENGINE_TIMEDOUT"}


@dataclass
class Story:
    server: Server
    settings: Settings
    db: Database
    batch: Path
    s1: int
    s2: int
    s3: int
    run_id: str
    training_run: str
    build_id: str
    deployment_id: str
    uuid: str

    @property
    def remote(self) -> dict[str, str]:
        return {"ICEFLOE_URL": self.server.url.removesuffix("/api/v2"),
                "ICEFLOE_API_KEY": self.server.key}

    def snap(self, snapshot_id: int) -> str:
        return f"snapshot:{TABLE}@{snapshot_id}"


def _job_run(server: Server) -> str:
    """Run LoadBatch as an Airflow task would start it; its id once it succeeded."""
    created = server.client.post("/projects", json={"name": "lineage"})
    assert created.status_code == 201, created.text
    project = created.json()
    # What a run reports is checked against its project's grants: this one may write lending.
    granted = server.client.put(f"/projects/{project['id']}/grants/lending",
                                json={"access": "write"})
    assert granted.status_code == 200, granted.text
    Path(project["path"], "load_batch.py").write_text(LOAD)
    job = server.client.post(f"/projects/{project['id']}/jobs",
                             json={"name": "LoadBatch", "script": "load_batch.py"}).json()
    runs = f"/projects/{project['id']}/jobs/{job['id']}/runs"
    run = server.client.post(runs, headers={"Idempotency-Key": AIRFLOW_KEY}).json()
    deadline = time.monotonic() + 120
    while (body := server.client.get(f"{runs}/{run['id']}").json())["status"] not in TERMINAL:
        assert time.monotonic() < deadline, body
        time.sleep(0.2)
    assert body["status"] == "ENGINE_SUCCEEDED", body
    return str(run["id"])


@pytest.fixture(scope="module")
def story(spark, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    root = tmp_path_factory.mktemp("lineage")
    server = Server(root / "home")
    server.start()
    settings = load_settings(env={}, home=server.home)
    happenings.reset()  # an app another test made in this process may have installed its own
    happenings.use_local(settings)  # this process records into the home, as the CLI does
    db = Database(settings.resolved_platform_db_url)
    try:
        lh = Lakehouse(settings)
        batch = write_loans(generate_loans(1200, 8), root / "batch-1.parquet")
        loaded = run_cli(["table", "load", TABLE, str(batch), "--json"], server.home,
                         check=True)  # as people land data: the job user may append to it
        s1 = json.loads(loaded.stdout)["snapshot"]["snapshot_id"]
        run_id = _job_run(server)
        s2 = lh.current_snapshot(TABLE).snapshot_id  # type: ignore[union-attr]
        s3 = lh.write(TABLE, generate_loans(300, 9, bad_batch=True), "append",
                      evolve=True).snapshot.snapshot_id
        lh.rollback(TABLE, s2)
        trained = train(TrainSpec(table=TABLE, label=LabelSpec(
            "loan_status", ("Charged Off", "Default")), model_name="loan-default"),
            settings, spark=spark)
        with Client(server.url.removesuffix("/api/v2"), server.key, timeout=120) as client:
            build = client.build_model(f"loan-default/{trained.version}")
            assert build["status"] == "BUILD_READY", build
            dep = client.deploy(build["id"])
            answer = client.call_model(dep["access_key"], {n: 1.0 for n in NUMERIC_FEATURES})
            client.read_metrics(dep["id"])  # the prediction log is written out first
        yield Story(server, settings, db, batch, s1, s2, s3, run_id, trained.run_id,
                    build["id"], dep["id"], answer["response"]["uuid"])
    finally:
        happenings.reset()
        db.dispose()
        server.stop()


def _ids(graph: dict) -> set[str]:
    return {n["id"] for n in graph["nodes"]}


def _edges(graph: dict) -> dict[tuple[str, str, str], dict]:
    return {(e["src"], e["dst"], e["relation"]): e for e in graph["edges"]}


def test_a_prediction_walks_back_to_the_batch_the_run_and_the_airflow_task(
        story: Story) -> None:
    out = run_cli(["lineage", f"prediction:{story.uuid}", "--upstream", "--json"],
                  story.server.home, env=story.remote, check=True)
    graph = json.loads(out.stdout)
    ids = _ids(graph)
    assert graph["root"] == f"prediction:{story.uuid}"
    assert {f"deployment:{story.deployment_id}", f"build:{story.build_id}",
            "model:loan-default/1", f"training:{story.training_run}", story.snap(story.s2),
            story.snap(story.s1), story.snap(story.s3), f"run:{story.run_id}", TASK,
            f"file:{story.batch.absolute()}"} <= ids, ids
    edges = _edges(graph)
    assert (story.snap(story.s2), f"training:{story.training_run}", "read by") in edges
    wrote = edges[(f"run:{story.run_id}", story.snap(story.s2), "wrote")]
    assert f"(run/{story.run_id})" in wrote["actor"]  # stamped by the server: a run token
    assert (TASK, f"run:{story.run_id}", "started") in edges
    assert (story.snap(story.s3), story.snap(story.s2), "rollback") in edges
    assert (story.snap(story.s1), story.snap(story.s2), "parent of") in edges
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert nodes[f"run:{story.run_id}"]["job"] == "LoadBatch"
    assert nodes[story.snap(story.s2)]["written_by_run"] == story.run_id
    assert nodes[f"prediction:{story.uuid}"]["model_version"] == 1

    tree = run_cli(["lineage", f"prediction:{story.uuid}", "--upstream"],
                   story.server.home, env=story.remote, check=True).stdout
    assert "upstream (where it came from)" in tree and "downstream" not in tree
    assert "Airflow mlops_success / load_batch" in tree and "rollback" in tree


def test_recorded_at_the_source(story: Story) -> None:
    snap = Lakehouse(story.settings).table(TABLE).snapshot_by_id(story.s2)
    props = snap.summary.additional_properties  # type: ignore[union-attr]
    assert props["icefloe.run-id"] == story.run_id and props["icefloe.user"]
    with story.db.session() as s:
        rows = {(r.src, r.dst, r.relation): r for r in s.scalars(select(LineageEdge))}
    started = rows[(TASK, f"run:{story.run_id}", "started")]
    assert started.detail["state"] == "COMPLETE"  # its START, then its COMPLETE
    assert (f"file:{story.batch.absolute()}", story.snap(story.s1), "loaded into") in rows
    assert (story.snap(story.s2), f"training:{story.training_run}", "read by") in rows
    assert (f"training:{story.training_run}", "model:loan-default/1", "registered") in rows
    assert ("model:loan-default/1", f"build:{story.build_id}", "built") in rows
    assert (f"build:{story.build_id}", f"deployment:{story.deployment_id}", "deployed") in rows
    rollback = rows[(story.snap(story.s3), story.snap(story.s2), "rollback")]
    assert rollback.actor.startswith("local:")  # who rolled back: this process's user


def test_explain_prediction_names_the_whole_chain(story: Story) -> None:
    chain = explain_prediction(story.db, story.settings, story.uuid)
    assert (chain["deployment"], chain["build"], chain["model"], chain["model_version"]) == (
        story.deployment_id, story.build_id, "loan-default", 1)
    assert chain["training_run"] == story.training_run
    assert chain["training_snapshot"] == {"table": TABLE, "snapshot_id": story.s2}
    newest, oldest = chain["batches"][0], chain["batches"][-1]
    assert newest["snapshot_id"] == story.s2 and newest["runs"] == [f"run:{story.run_id}"]
    assert newest["airflow"] == [TASK]
    assert oldest["snapshot_id"] == story.s1
    assert oldest["inputs"] == [f"file:{story.batch.absolute()}"]
    assert [(r["from"], r["to"]) for r in chain["rollbacks"]] == [
        (story.snap(story.s3), story.snap(story.s2))]
    with pytest.raises(NotFoundError, match="prediction nope"):
        explain_prediction(story.db, story.settings, "nope")


def test_downstream_dot_from_the_local_home(story: Story) -> None:
    node = story.snap(story.s2)
    # No server URL in this command's environment: the home's platform DB answers.
    out = run_cli(["lineage", node, "--downstream", "--depth", "3", "--dot"],
                  story.server.home, env={"ICEFLOE_URL": ""}, check=True)
    found_nodes, found_edges = parse_dot(out.stdout)
    assert {f"training:{story.training_run}", "model:loan-default/1",
            f"build:{story.build_id}"} <= set(found_nodes)
    assert f"deployment:{story.deployment_id}" not in found_nodes  # 4 edges away
    assert found_nodes[node]["style"] == "bold,filled"
    assert (node, f"training:{story.training_run}", "read by") in found_edges


def test_route_sdk_and_unknown_nodes(story: Story) -> None:
    with Client(story.server.url.removesuffix("/api/v2"), story.server.key) as client:
        both = client.lineage("model:loan-default/1", "both", 2)
    assert {f"training:{story.training_run}", story.snap(story.s2), f"build:{story.build_id}",
            f"deployment:{story.deployment_id}"} <= _ids(both)
    task = story.server.client.get(f"/lineage/{TASK}", params={"direction": "downstream"})
    assert task.status_code == 200 and f"run:{story.run_id}" in _ids(task.json())
    table = story.server.client.get(f"/lineage/table:{TABLE}",
                                    params={"direction": "downstream", "depth": 1})
    assert {story.snap(story.s1), story.snap(story.s2), story.snap(story.s3)} <= _ids(
        table.json())
    missing = story.server.client.get(f"/lineage/snapshot:{TABLE}@12345")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "NotFoundError"
    assert f"snapshot:{TABLE}@12345" in missing.json()["error"]["message"]
    for bad, params in (("snapshot:nope", {}), ("widget:1", {}),
                        (f"prediction:{story.uuid}", {"direction": "sideways"}),
                        (f"prediction:{story.uuid}", {"depth": 0})):
        refused = story.server.client.get(f"/lineage/{bad}", params=params)
        assert refused.status_code == 422, (bad, refused.text)
        assert set(refused.json()["error"]) == {"type", "message"}
    cli = run_cli(["lineage", "prediction:00000000-0000-0000-0000-000000000000"],
                  story.server.home, env=story.remote)
    assert cli.returncode == 3 and "prediction:00000000" in cli.stderr
    local = lineage_graph(story.db, story.settings, f"run:{story.run_id}",
                          direction="downstream", depth=1)
    assert story.snap(story.s2) in _ids(local)  # the run wrote it (recorded and in Iceberg)


def test_the_happenings_route_refuses_bad_bodies_and_stamps_the_actor(story: Story) -> None:
    client = story.server.client
    for body, named in (([1, 2], "JSON object"),
                        ({"kind": "table.explode"}, "kind must be one of"),
                        ({"kind": "table.write", "outputs": [{"name": "no dots"}]}, "no dots"),
                        ({"kind": "table.write", "outputs": [{"name": "a.b",
                                                              "snapshot_id": "x"}]},
                         "snapshot_id"),
                        ({"kind": "table.write", "subject": "text"}, "subject"),
                        ({"kind": "table.write", "at": "yesterday"}, "invalid happening")):
        refused = client.post("/happenings", json=body)
        assert refused.status_code == 422, (body, refused.text)
        assert named in refused.json()["error"]["message"], refused.json()
    source = "file:/incoming/partner-batch.csv"
    told = {"kind": "table.write", "state": "COMPLETE", "run_id": "etl-1",
            "actor": {"user": "mallory", "key_id": "forged"},
            "inputs": [{"name": "/incoming/partner-batch.csv", "kind": "file"}],
            "outputs": [{"name": TABLE, "snapshot_id": story.s3, "rows": 300}],
            "subject": {"via": "partner-etl"}}
    for _ in range(2):  # a repeated COMPLETE adds no edge
        accepted = client.post("/happenings", json=told)
        assert accepted.status_code == 202, accepted.text
    actor = accepted.json()["actor"]
    assert actor["user"] != "mallory" and actor["key_id"] not in ("", "forged")
    with story.db.session() as s:
        rows = list(s.scalars(select(LineageEdge).where(
            LineageEdge.dst == story.snap(story.s3))))
        count = s.scalar(select(func.count()).select_from(LineageEdge).where(
            LineageEdge.src == source))
    assert count == 1
    loaded = next(r for r in rows if r.src == source)
    assert loaded.relation == "loaded into" and "mallory" not in loaded.actor
    assert loaded.actor == actor["user"]


def test_a_spark_etl_records_the_snapshots_it_read(story: Story, spark) -> None:
    from icefloe.compute import read_table, write_table

    happenings.use_local(story.settings)  # each test starts with no subscribers (conftest)
    lh = Lakehouse(story.settings)
    sample = read_table(spark, TABLE, lakehouse=lh).sample(fraction=0.2, seed=1)
    staged = write_table(sample, "lending.staging", mode="create", lakehouse=lh)
    node = f"snapshot:lending.staging@{staged.snapshot.snapshot_id}"
    with story.db.session() as s:
        rows = {(r.src, r.relation) for r in s.scalars(select(LineageEdge).where(
            LineageEdge.dst == node))}
    assert (story.snap(story.s2), "input of") in rows  # the current snapshot it sampled
    assert any(src.startswith("user:") and rel == "wrote" for src, rel in rows)

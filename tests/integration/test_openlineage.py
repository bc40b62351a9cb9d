"""OpenLineage events: every kind of happening through the real subscriber, to a file and to
a real HTTP receiver on 127.0.0.1, each event validated against the OpenLineage JSON schema
and icefloe's facet schemas (offline: see tests/openlineage_spec.py)."""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import stat
import tomllib
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from icefloe import happenings
from icefloe.config import Settings, load_settings
from icefloe.errors import ConfigError
from icefloe.happenings import Actor, Dataset, Happening
from icefloe.openlineage import facets
from icefloe.openlineage.emitter import Emitter, subscriber
from icefloe.openlineage.events import Naming, airflow_task_run_id, run_id_of, to_run_event
from icefloe.openlineage.transport import HttpTransport, close_all, flush_all
from icefloe.store.db import Database
from tests import openlineage_spec
from tests.servers import Receiver, free_port

ROOT = Path(__file__).resolve().parents[2]
# The documented namespace of derived run ids (README, icefloe.openlineage.events).
RUN_NAMESPACE = uuid.UUID("ed52b11e-3c90-597d-b35c-d601d5b6bb37")
AIRFLOW = {"kind": "airflow", "dag_id": "lending_etl",
           "run_id": "manual__2026-03-01T10:00:00+00:00", "task_id": "retrain", "map_index": -1}
S1, S2 = 4_811_023_675_998_112_001, 7_002_913_449_120_554_002
JOB_RUN = str(uuid.uuid4())
FAILED_RUN = str(uuid.uuid4())
MLFLOW_RUN = uuid.uuid4().hex
BUILD = str(uuid.uuid4())
COLUMNS = ("loan_status", "annual_inc", "funded_amnt")
ALICE = Actor(user="alice", key_id="k1", run_id=JOB_RUN, source="127.0.0.1")

needs_spec = pytest.mark.skipif(
    openlineage_spec.spec_dir() is None,
    reason="the OpenLineage spec (OpenLineage.json + facets/) is not here: set "
           "ICEFLOE_OPENLINEAGE_SPEC to its folder (see tests/openlineage_spec.py)")


def story() -> list[Happening]:
    """One of each kind, as the hook points publish them (a job run started by Airflow)."""
    in_job = {"kind": "job.run", "run_id": JOB_RUN}
    loans = "lending.loans"
    return [
        Happening("job.run", "START", JOB_RUN, ALICE, parent=AIRFLOW,
                  subject={"project": "demo", "job": "TrainModel", "job_id": "j1"}),
        Happening("table.write", "COMPLETE", str(uuid.uuid4()), ALICE,
                  inputs=(Dataset("/data/batches/2026-03.csv", kind="file", rows=500),),
                  outputs=(Dataset(loans, S2, fields=COLUMNS, rows=500),), parent=in_job),
        Happening("table.read", "COMPLETE", actor=ALICE, inputs=(Dataset(loans, S2),)),
        Happening("training", "START", MLFLOW_RUN, ALICE, inputs=(Dataset(loans, S2),),
                  subject={"model": "loans", "params": {"regParam": 0.01, "maxIter": 50}},
                  parent=in_job),
        Happening("training", "COMPLETE", MLFLOW_RUN, ALICE,
                  inputs=(Dataset(loans, S2, fields=COLUMNS, rows=10_000),),
                  subject={"model": "loans", "version": 2,
                           "params": {"regParam": 0.01, "maxIter": 50, "family": "auto"},
                           "metrics": {"auc": 0.74, "accuracy": 0.81, "nan": float("nan"),
                                       "confusion": [[1, 2], [3, 4]]}},
                  parent=in_job),
        Happening("job.run", "COMPLETE", JOB_RUN, ALICE, parent=AIRFLOW,
                  subject={"project": "demo", "job": "TrainModel", "job_id": "j1"}),
        Happening("job.run", "START", FAILED_RUN, ALICE, parent=AIRFLOW,
                  subject={"project": "demo", "job": "TrainModel"}),
        Happening("job.run", "FAIL", FAILED_RUN, ALICE, parent=AIRFLOW,
                  subject={"project": "demo", "job": "TrainModel",
                           "error": "VectorAssembler cannot take column home_ownership"}),
        Happening("build", "COMPLETE", BUILD, ALICE,
                  subject={"build_id": BUILD, "model": "loans", "version": 2,
                           "parity": 2.4e-7, "checksum": "ab" * 32, "format": "onnx"}),
        Happening("deployment", "COMPLETE", "dep-loans", ALICE,
                  subject={"deployment_id": "dep-loans", "build_id": BUILD, "model": "loans",
                           "version": 2, "action": "create", "replicas": 2}),
        Happening("sql.report", "COMPLETE", actor=ALICE,
                  inputs=(Dataset("monitoring.windows", 11),),
                  outputs=(Dataset("reports.accuracy", 12, fields=("version", "accuracy")),),
                  subject={"sql": "SELECT version, avg(accuracy) FROM monitoring.windows "
                                  "GROUP BY version"}),
        Happening("table.rollback", "COMPLETE", actor=ALICE, outputs=(Dataset(loans, S1),),
                  subject={"from_snapshot": S2, "to_snapshot": S1}),
        Happening("monitoring.window", "COMPLETE", actor=ALICE,
                  inputs=(Dataset("monitoring.predictions", 21),),
                  outputs=(Dataset("monitoring.metrics", 22),),
                  subject={"deployment_id": "dep-loans", "build_id": BUILD, "model": "loans",
                           "version": 2, "window": "1h", "start_ms": 1_772_359_200_000,
                           "end_ms": 1_772_362_800_000}),
        Happening("alert", "COMPLETE", actor=ALICE,
                  subject={"rule_id": "psi-high", "to": "FIRING", "from": "OK",
                           "deployment_id": "dep-loans", "metric": "psi",
                           "feature": "annual_inc", "value": 0.31, "samples": 500,
                           "start_ms": 1_772_359_200_000, "end_ms": 1_772_362_800_000}),
        Happening("job.run", "ABORT", str(uuid.uuid4()), ALICE,
                  subject={"project": "demo", "job": "Simulation", "error": "stopped"}),
    ]


def validate(events: list[dict[str, Any]]) -> None:
    """Validate against the spec where it is here; test_every_event_is_valid_against_the_spec
    says (skipped) when it is not, and the checks of meaning below run regardless."""
    if openlineage_spec.spec_dir() is not None:
        for event in events:
            openlineage_spec.validate(event)


def told(events: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in events:
        out.setdefault((e["job"]["name"], e["eventType"]), []).append(e)
    return out


def check_story(events: list[dict[str, Any]]) -> None:
    """What the story's events must say (beyond being valid)."""
    assert len(events) == len(story()) - 1  # the read is not an OpenLineage run
    by = told(events)
    start, done = by[("demo.TrainModel", "START")][0], by[("demo.TrainModel", "COMPLETE")][0]
    assert start["run"]["runId"] == done["run"]["runId"] == JOB_RUN
    # The Airflow task that started it, as documented (so users can correlate).
    parent = done["run"]["facets"]["parent"]
    assert parent["job"] == {"namespace": "airflow", "name": "lending_etl.retrain"}
    assert parent["run"]["runId"] == str(uuid.uuid5(
        RUN_NAMESPACE, "airflow:lending_etl:manual__2026-03-01T10:00:00+00:00:retrain"))
    assert parent["root"]["job"] == {"namespace": "airflow", "name": "lending_etl"}
    # The write names the snapshot it made, and its job run.
    write = by[("table.lending.loans", "COMPLETE")][0]
    (loans,) = write["outputs"]
    assert (loans["namespace"], loans["name"]) == ("iceberg://icefloe", "lending.loans")
    assert loans["facets"]["version"]["datasetVersion"] == str(S2)
    assert [f["name"] for f in loans["facets"]["schema"]["fields"]] == list(COLUMNS)
    assert loans["outputFacets"]["outputStatistics"]["rowCount"] == 500
    assert write["inputs"][0]["namespace"] == "file"
    assert write["run"]["facets"]["parent"]["run"]["runId"] == JOB_RUN
    assert write["run"]["facets"]["parent"]["job"]["name"] == "demo.TrainModel"
    # Training: one run id for START and COMPLETE (the MLflow run's), its facets, the model.
    t_start, t_done = by[("training.loans", "START")][0], by[("training.loans", "COMPLETE")][0]
    assert t_start["run"]["runId"] == t_done["run"]["runId"] == str(uuid.UUID(MLFLOW_RUN))
    training = t_done["run"]["facets"]["icefloe_training"]
    assert training["hyperparameters"] == {"regParam": 0.01, "maxIter": 50, "family": "auto"}
    assert training["metrics"] == {"auc": 0.74, "accuracy": 0.81}  # no NaN, no matrix
    assert training["mlflowRunId"] == MLFLOW_RUN
    assert t_done["run"]["facets"]["icefloe_model"]["version"] == "2"
    assert t_done["inputs"][0]["facets"]["version"]["datasetVersion"] == str(S2)
    assert [(d["namespace"], d["name"]) for d in t_done["outputs"]] == [
        ("models://icefloe", "loans/2")]
    assert t_done["run"]["facets"]["parent"]["run"]["runId"] == JOB_RUN
    # The failure says why; the abort too.
    failed = by[("demo.TrainModel", "FAIL")][0]
    assert failed["run"]["runId"] == FAILED_RUN
    assert "home_ownership" in failed["run"]["facets"]["errorMessage"]["message"]
    assert by[("demo.Simulation", "ABORT")][0]["run"]["facets"]["errorMessage"]["message"] \
        == "stopped"
    build = by[("build.loans", "COMPLETE")][0]
    assert build["run"]["runId"] == BUILD
    assert build["run"]["facets"]["icefloe_build"]["parity"] == 2.4e-7
    assert [d["name"] for d in build["inputs"]] == ["loans/2"]
    deploy = by[("deploy.loans", "COMPLETE")][0]
    assert deploy["run"]["facets"]["icefloe_deployment"]["buildId"] == BUILD
    assert deploy["run"]["runId"] == run_id_of("deployment", "dep-loans")
    assert [d["name"] for d in deploy["inputs"]] == [BUILD]
    report = by[("sql.reports.accuracy", "COMPLETE")][0]
    assert report["job"]["facets"]["sql"]["query"].startswith("SELECT version")
    rollback = by[("rollback.lending.loans", "COMPLETE")][0]
    assert rollback["outputs"][0]["facets"]["version"]["datasetVersion"] == str(S1)
    alert = by[("alert.psi-high", "COMPLETE")][0]["run"]["facets"]["icefloe_monitoring"]
    assert alert["state"] == "FIRING" and alert["metrics"] == {"psi.annual_inc": 0.31}
    assert alert["windowStart"] == "2026-03-01T10:00:00+00:00"
    window = by[("monitor.loans", "COMPLETE")][0]
    assert window["outputs"][0]["facets"]["version"]["datasetVersion"] == "22"
    assert all(e["run"]["facets"]["icefloe_actor"]["user"] == "alice" for e in events)


def ol_settings(tmp_path: Path, **values: str) -> Settings:
    env = {f"ICEFLOE_{k.upper()}": v for k, v in values.items()}
    return load_settings(env=env, home=tmp_path / "home")


# -- settings ---------------------------------------------------------------------------


def test_off_by_default_and_wrong_settings_name_the_setting(tmp_path: Path) -> None:
    settings = load_settings(env={}, home=tmp_path / "home")
    assert settings.openlineage_transport == ""
    assert subscriber(settings, None) is None
    assert not any(isinstance(s, Emitter) for s in happenings.make_subscribers(settings, None))
    with pytest.raises(ConfigError, match="openlineage_transport.*'kafka'"):
        subscriber(ol_settings(tmp_path, openlineage_transport="kafka"), None)
    with pytest.raises(ConfigError, match="openlineage_url"):
        subscriber(ol_settings(tmp_path, openlineage_transport="http"), None)


def test_the_api_key_is_never_shown(tmp_path: Path) -> None:
    settings = ol_settings(tmp_path, openlineage_transport="http",
                           openlineage_url="http://u:pw@127.0.0.1:9/",
                           openlineage_api_key="ol-key-123")
    assert settings.openlineage_api_key == "ol-key-123"
    shown = json.dumps(settings.as_dict())
    assert "ol-key-123" not in shown + repr(settings) and "pw@" not in shown


# -- the events themselves -----------------------------------------------------------------


def test_run_ids_are_stable_and_documented() -> None:
    job_run = str(uuid.uuid4())
    assert run_id_of("job.run", job_run) == job_run
    assert run_id_of("training", MLFLOW_RUN) == str(uuid.UUID(MLFLOW_RUN))
    assert run_id_of("deployment", "dep-1") == run_id_of("deployment", "dep-1") == str(
        uuid.uuid5(RUN_NAMESPACE, "deployment:dep-1"))
    # A write that reuses its job run's id gets its own run id.
    assert run_id_of("table.write", job_run, parent_run_id=job_run) != job_run
    derived = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/icefloe/icefloe/openlineage")
    assert derived == RUN_NAMESPACE
    # A mapped Airflow task instance has a run of its own; an unmapped one (-1) does not.
    assert airflow_task_run_id("d", "r", "t", -1) == airflow_task_run_id("d", "r", "t") == str(
        uuid.uuid5(RUN_NAMESPACE, "airflow:d:r:t"))
    assert airflow_task_run_id("d", "r", "t", 3) == str(uuid.uuid5(RUN_NAMESPACE,
                                                                   "airflow:d:r:t:3"))


def test_job_runs_are_named_from_the_platform_db(settings: Settings) -> None:
    from icefloe.store.orm import Job, Project, Run

    db = Database(settings.resolved_platform_db_url)
    at = datetime.now(UTC)
    run_id = str(uuid.uuid4())
    with db.session() as s:
        s.add(Project(id="p1", name="lending", path="/x", created_at=at, updated_at=at))
        s.flush()
        s.add(Job(id="j1", project_id="p1", name="PushModel", script="push.py",
                  created_at=at, updated_at=at))
        s.flush()
        s.add(Run(id=run_id, job_id="j1", project_id="p1", status="ENGINE_RUNNING",
                  trigger="manual", created_at=at))
    emitter = subscriber(ol_settings(settings.home.parent, openlineage_transport="file"), db)
    assert emitter is not None
    naming = emitter.naming
    started = to_run_event(Happening("job.run", "START", run_id,
                                     subject={"project_id": "p1", "job_id": "j1"}), naming)
    build = to_run_event(Happening("build", subject={"model": "m", "build_id": "b"},
                                   parent={"kind": "job.run", "run_id": run_id}), naming)
    assert started and build
    assert started["job"]["name"] == "lending.PushModel"
    assert build["run"]["facets"]["parent"]["job"] == {"namespace": "icefloe",
                                                       "name": "lending.PushModel"}


def test_our_facet_schemas_are_shipped_valid_and_named_by_the_spec() -> None:
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["package-data"]["icefloe"]
    for key, name in facets.CUSTOM.items():
        assert any(fnmatch.fnmatch(f"openlineage/schemas/{name}.json", p) for p in package_data)
        schema = facets.custom_schema(key)
        Draft202012Validator.check_schema(schema)
        assert name.startswith("Icefloe") and name.endswith("RunFacet")
        assert key == "icefloe_" + name.removeprefix("Icefloe").removesuffix("RunFacet").lower()
        assert list(schema["properties"]) == [key]
        assert facets.schema_url(key) == f"{schema['$id']}#/$defs/{name}"
    readme = (ROOT / "README.md").read_text()
    assert all(f"`{key}`" in readme and name in readme for key, name in facets.CUSTOM.items())


@needs_spec
def test_every_event_is_valid_against_the_spec() -> None:
    naming = Naming(job_of_run={JOB_RUN: "demo.TrainModel"}.get)  # as the emitter learns it
    events = [e for h in story() if (e := to_run_event(h, naming)) is not None]
    for event in events:
        openlineage_spec.validate(event)
    check_story(events)


@needs_spec
def test_a_misspelt_facet_field_is_caught_by_our_schema() -> None:
    event = to_run_event(story()[8], Naming())  # the build
    assert event is not None
    openlineage_spec.validate(event)
    event["run"]["facets"]["icefloe_build"]["partiy"] = 1.0
    with pytest.raises(Exception, match="partiy"):
        openlineage_spec.validate(event)


# -- transports ------------------------------------------------------------------------------


def test_every_kind_to_a_file_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "lineage" / "events.jsonl"
    emitter = subscriber(ol_settings(tmp_path, openlineage_transport="file",
                                     openlineage_file=str(path)), None)
    assert isinstance(emitter, Emitter)
    for h in story():
        emitter(h)
    lines = path.read_text().splitlines()
    events = [json.loads(line) for line in lines]
    validate(events)
    check_story(events)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert emitter.transport.stats()["sent"] == len(events)


def test_the_file_defaults_to_the_homes_logs(tmp_path: Path) -> None:
    settings = ol_settings(tmp_path, openlineage_transport="file")
    emitter = subscriber(settings, None)
    assert emitter is not None
    emitter(story()[0])
    (line,) = (settings.home / "logs" / "openlineage.jsonl").read_text().splitlines()
    assert json.loads(line)["run"]["runId"] == JOB_RUN


def test_every_kind_to_a_real_receiver_is_valid(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    receiver = Receiver()
    settings = ol_settings(tmp_path, openlineage_transport="http",
                           openlineage_url=receiver.base_url, openlineage_api_key="ol-key-123")
    emitter = subscriber(settings, None)
    assert isinstance(emitter, Emitter)
    happenings.install([emitter])  # through the bus, as the control plane does
    try:
        with caplog.at_level(logging.INFO):
            for h in story():
                happenings.publish(h)
            assert emitter.flush(timeout=30)
    finally:
        happenings.reset()
        emitter.close()
    events = [payload for payload, _, _ in receiver.received]
    validate(events)
    check_story(events)
    for path, headers in receiver.requests:
        assert path == "/api/v1/lineage"
        lower = {k.lower(): v for k, v in headers.items()}
        assert lower["authorization"] == "Bearer ol-key-123"
        assert lower["content-type"] == "application/json"
    assert emitter.transport.stats() == {"sent": len(events), "failed": 0, "dropped": 0,
                                         "pending": 0}
    assert "ol-key-123" not in caplog.text


def test_a_dead_receiver_never_raises_and_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    event = to_run_event(story()[0], Naming())
    assert event is not None
    # Refused connections, given up after one quick retry: each counted as failed.
    transport = HttpTransport(dead, api_key="ol-key-123", timeout=2, retries=1, backoff=0.01)
    for _ in range(5):
        transport.emit(event)  # returns at once: the caller never waits on the receiver
    assert transport.flush(timeout=60)
    transport.close()
    assert transport.stats() == {"sent": 0, "failed": 5, "dropped": 0, "pending": 0}
    assert "could not be sent" in caplog.text and "ol-key-123" not in caplog.text
    # A full queue drops (and counts) instead of waiting; close gives up what is left.
    slow = HttpTransport(dead, timeout=2, retries=3, backoff=30, max_queue=1)
    for _ in range(6):
        slow.emit(event)
    assert slow.flush(timeout=0.2) is False  # returns after its timeout, not the backoff's
    slow.close(timeout=0)
    assert slow.flush(timeout=30)  # the request under way (if any) ends: stop cut its backoff
    counts = slow.stats()
    assert counts["sent"] == 0 and counts["pending"] == 0
    assert counts["dropped"] >= 4 and counts["failed"] + counts["dropped"] == 6
    slow.emit(event)  # after close: dropped, never raised
    assert slow.stats()["dropped"] == counts["dropped"] + 1


def test_a_refused_event_is_not_retried(tmp_path: Path) -> None:
    """A 4xx answer is final: one request, counted as failed."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits: list[str] = []

    class Refuse(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            hits.append(self.path)
            self.send_response(400)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        transport = HttpTransport(f"http://127.0.0.1:{server.server_address[1]}/api/v1/lineage",
                                  retries=3, backoff=0.01)
        event = to_run_event(story()[0], Naming())
        assert event is not None
        transport.emit(event)
        assert transport.flush(timeout=30)
        transport.close()
    finally:
        server.shutdown()
    assert hits == ["/api/v1/lineage"]
    assert transport.stats()["failed"] == 1


# -- through the control plane ---------------------------------------------------------------


def test_a_happening_told_to_the_control_plane_reaches_the_receiver(tmp_path: Path) -> None:
    from icefloe.api.app import create_app
    from icefloe.auth import keys as api_keys

    receiver = Receiver()
    settings = ol_settings(tmp_path, openlineage_transport="http",
                           openlineage_url=receiver.base_url)
    app = create_app(settings, start_runner=False)  # installs the subscribers of its settings
    with app.state.db.session() as s:
        _, key = api_keys.create_api_key(s, "carol", "admin")
    written = Happening("table.write", "COMPLETE", str(uuid.uuid4()),
                        Actor(user="mallory"), outputs=(Dataset("lending.loans", S2),))

    async def report() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.post("/api/v2/happenings", json=written.to_dict(),
                                     headers={"Authorization": f"Bearer {key}"})

    try:
        answer = asyncio.run(report())
        assert answer.status_code == 202, answer.text
        assert flush_all(timeout=30)
    finally:
        happenings.reset()
        close_all()
    (event,) = [p for p, _, _ in receiver.received]
    validate([event])
    (table,) = event["outputs"]
    assert table["name"] == "lending.loans"
    assert table["facets"]["version"]["datasetVersion"] == str(S2)
    # The server says who sent it, whatever the body claimed.
    assert event["run"]["facets"]["icefloe_actor"]["user"] == "carol"

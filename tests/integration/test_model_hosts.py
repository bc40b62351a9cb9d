"""Many deployments on a few shared model hosts (``model_hosts``): real host processes,
lazy loading, idle eviction with the memory each model took, a host that dies, a redeploy."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from icefloe.auth.digests import access_key_hash
from icefloe.config import Settings
from icefloe.demo.loans import generate_loans
from icefloe.lakehouse import Lakehouse
from icefloe.ml.spec import LabelSpec, TrainSpec
from icefloe.ml.train import train
from icefloe.serving import builds
from icefloe.serving import deployments as deps
from icefloe.serving.gateway import forward
from icefloe.serving.hosts import ModelHosts
from icefloe.serving.protocol import PREDICT
from icefloe.serving.replica import probe_record
from icefloe.serving.schema import InputSchema
from icefloe.store.db import Database
from tests.postgres import home_settings
from tests.servers import alive

pytestmark = pytest.mark.spark
MODELS = 12


@dataclass
class Made:
    settings: Settings
    db: Database
    builds: list[str]
    record: dict


@pytest.fixture(scope="module")
def made(spark, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Made]:
    settings = home_settings(tmp_path_factory.mktemp("hosts") / "home")
    Lakehouse(settings).write("lending.loans", generate_loans(1200, 9), "create")
    train(TrainSpec(table="lending.loans", label=LabelSpec("loan_status",
                                                           ("Charged Off", "Default")),
                    model_name="small"), settings, spark=spark)
    db = Database(settings.resolved_platform_db_url)
    # Builds are separate models to a host: each is loaded from its own folder.
    ready = [builds.create_build(db, settings, "small/1") for _ in range(MODELS + 1)]
    assert {b.status for b in ready} == {builds.READY}
    yield Made(settings, db, [b.id for b in ready], probe_record(
        InputSchema.from_dict(ready[0].input_schema)))
    db.dispose()


def call(hosts: ModelHosts, key: str, record: dict) -> dict:
    route = hosts.route(access_key_hash(key))
    assert route is not None
    body = json.dumps({"accessKey": key, "request": record}).encode()
    status, response, _ = asyncio.run(forward(route, PREDICT, body, wait=10,
                                              key=key.encode()))
    assert status == 200, response
    return json.loads(response)["response"]


def wait_for(check, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_many_deployments_share_two_hosts_and_idle_models_are_unloaded(made: Made) -> None:
    hosts = ModelHosts(made.settings.home.resolve(), 2, idle_seconds=2, check_every=0.5)
    try:
        served = [deps.create_deployment(made.db, hosts, build) for build in
                  made.builds[:MODELS]]
        pids = {r["pid"] for dep, _ in served for r in hosts.replicas(dep.id)}
        assert len(pids) == 2  # twelve deployments, two processes
        for (_dep, key), build in zip(served, made.builds, strict=False):
            assert call(hosts, key, made.record)["build"] == build  # each its own model
        # Each host reports the memory of every model it loaded.
        wait_for(lambda: sum(len(h["models"]) for h in hosts.memory()["hosts"]) == MODELS,
                 "the hosts' status")
        first = hosts.replicas(served[0][0].id)[0]
        assert first["loaded"] and first["model_memory_mb"] is not None
        assert first["host_memory_mb"] > 0
        # Unused for longer than idle_seconds: unloaded, and loaded again on the next call.
        wait_for(lambda: not any(m["loaded"] for h in hosts.memory()["hosts"]
                                 for m in h["models"].values()), "idle models unloaded")
        assert call(hosts, served[0][1], made.record)["build"] == made.builds[0]
        wait_for(lambda: hosts.replicas(served[0][0].id)[0]["loaded"], "a reload")
        loads = [m["loads"] for h in hosts.memory()["hosts"]
                 for b, m in h["models"].items() if b == made.builds[0]]
        assert loads == [2]

        # A host that dies is started again with every deployment it had.
        victim = first["pid"]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: not alive(victim) and all(
            r["pid"] != victim and r["ready"] for dep, _ in served
            for r in hosts.replicas(dep.id)), "the host to come back")
        for (_dep, key), build in zip(served, made.builds, strict=False):
            assert call(hosts, key, made.record)["build"] == build

        # A redeploy moves a deployment to another build on the same hosts.
        dep, key = served[0]
        moved = deps.redeploy(made.db, hosts, dep.id, made.builds[MODELS])
        assert moved.build_id == made.builds[MODELS]
        assert call(hosts, key, made.record)["build"] == made.builds[MODELS]
        # Stopped deployments no longer answer; the others do.
        deps.stop_deployment(made.db, hosts, served[1][0].id)
        assert hosts.route(access_key_hash(served[1][1])) is None
        assert call(hosts, served[2][1], made.record)["build"] == made.builds[2]
    finally:
        hosts.close()
    assert not any(alive(p) for p in pids)


def test_a_build_that_does_not_load_leaves_no_deployment_behind(made: Made,
                                                                 tmp_path: Path) -> None:
    hosts = ModelHosts(made.settings.home.resolve(), 1, idle_seconds=60)
    try:
        good, key = deps.create_deployment(made.db, hosts, made.builds[0])
        schema = Path(builds_path(made, made.builds[MODELS])) / "schema.json"
        original = schema.read_text()
        schema.write_text(original + " ")  # its checksum no longer matches
        try:
            with pytest.raises(Exception, match="checksum"):
                deps.redeploy(made.db, hosts, good.id, made.builds[MODELS])
        finally:
            schema.write_text(original)
        assert call(hosts, key, made.record)["build"] == made.builds[0]  # the old one serves
    finally:
        hosts.close()


def builds_path(made: Made, build_id: str) -> str:
    from icefloe.store import repo

    with made.db.session() as s:
        return repo.get_build(s, build_id).path

"""One source of truth for deployments, with real replica processes.

The database and the supervisor must always name the same build: a deployment is DEPLOYED
only once its replicas are ready (DEPLOYING before, FAILED with the reason if they never
are), concurrent redeploys of one deployment take turns, a change recorded elsewhere in the
meantime makes a redeploy back off, and a restart serves exactly what was recorded.
"""

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select, update

from icefloe.auth.digests import access_key_hash
from icefloe.config import Settings
from icefloe.demo.loans import generate_loans
from icefloe.errors import ConflictError, UnavailableError
from icefloe.lakehouse import Lakehouse
from icefloe.ml.spec import LabelSpec, TrainSpec
from icefloe.ml.train import train
from icefloe.serving import builds
from icefloe.serving import deployments as deps
from icefloe.serving.gateway import forward
from icefloe.serving.protocol import PREDICT
from icefloe.serving.replica import probe_record
from icefloe.serving.schema import InputSchema
from icefloe.serving.supervisor import Supervisor
from icefloe.store import repo
from icefloe.store.db import Database
from icefloe.store.orm import AuditEvent, Deployment
from tests.postgres import home_settings

pytestmark = pytest.mark.spark

@dataclass
class Platform:
    settings: Settings
    db: Database
    builds: list[str]  # READY builds of loan-default/1
    tampered: str  # READY in the store, but its folder no longer matches its checksum
    record: dict  # a request every build of the model accepts


@pytest.fixture(scope="module")
def platform(spark, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    home = tmp_path_factory.mktemp("deployments") / "home"
    settings = home_settings(home)
    Lakehouse(settings).write("lending.loans", generate_loans(1500, 5), "create")
    train(TrainSpec(table="lending.loans", label=LabelSpec("loan_status",
                                                           ("Charged Off", "Default")),
                    model_name="loan-default", pipeline="categorical"), settings, spark=spark)
    db = Database(settings.resolved_platform_db_url)
    made = [builds.create_build(db, settings, "loan-default/1") for _ in range(4)]
    assert [b.status for b in made] == [builds.READY] * 4, [b.reason for b in made]
    record = probe_record(InputSchema.from_dict(made[0].input_schema))
    schema = Path(made[3].path) / "schema.json"
    schema.write_text(schema.read_text() + " ")  # the replicas refuse it at start
    yield Platform(settings, db, [b.id for b in made[:3]], made[3].id, record)
    db.dispose()


@pytest.fixture
def supervisor(platform: Platform) -> Iterator[Supervisor]:
    sup = Supervisor(platform.settings.home.resolve())
    yield sup
    sup.close()


def row(db: Database, deployment_id: str) -> Deployment:
    with db.session() as s:
        return repo.get_deployment(s, deployment_id)


def answered_by(sup: Supervisor, access_key: str, record: dict, wait: float = 10.0) -> str:
    """The build whose replica answers a real call made with the access key (waiting up to
    ``wait`` seconds for a ready replica)."""
    route = sup.route(access_key_hash(access_key))
    assert route is not None
    body = json.dumps({"accessKey": access_key, "request": record}).encode()
    status, response, _ = asyncio.run(forward(route, PREDICT, body, wait=wait,
                                              key=access_key.encode()))
    assert status == 200, response
    return str(json.loads(response)["response"]["build"])


def assert_one_truth(platform: Platform, sup: Supervisor, dep_id: str, access_key: str,
                     build: str) -> None:
    """The store, the route, every replica taking traffic and a real answer name ``build``."""
    assert row(platform.db, dep_id).build_id == build
    assert sup.serving(dep_id) == build
    route = sup.route(access_key_hash(access_key))
    assert route is not None and route.replicas
    assert {r.build_id for r in route.replicas} == {build}
    assert answered_by(sup, access_key, platform.record) == build


def test_concurrent_redeploys_take_turns_and_end_on_one_build(
        platform: Platform, supervisor: Supervisor) -> None:
    first, second, third = platform.builds
    dep, key = deps.create_deployment(platform.db, supervisor, first, replicas=2)
    assert dep.status == deps.DEPLOYED
    assert_one_truth(platform, supervisor, dep.id, key, first)

    start = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def move(build: str) -> None:
        start.wait()
        try:
            outcomes[build] = deps.redeploy(platform.db, supervisor, dep.id, build).build_id
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcomes[build] = exc

    threads = [threading.Thread(target=move, args=(b,)) for b in (second, third)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert outcomes == {second: second, third: third}  # both succeeded, one after the other

    with platform.db.session() as s:
        moves = [e.detail for e in s.scalars(
            select(AuditEvent).where(AuditEvent.action == "deployment.redeploy",
                                     AuditEvent.target == f"deployment/{dep.id}")
            .order_by(AuditEvent.id))]
    # The second redeploy replaced what the first one recorded: they did not overlap.
    assert moves in ([f"build/{first} -> build/{second}", f"build/{second} -> build/{third}"],
                     [f"build/{first} -> build/{third}", f"build/{third} -> build/{second}"])
    final = moves[-1].rsplit("build/", 1)[1]
    assert_one_truth(platform, supervisor, dep.id, key, final)


def test_replicas_that_never_start_fail_a_deployment_and_leave_a_redeploy_on_the_old_build(
        platform: Platform, supervisor: Supervisor) -> None:
    good = platform.builds[0]
    with platform.db.session() as s:
        known = set(s.scalars(select(Deployment.id)))

    # A deployment is DEPLOYING (and not routed) until its replicas are ready.
    done: dict[str, object] = {}
    creating = threading.Thread(target=lambda: done.update(
        made=deps.create_deployment(platform.db, supervisor, good)))
    creating.start()
    deadline = time.monotonic() + 120
    while True:
        with platform.db.session() as s:
            fresh = [d for d in s.scalars(select(Deployment)) if d.id not in known]
        if fresh:
            break
        assert creating.is_alive() and time.monotonic() < deadline, done
        time.sleep(0.005)
    dep_id = fresh[0].id
    seen = [fresh[0].status]
    while creating.is_alive():
        assert time.monotonic() < deadline, "the deployment never became ready"
        # Read in this order: a route exists only after the row says DEPLOYED, and the row
        # says DEPLOYED only once every replica answered.
        routed = supervisor.serving(dep_id)
        status = row(platform.db, dep_id).status
        replicas = supervisor.replicas(dep_id)
        seen.append(status)
        if status == deps.DEPLOYING:
            assert routed is None
        else:
            assert status == deps.DEPLOYED, status
            assert replicas and all(r["ready"] for r in replicas), replicas
        time.sleep(0.005)
    creating.join()
    dep, key = done["made"]  # type: ignore[misc]
    assert dep.id == dep_id and seen[0] == deps.DEPLOYING, seen[:3]
    assert row(platform.db, dep.id).status == deps.DEPLOYED

    # A build whose replicas exit at start: FAILED, with the reason, and nothing left running.
    with pytest.raises(UnavailableError, match="checksum") as failed:
        deps.create_deployment(platform.db, supervisor, platform.tampered)
    with platform.db.session() as s:
        broken = s.scalars(select(Deployment).where(
            Deployment.build_id == platform.tampered)).one()
    assert broken.status == deps.FAILED and "checksum" in broken.reason, broken.reason
    assert supervisor.serving(broken.id) is None and supervisor.replicas(broken.id) == []
    assert failed.value.message in broken.reason
    with pytest.raises(ConflictError, match="FAILED"):  # nothing to redeploy
        deps.redeploy(platform.db, supervisor, broken.id, good)

    # The same build as a redeploy: the old build keeps serving, the reason is kept.
    with pytest.raises(UnavailableError, match="checksum"):
        deps.redeploy(platform.db, supervisor, dep.id, platform.tampered)
    kept = row(platform.db, dep.id)
    assert kept.status == deps.DEPLOYED and platform.tampered in kept.reason
    assert_one_truth(platform, supervisor, dep.id, key, good)


def test_a_redeploy_backs_off_when_the_row_changed_while_its_replicas_started(
        platform: Platform, supervisor: Supervisor) -> None:
    """Another control plane on the same database (simulated by a direct write) changes the
    row while this one starts the new replicas: the conditional update refuses to record
    over it and the new replicas are stopped, the route never moves."""
    first, second, third = platform.builds
    dep, key = deps.create_deployment(platform.db, supervisor, first)
    logs = supervisor.log_dir
    before = set(logs.glob(f"{second[:8]}-*.log"))

    def change_elsewhere() -> None:
        deadline = time.monotonic() + 60
        while not set(logs.glob(f"{second[:8]}-*.log")) - before:  # its replica was spawned
            assert time.monotonic() < deadline
            time.sleep(0.002)
        with platform.db.session() as s:
            s.execute(update(Deployment).where(Deployment.id == dep.id)
                      .values(build_id=third))

    other = threading.Thread(target=change_elsewhere)
    other.start()
    with pytest.raises(ConflictError, match="changed elsewhere"):
        deps.redeploy(platform.db, supervisor, dep.id, second)
    other.join()
    assert row(platform.db, dep.id).build_id == third  # what the other one recorded
    assert supervisor.serving(dep.id) == first  # this one never moved traffic
    assert answered_by(supervisor, key, platform.record) == first
    assert all(r["build_id"] == first for r in supervisor.replicas(dep.id))
    # The two now disagree, and this control plane says so instead of guessing.
    with pytest.raises(ConflictError, match=f"recorded on build {third}"):
        deps.redeploy(platform.db, supervisor, dep.id, second)


def test_a_restart_serves_exactly_what_was_recorded(platform: Platform) -> None:
    first, second, _ = platform.builds
    with platform.db.session() as s:  # earlier tests' deployments are not part of this one
        s.execute(update(Deployment).values(status=deps.STOPPED))
    before = Supervisor(platform.settings.home.resolve())
    try:
        moved, moved_key = deps.create_deployment(platform.db, before, first)
        deps.redeploy(platform.db, before, moved.id, second)
        stopped, _ = deps.create_deployment(platform.db, before, first)
        deps.stop_deployment(platform.db, before, stopped.id)
    finally:
        before.close()
    # What a control plane killed in the middle of a deployment leaves behind.
    with platform.db.session() as s:
        s.add(Deployment(id=repo.new_id(), build_id=first, model_name="loan-default",
                         model_version=1, access_key_hash="0" * 64, auth_enabled=True,
                         replicas=1, status=deps.DEPLOYING, reason="", created_by="",
                         created_at=repo.now(), updated_at=repo.now()))
    with platform.db.session() as s:
        recorded = {d.id: (d.status, d.build_id) for d in s.scalars(select(Deployment))}

    after = Supervisor(platform.settings.home.resolve())
    try:
        served = deps.restore(platform.db, after)
        with platform.db.session() as s:
            now = {d.id: (d.status, d.build_id, d.reason) for d in s.scalars(select(Deployment))}
        deployed = {d for d, (status, _) in recorded.items() if status == deps.DEPLOYED}
        assert served == len(deployed)
        for dep_id, (status, build) in recorded.items():
            assert after.serving(dep_id) == (build if status == deps.DEPLOYED else None)
            if status == deps.DEPLOYING:
                assert now[dep_id] == (deps.FAILED, build, deps.INTERRUPTED)
            else:
                assert now[dep_id][:2] == (status, build)
        # Its replica starts in the background: the call waits for it.
        assert answered_by(after, moved_key, platform.record, wait=60) == second
    finally:
        after.close()


def test_a_replica_the_system_cannot_start_fails_the_deployment_with_the_reason(
        platform: Platform, supervisor: Supervisor, monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of processes or file descriptors: the deployment is FAILED naming the reason, not
    left DEPLOYING with a 500 (the fault is injected where the supervisor spawns)."""
    import errno

    def no_more_files(*args: object) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(supervisor, "_spawn", no_more_files)
    with pytest.raises(UnavailableError, match="Too many open files"):
        deps.create_deployment(platform.db, supervisor, platform.builds[0])
    with platform.db.session() as s:
        last = s.scalars(select(Deployment).order_by(Deployment.created_at.desc())).first()
    assert last is not None and last.status == deps.FAILED
    assert "a replica could not be started: Too many open files" in last.reason
    assert supervisor.replicas(last.id) == []

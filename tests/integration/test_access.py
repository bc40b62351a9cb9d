"""Access tracking on a real store: reads published as happenings, who may reach a table or a
model now (grants, memberships, admins), model calls from the prediction log, retention, and
the report through the CLI (local mode), the REST route and the SDK (in-process)."""

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from icefloe import happenings
from icefloe.api.app import create_app
from icefloe.auth import keys as api_keys
from icefloe.client import Client
from icefloe.config import Settings
from icefloe.errors import InvalidInputError
from icefloe.governance import access
from icefloe.governance.period import parse_moment, period
from icefloe.happenings import Actor, Dataset, Happening
from icefloe.store import repo
from icefloe.store.db import Database
from icefloe.store.orm import (
    AccessEvent,
    ApiKey,
    Build,
    CallFailure,
    Deployment,
    Membership,
    NamespaceGrant,
    Prediction,
    Project,
    User,
)
from tests.conftest import run_cli
from tests.postgres import home_settings

NOW = datetime.now(UTC)


@pytest.fixture(autouse=True)
def _now() -> None:
    """Each test's "now" is when it starts (not when the module was imported: an earlier
    slow test would push the events it records past the windows it reads)."""
    global NOW
    NOW = datetime.now(UTC)
S1, S2 = 1111, 2222
ALICE = Actor(user="alice", key_id="key-a", run_id="run-1", source="10.0.0.7")
BOB = Actor(user="bob", key_id="key-b", source="10.0.0.8")
ETL = Actor(user="carol", key_id="run/run-9", run_id="run-9")


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    settings.home.mkdir(parents=True, exist_ok=True)
    database = Database(settings.resolved_platform_db_url)
    happenings.install([access.subscriber(settings, database)])  # type: ignore[list-item]
    yield database
    happenings.reset()
    database.dispose()


def loans(snapshot: int | None) -> Dataset:
    return Dataset("lending.loans", snapshot)


def tell_the_story() -> None:
    """Training (START and COMPLETE), a SQL report, an ETL that reads a batch and writes
    the table, a failed training that read S2, a file, and a read long ago."""
    started = Happening("training", "START", "mlflow-1", ALICE, inputs=(loans(S1),))
    happenings.publish(started)
    happenings.publish(Happening("training", "COMPLETE", "mlflow-1", ALICE,
                                 inputs=(loans(S1),)))
    happenings.publish(Happening("sql.report", actor=BOB, inputs=(loans(S1),),
                                 outputs=(Dataset("reports.daily", 5),)))
    happenings.publish(Happening("table.write", actor=ETL,
                                 inputs=(Dataset("staging.batch", 77),
                                         Dataset("/data/batch.csv", kind="file")),
                                 outputs=(loans(S2),)))
    happenings.publish(Happening("training", "FAIL", "mlflow-2", ALICE, inputs=(loans(S2),),
                                 outputs=(Dataset("lending.never", 1),),
                                 subject={"error": "string column"}))
    happenings.publish(Happening("table.read", actor=BOB, inputs=(loans(S1),),
                                 at=NOW - timedelta(days=45)))


def test_reads_show_with_user_run_and_snapshot_counted_once(db: Database) -> None:
    tell_the_story()
    with db.session() as s:
        # 2 training reads (START skipped), 1 report read + its output, ETL: 1 read (not the
        # file) + 1 change, the failed training's read (no change), the old read.
        assert s.scalar(select(func.count()).select_from(AccessEvent)) == 7
        got = access.report(s, "lending.loans", NOW - timedelta(days=30),
                            NOW + timedelta(seconds=5))
    readers = {r["user"]: r for r in got["readers"]}
    assert set(readers) == {"alice", "bob"}
    alice = readers["alice"]
    assert alice["reads"] == 2  # COMPLETE and the failed attempt; not START
    assert alice["via"] == ["training"] and alice["snapshot_ids"] == [S1, S2]
    assert alice["run_ids"] == ["run-1"] and alice["sources"] == ["10.0.0.7"]
    assert alice["key_ids"] == ["key-a"] and alice["first"] <= alice["last"]
    bob = readers["bob"]
    assert bob["reads"] == 1 and bob["via"] == ["sql.report"] and bob["run_ids"] == []
    [change] = got["changes"]
    assert (change["user"], change["action"], change["snapshot_id"], change["run_id"]) == \
        ("carol", "table.write", S2, "run-9")
    with db.session() as s:
        later = datetime.now(UTC) + timedelta(seconds=1)
        longer = access.report(s, "lending.loans", NOW - timedelta(days=60), later)
        staging = access.report(s, "staging.batch", NOW - timedelta(days=1), later)
        never = access.report(s, "lending.never", NOW - timedelta(days=1), later)
    assert {r["user"]: r["reads"] for r in longer["readers"]} == {"alice": 2, "bob": 2}
    [etl] = staging["readers"]
    assert (etl["user"], etl["via"], etl["run_ids"]) == ("carol", ["table.write"], ["run-9"])
    assert never["changes"] == []  # a failed run committed nothing



def test_how_a_table_was_read_and_a_rollback(db: Database) -> None:
    dan = Actor(user="dan")
    happenings.publish(Happening("table.read", actor=dan, inputs=(loans(S1),),
                                 subject={"via": "reproduce"}))
    happenings.publish(Happening("table.rollback", actor=dan, inputs=(loans(S2),),
                                 outputs=(loans(S1),)))
    with db.session() as s:
        got = access.report(s, "lending.loans", NOW - timedelta(days=1),
                            datetime.now(UTC) + timedelta(seconds=1))
    [reader] = got["readers"]  # the rollback read no data: a change only
    assert (reader["user"], reader["reads"], reader["via"]) == \
        ("dan", 1, ["table.read:reproduce"])
    assert [(c["action"], c["snapshot_id"]) for c in got["changes"]] == \
        [("table.rollback", S1)]

def test_access_now_follows_grants_memberships_and_admins(db: Database) -> None:
    with db.session() as s:
        users = {name: User(id=f"u-{name}", name=name, role=role, created_at=NOW)
                 for name, role in (("root", "admin"), ("alice", "user"), ("bob", "user"),
                                    ("carol", "user"), ("dave", "user"), ("erin", "user"))}
        s.add_all(users.values())
        s.flush()
        # root's admin key is live; erin's admin role is not (every admin key revoked).
        users["erin"].role = "admin"
        s.add_all([ApiKey(id=f"k-{u}", prefix=f"p{u}", secret_hash="h", salt="s",
                          user_id=f"u-{u}", role="admin", revoked=revoked, created_at=NOW)
                   for u, revoked in (("root", False), ("erin", True))])
        for pid in ("risk", "bi", "other"):
            s.add(Project(id=f"p-{pid}", name=pid, path=pid, created_at=NOW, updated_at=NOW))
        s.flush()
        s.add_all([NamespaceGrant(namespace="lending", project_id="p-risk", access="write",
                                  created_at=NOW),
                   NamespaceGrant(namespace="*", project_id="p-bi", access="read",
                                  created_at=NOW),
                   NamespaceGrant(namespace="marketing", project_id="p-other",
                                  access="write", created_at=NOW)])
        s.add_all([Membership(project_id=p, user_id=f"u-{u}", role=r, created_at=NOW)
                   for p, u, r in (("p-risk", "alice", "owner"), ("p-risk", "bob", "viewer"),
                                   ("p-bi", "carol", "editor"), ("p-bi", "alice", "viewer"),
                                   ("p-other", "dave", "owner"))])
    with db.session() as s:
        now = access.report(s, "lending.loans", NOW - timedelta(days=1), NOW)["access"]
    by_user = {r["user"]: r for r in now}
    assert set(by_user) == {"root", "alice", "bob", "carol"}  # dave: another namespace
    assert (by_user["root"]["access"], by_user["root"]["admin"]) == ("write", True)
    assert by_user["alice"]["access"] == "write"  # owner where the grant is write
    assert [(p["project"], p["access"]) for p in by_user["alice"]["projects"]] == \
        [("bi", "read"), ("risk", "write")]
    assert by_user["bob"]["access"] == "read"  # a viewer of a write-granted project
    assert by_user["carol"]["access"] == "read"  # an editor, but the grant (*) is read
    assert by_user["carol"]["projects"][0]["namespace"] == "*"


def test_model_calls_come_from_the_prediction_log(db: Database) -> None:
    ms = int(NOW.timestamp() * 1000)
    with db.session() as s:
        s.add_all([User(id="u-a", name="alice", role="user", created_at=NOW),
                   User(id="u-v", name="vic", role="user", created_at=NOW),
                   Project(id="p-1", name="risk", path="risk", created_at=NOW,
                           updated_at=NOW)])
        s.flush()
        s.add_all([Membership(project_id="p-1", user_id="u-a", role="editor", created_at=NOW),
                   Membership(project_id="p-1", user_id="u-v", role="viewer", created_at=NOW),
                   Build(id="b-1", model_name="loans", model_version=1, status="ready",
                         created_at=NOW, project_id="p-1")])
        s.flush()
        s.add_all([Deployment(id="dep-1", build_id="b-1", model_name="loans", model_version=1,
                              access_key_hash="h", status="running", created_at=NOW,
                              updated_at=NOW, project_id="p-1")])
        s.add_all([Prediction(uuid=f"u{i}", deployment_id="dep-1", build_id="b-1",
                              model_name="loans", model_version=1, timestamp_ms=ms - i * 1000,
                              caller=caller, inputs={}, outputs={}, latency_ms=1.0)
                   for i, caller in enumerate(["alice", "alice (run/r-7)", "vic", "vic"])])
        s.add(CallFailure(deployment_id="dep-1", minute_ms=ms - 60_000, status=422, count=3))
        repo.audit(s, "alice", "deployment.redeploy", "deployment/dep-1", "ok")
    since, until = NOW - timedelta(hours=1), NOW + timedelta(seconds=5)
    with db.session() as s:
        dep = access.report(s, "deployment:dep-1", since, until)
        model = access.report(s, "model:loans", since, until)
    calls = {r["user"]: r for r in dep["callers"]}
    assert calls["alice"]["calls"] == 2 and calls["alice"]["run_ids"] == ["r-7"]
    assert calls["vic"]["calls"] == 2 and calls["vic"]["deployments"] == ["dep-1"]
    assert dep["failed_calls"] == 3
    assert {r["user"]: r["access"] for r in dep["access"]} == {"alice": "write", "vic": "read"}
    assert [(c["user"], c["action"]) for c in dep["changes"]] == \
        [("alice", "deployment.redeploy")]
    assert model["callers"] == dep["callers"] and model["access"] == dep["access"]


def test_retention_deletes_old_events_only(db: Database, settings: Settings) -> None:
    def event(days: int) -> AccessEvent:
        return AccessEvent(at=NOW - timedelta(days=days), user="u", action="read",
                           resource="table:a.b", via="table.read")

    with db.session() as s:
        s.add_all([event(500), event(401), event(399), event(1)])
    with db.session() as s:
        assert access.prune(s, NOW, 0) == 0  # 0 keeps everything
        assert access.prune(s, NOW) == 2  # the default policy: 400 days
    with db.session() as s:
        kept = sorted((NOW - e.at.replace(tzinfo=UTC)).days
                      for e in s.scalars(select(AccessEvent)))
    assert kept == [1, 399]
    assert settings.access_retention_days == 400
    with db.session() as s:
        s.add(event(900))
    assert access.prune_due(db, settings) == 1  # what the control plane's schedule calls
    with db.session() as s:
        s.add(event(900))
    assert access.prune_due(db, settings) == 0  # done within the hour: not again yet


def test_periods_and_names_are_checked() -> None:
    assert parse_moment("7d", "--since", NOW) == NOW - timedelta(days=7)
    assert parse_moment("2026-11-01", "since", NOW) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_moment("2026-11-01T12:00:00+02:00", "since", NOW).hour == 10
    start, end = period(None, None, NOW)
    assert (end - start, end) == (timedelta(days=30), NOW)
    for since, until, named in (("yesterday", None, "--since"), (None, "soon", "--until"),
                                ("1d", "2d", "--since"), ("99999999w", None, "--since")):
        with pytest.raises(InvalidInputError, match=named):
            period(since, until, NOW, names=("--since", "--until"))
    for bad in ("lending", "a.b.c", "deployment:../x", "other:thing", "model:"):
        with pytest.raises(InvalidInputError):
            access.parse_resource(bad)


def test_the_cli_reports_on_a_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = home_settings(home)
    run_cli(["init", "--json"], home, check=True)
    database = Database(settings.resolved_platform_db_url)
    happenings.install([access.subscriber(settings, database)])  # type: ignore[list-item]
    try:
        tell_the_story()
    finally:
        happenings.reset()
        database.dispose()
    local = {"ICEFLOE_URL": ""}  # no control plane: the home's platform DB answers
    proc = run_cli(["access", "lending.loans", "--json"], home, env=local, check=True)
    got = json.loads(proc.stdout)
    assert {r["user"]: r["reads"] for r in got["readers"]} == {"alice": 2, "bob": 1}
    assert [r["user"] for r in got["access"]] == ["admin"]  # `icefloe init`'s admin
    assert got["retention_days"] == 400
    proc = run_cli(["access", "lending.loans", "--since", "60d", "--until", "now"], home,
                   env=local, check=True)
    assert "access now to table:lending.loans" in proc.stdout
    assert "reads of table:lending.loans" in proc.stdout and "sql.report" in proc.stdout
    assert "changes of table:lending.loans" in proc.stdout
    bad = run_cli(["access", "lending.loans", "--since", "yesterday"], home, env=local)
    assert bad.returncode == 2 and "--since" in bad.stderr and not bad.stdout
    bad = run_cli(["access", "lending", "--json"], home, env=local)
    assert bad.returncode == 2 and "lending" in bad.stderr


def test_the_route_and_the_sdk(settings: Settings) -> None:
    app = create_app(settings, start_runner=False)
    with app.state.db.session() as s:
        _, key = api_keys.create_api_key(s, "admin", "admin")
    happenings.install([access.subscriber(settings, app.state.db)])  # type: ignore[list-item]
    try:
        tell_the_story()
    finally:
        happenings.reset()
    auth = {"Authorization": f"Bearer {key}"}

    async def probe() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t",
                                     headers=auth) as client:
            return [await client.get("/api/v2/access/tables/lending.loans?since=7d"),
                    await client.get("/api/v2/access/tables/lending.loans",
                                     params={"since": "soon"}),
                    await client.get("/api/v2/access/tables/lending"),
                    await client.get("/api/v2/access/deployments/dep-x",
                                     params={"until": "now"}),
                    await client.get("/api/v2/access/models/loans"),
                    await client.get("/api/v2/access/tables/lending.loans",
                                     headers={"Authorization": "Bearer nope"})]

    ok, bad_since, bad_table, dep, model, unknown_key = asyncio.run(probe())
    assert ok.status_code == 200, ok.text
    assert {r["user"] for r in ok.json()["readers"]} == {"alice", "bob"}
    assert bad_since.status_code == 422 and "since" in bad_since.json()["error"]["message"]
    assert bad_table.status_code == 422
    assert bad_table.json()["error"]["type"] == "InvalidNameError"
    assert dep.status_code == 200 and dep.json()["callers"] == []
    assert model.status_code == 200 and model.json()["kind"] == "model"
    assert unknown_key.status_code == 401
    with Client("http://t", key) as sdk:
        sdk._http.close()  # the SDK over the app in this process, not a socket
        sdk._http = httpx.Client(transport=InProcess(app), base_url="http://t/api/v2",
                                 headers=auth)
        report = sdk.table_access("lending.loans", since="60d")
        assert {r["user"]: r["reads"] for r in report["readers"]} == {"alice": 2, "bob": 2}
        assert sdk.deployment_access("dep-x")["failed_calls"] == 0
        assert sdk.model_access("loans")["resource"] == "model:loans"
        with pytest.raises(InvalidInputError, match="until"):
            sdk.table_access("lending.loans", until="later")


class InProcess(httpx.BaseTransport):
    """A synchronous transport (what the SDK uses) over an ASGI app in this process."""

    def __init__(self, app: object) -> None:
        self.inner = httpx.ASGITransport(app=app)  # type: ignore[arg-type]

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def forward() -> httpx.Response:
            answer = await self.inner.handle_async_request(request)
            return httpx.Response(answer.status_code, headers=answer.headers,
                                  content=await answer.aread())

        return asyncio.run(forward())


def test_a_sql_read_through_the_api_is_tracked(settings: Settings) -> None:
    """The real chain: POST /api/v2/sql publishes its read, the control plane's own
    subscribers (installed by the app) record it, the route reports it."""
    import pyarrow as pa

    from icefloe.lakehouse import Lakehouse

    app = create_app(settings, start_runner=False)
    with app.state.db.session() as s:
        row, key = api_keys.create_api_key(s, "ann", "admin")
    lh = Lakehouse(settings)
    lh.create_namespace("lending")
    written = lh.write("lending.loans", pa.table({"annual_inc": [1.0, 2.0]}), mode="create")
    auth = {"Authorization": f"Bearer {key}"}

    async def probe() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t",
                                     headers=auth) as client:
            sql = await client.post("/api/v2/sql",
                                    json={"sql": "SELECT count(*) AS n FROM lending.loans"})
            assert sql.status_code == 200, sql.text
            return await client.get("/api/v2/access/tables/lending.loans",
                                    params={"since": "1h"})

    try:
        got = asyncio.run(probe())
    finally:
        happenings.reset()
    assert got.status_code == 200, got.text
    [reader] = got.json()["readers"]
    assert (reader["user"], reader["reads"], reader["key_ids"]) == ("ann", 1, [row.id])
    assert reader["snapshot_ids"] == [written.snapshot.snapshot_id]
    assert reader["via"] == ["table.read:api"]
    assert [(c["action"], c["snapshot_id"]) for c in got.json()["changes"]] == \
        [("table.write", written.snapshot.snapshot_id)]


def test_reading_rows_with_table_show_is_tracked(tmp_path: Path) -> None:
    home = tmp_path / "home"
    data = tmp_path / "loans.csv"
    data.write_text("id,annual_inc\n1,50000\n2,72000\n")
    local = {"ICEFLOE_URL": ""}
    run_cli(["init"], home, check=True)  # the platform DB the home records into
    run_cli(["table", "load", "lending.loans", str(data)], home, env=local, check=True)
    run_cli(["table", "show", "lending.loans", "--limit", "1"], home, env=local, check=True)
    got = json.loads(run_cli(["access", "lending.loans", "--json"], home, env=local,
                             check=True).stdout)
    (reader,) = got["readers"]
    assert reader["user"].startswith("local:") and reader["via"] == ["table.read:show"]
    assert [c["action"] for c in got["changes"]] == ["table.write:load"]

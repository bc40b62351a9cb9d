"""One store suite for every backend (SQLite and Postgres)."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, select

from icefloe.auth import keys as api_keys
from icefloe.errors import ConflictError, InvalidInputError, NotFoundError
from icefloe.jobs import states
from icefloe.store import repo
from icefloe.store.db import Database, migrate
from icefloe.store.orm import Build, Project


def test_migrations_create_the_tables_and_are_idempotent(db: Database) -> None:
    tables = set(inspect(db.engine).get_table_names())
    assert {"projects", "jobs", "runs", "users", "api_keys", "audit_events",
            "alembic_version"} <= tables
    migrate(db.engine)  # a second start changes nothing


def test_projects_unique_paged_and_validated(db: Database) -> None:
    with db.session() as s:
        for i in range(5):
            repo.create_project(s, f"proj-{i}", f"/p/{i}")
    with db.session() as s, pytest.raises(ConflictError, match="'proj-1' already exists"):
        repo.create_project(s, "proj-1", "/x")
    with db.session() as s:
        first, token = repo.list_projects(s, page_size=2)
        second, token2 = repo.list_projects(s, page_size=2, page_token=token)
        third, token3 = repo.list_projects(s, page_size=2, page_token=token2)
        assert [p.name for p in first + second + third] == [f"proj-{i}" for i in range(5)]
        assert token3 == ""
        assert [p.name for p in repo.list_projects(s, search="-3")[0]] == ["proj-3"]
        for bad in ("", "../x", "a/b", "x" * 300):
            with pytest.raises(InvalidInputError):
                repo.create_project(s, bad, "/x")
        with pytest.raises(InvalidInputError, match="page_token"):
            repo.list_projects(s, page_token="!!")


def test_projects_are_deleted_with_their_jobs_unless_a_run_is_active(db: Database) -> None:
    with db.session() as s:
        p = repo.create_project(s, "gone", "/p")
        job = repo.create_job(s, p.id, {"name": "A", "script": "a.py"})
        run = repo.create_run(s, job, "api", "t", run_as="t")
        pid, jid, rid = p.id, job.id, run.id
    with db.session() as s, pytest.raises(ConflictError, match="1 active run"):
        repo.delete_project(s, pid)
    with db.session() as s:
        repo.move_run(s, rid, states.STOPPED, reason="test")
    with db.session() as s:
        repo.delete_project(s, pid)
    with db.session() as s:
        with pytest.raises(NotFoundError):
            repo.get_project(s, pid)
        with pytest.raises(NotFoundError):
            repo.get_job(s, pid, jid)


def test_jobs_fields_parents_and_cycles(db: Database) -> None:
    with db.session() as s:
        p = repo.create_project(s, "demo", "/p")
        a = repo.create_job(s, p.id, {"name": "A", "script": "a.py", "timeout": 5,
                                      "environment": {"X": "1"}, "arguments": "--n 1"})
        b = repo.create_job(s, p.id, {"name": "B", "script": "jobs/b.py", "parent_job_id": a.id})
        c = repo.create_job(s, p.id, {"name": "C", "script": "c.py", "parent_job_id": b.id})
        pid, aid, cid = p.id, a.id, c.id
    with db.session() as s:
        assert [j.name for j in repo.child_jobs(s, repo.get_job(s, pid, aid))] == ["B"]
        with pytest.raises(ConflictError, match="cycle"):
            repo.update_job(s, pid, aid, {"parent_job_id": cid})
    with db.session() as s:
        assert repo.get_job(s, pid, aid).parent_job_id is None  # the refused update left nothing
        for fields, fragment in [
            ({"name": "D", "script": "/etc/passwd"}, "relative path"),
            ({"name": "D", "script": "../x.py"}, "relative path"),
            ({"name": "D", "script": "d.py", "timeout": -1}, "'timeout'"),
            ({"name": "D", "script": "d.py", "schedule": "every day"}, "cron"),
            ({"name": "D", "script": "d.py", "environment": {"1X": "y"}}, "environment"),
            ({"name": "D", "script": "d.py", "kernel": "r"}, "kernel"),
            ({"name": "D", "script": "d.py", "colour": "red"}, "colour"),
            ({"script": "d.py"}, "'name' is required"),
        ]:
            with pytest.raises(InvalidInputError, match=fragment):
                repo.create_job(s, pid, fields)
        with pytest.raises(NotFoundError, match="parent job"):
            repo.create_job(s, pid, {"name": "D", "script": "d.py", "parent_job_id": "nope"})
        with pytest.raises(ConflictError, match="'A' already exists"):
            repo.create_job(s, pid, {"name": "A", "script": "a.py"})
        job = repo.update_job(s, pid, cid, {"schedule": "*/5 * * * *"})
        assert job.schedule == "*/5 * * * *"
        assert repo.get_job(s, pid, aid).environment == {"X": "1"}


def test_run_state_machine_and_locking(db: Database) -> None:
    with db.session() as s:
        p = repo.create_project(s, "demo", "/p")
        job = repo.create_job(s, p.id, {"name": "A", "script": "a.py"})
        run = repo.create_run(s, job, "api", "alice")
        pid, jid, rid = p.id, job.id, run.id
    with db.session() as s:
        assert repo.move_run(s, rid, states.STARTING) is not None
        assert repo.move_run(s, rid, states.RUNNING, pid=123) is not None
    with db.session() as s:
        assert repo.move_run(s, rid, states.SUCCEEDED, exit_code=0) is not None
    with db.session() as s:
        # a terminal run never moves again (a stop racing a normal exit loses)
        assert repo.move_run(s, rid, states.STOPPED) is None
        run = repo.get_run(s, pid, jid, rid)
        assert run.status == states.SUCCEEDED and run.exit_code == 0
        assert run.started_at is not None and run.ended_at is not None
    with pytest.raises(ConflictError, match="active run"), db.session() as s:
        repo.create_run(s, repo.get_job(s, pid, jid), "api", "bob")
        repo.delete_job(s, pid, jid)
    with db.session() as s:
        runs, _ = repo.list_runs(s, pid, jid)
        assert [r.id for r in runs] == [rid]  # the rolled-back run is gone


def test_api_keys_hashed_verified_and_revoked(db: Database) -> None:
    with db.session() as s:
        key, secret = api_keys.create_api_key(s, "alice", "admin")
        _, viewer_secret = api_keys.create_api_key(s, "victor", "viewer")
        key_id = key.id
        assert secret not in (key.secret_hash, key.salt) and secret.startswith("ifk_")
    with db.session() as s:
        who = api_keys.verify(s, secret)
        assert who is not None and (who.user, who.role) == ("alice", "admin")
        assert api_keys.verify(s, viewer_secret).role == "viewer"
        assert api_keys.verify(s, secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
        assert api_keys.verify(s, "nonsense") is None
        api_keys.revoke_api_key(s, key_id)
    with db.session() as s:
        assert api_keys.verify(s, secret) is None
        assert [k["revoked"] for k in api_keys.list_api_keys(s)] == [True, False]
        with pytest.raises(InvalidInputError, match="role"):
            api_keys.create_api_key(s, "eve", "root")


def test_audit_events_newest_first(db: Database) -> None:
    with db.session() as s:
        repo.audit(s, "alice", "job.create", "project/demo/job/A", "ok")
        repo.audit(s, "bob", "run.create", "project/demo/job/A", "denied", "viewer")
    with db.session() as s:
        events, _ = repo.list_audit(s)
        assert [(e.actor, e.outcome) for e in events] == [("bob", "denied"), ("alice", "ok")]
        assert events[0].at is not None


def test_prediction_log_ground_truth_and_aggregates(db: Database) -> None:
    import json
    import threading

    from icefloe.serving.predictions import (
        PredictionLog,
        read_metrics,
        track_aggregate_metrics,
        track_delayed_metrics,
    )
    from icefloe.store.orm import Build, Deployment

    with db.session() as s:
        s.add(Build(id="b1", model_name="m", model_version=1, status="BUILD_READY",
                    created_at=repo.now()))
        s.add(Deployment(id="d1", build_id="b1", model_name="m", model_version=1,
                         access_key_hash="h", status="DEPLOYED", created_at=repo.now(),
                         updated_at=repo.now()))
    log = PredictionLog(db, flush_interval=0.01)

    def call(worker: int) -> None:
        for i in range(300):
            log.record((f"u{worker}-{i}", "d1", "b1", "m", 1, 1000 + i, f"w{worker}",
                        json.dumps({"x": i}), json.dumps({"probability": 0.5}),
                        0.3, json.dumps({"unseen_categories": ["c"]} if i == 0 else {})))

    workers = [threading.Thread(target=call, args=(w,)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    log.audit({"actor": "anonymous", "action": "model.call.refused",
               "target": "source/10.0.0.1", "outcome": "denied", "detail": "3 refused"})
    log.flush()
    assert log.queued() == 0
    track_delayed_metrics(db, "u2-7", {"final_label": 1})
    with pytest.raises(ConflictError, match="final_label"):
        track_delayed_metrics(db, "u2-7", {"final_label": 0})
    with pytest.raises(NotFoundError):
        track_delayed_metrics(db, "nope", {"final_label": 0})
    track_aggregate_metrics(db, {"accuracy": 0.9}, 1000, 1100, "d1", "ann")
    with pytest.raises(NotFoundError):
        track_aggregate_metrics(db, {"accuracy": 0.9}, 1000, 1100, "d9")
    log.close()

    rows = read_metrics(db, "d1", 0, 10_000)["metrics"]
    assert len(rows) == 1201 and rows[-1]["metrics"] == {"accuracy": 0.9}
    by_uuid = {r["predictionUuid"]: r for r in rows}
    assert by_uuid["u2-7"]["metrics"] == {"input": {"x": 7}, "output": {"probability": 0.5},
                                          "final_label": 1}
    assert by_uuid["u3-0"]["metrics"]["unseen_categories"] == ["c"]
    assert by_uuid["u3-0"]["caller"] == "w3"
    with db.session() as s:
        denied = [e for e in repo.list_audit(s)[0] if e.action == "model.call.refused"]
        assert [(e.target, e.outcome) for e in denied] == [("source/10.0.0.1", "denied")]


def _alembic(db: Database, action: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    from icefloe.store.db import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, action)(cfg, revision)


def test_an_install_from_before_projects_had_members_keeps_working(db: Database) -> None:
    """Migration 0008 on a used install: admin keys make admins, other key holders become
    members of every project, old builds and deployments land in the default project."""
    from sqlalchemy import text

    _alembic(db, "downgrade", "0007")
    now = datetime.now(UTC)
    rows = {
        "users": [("u1", "root", "admin"), ("u2", "ed", "editor"), ("u3", "vi", "editor")],
        "keys": [("k1", "u1", "admin"), ("k2", "u2", "editor"), ("k3", "u3", "viewer")],
    }
    with db.engine.begin() as conn:
        for uid, name, role in rows["users"]:
            conn.execute(text("INSERT INTO users (id, name, role, created_at) "
                              "VALUES (:i, :n, :r, :t)"), {"i": uid, "n": name, "r": role,
                                                           "t": now})
        for kid, uid, role in rows["keys"]:
            conn.execute(text("INSERT INTO api_keys (id, prefix, secret_hash, salt, user_id, "
                              "role, revoked, created_at) VALUES (:i, :p, 'h', 's', :u, :r, "
                              ":f, :t)"), {"i": kid, "p": f"p{kid}", "u": uid, "r": role,
                                           "f": False, "t": now})
        conn.execute(text("INSERT INTO projects (id, name, description, path, created_at, "
                          "updated_at) VALUES ('p1', 'ml', '', '/x', :t, :t)"), {"t": now})
        conn.execute(text("INSERT INTO builds (id, model_name, model_version, status, reason, "
                          "path, checksum, input_schema, created_by, created_at) VALUES "
                          "('b1', 'm', 1, 'BUILD_READY', '', '', '', '{}', 'root', :t)"),
                     {"t": now})
    _alembic(db, "upgrade", "head")
    with db.session() as s:
        default = s.scalar(select(Project).where(Project.name == "default"))
        assert default is not None
        assert s.get(Build, "b1").project_id == default.id
        roles = {name: role for name, role in s.execute(text("SELECT name, role FROM users"))}
        assert roles == {"root": "admin", "ed": "user", "vi": "user"}
        members = set(s.execute(text("SELECT user_id, project_id, role FROM memberships")))
        assert members == {("u2", "p1", "editor"), ("u2", default.id, "editor"),
                           ("u3", "p1", "viewer"), ("u3", default.id, "viewer")}
        grants = list(s.execute(text("SELECT namespace, project_id, access "
                                     "FROM namespace_grants")))
        assert grants == [("*", default.id, "write")]
        # What the holders can do follows: run tokens and checks see these roles.
        assert api_keys.user_role(s, "root", "p1") == "admin"
        assert api_keys.user_role(s, "ed", default.id) == "editor"
        assert api_keys.user_role(s, "vi", "p1") == "viewer"


def test_a_run_token_loses_change_rights_when_its_trigger_leaves_the_project(
        db: Database) -> None:
    from icefloe.governance import membership

    with db.session() as s:
        api_keys.create_api_key(s, "ana", "editor")
        api_keys.create_api_key(s, "bo", "editor")
        project = repo.create_project(s, "p", "/tmp/p")
        membership.set_member(s, project.id, "ana", "owner")
        membership.set_member(s, project.id, "bo", "owner")
        job = repo.create_job(s, project.id, {"name": "j", "script": "j.py"})
        run = repo.create_run(s, job, "api", "ana", run_as="ana")
        token = api_keys.issue_run_token(s, run, 60)
    with db.session() as s:
        acting = api_keys.verify(s, token)
        assert acting is not None and acting.may_change(project.id)
        membership.set_member(s, project.id, "ana", "viewer")  # while the run goes on
    with db.session() as s:
        acting = api_keys.verify(s, token)
        assert acting is not None and acting.reaches(project.id)
        assert not acting.may_change(project.id)

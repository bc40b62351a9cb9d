"""Web UI sessions, one-time sign-in codes, monitoring points and audit filters on every
backend."""

from datetime import timedelta

from icefloe.auth import keys, sessions
from icefloe.monitoring import points
from icefloe.store import repo
from icefloe.store.db import Database
from icefloe.store.orm import UiSession


def test_a_session_acts_as_its_key_until_it_ends(db: Database) -> None:
    with db.session() as s:
        key, _ = keys.create_api_key(s, "ann", "editor")
        cookie, _ = sessions.open_session(s, key.id)
        kept = s.get(UiSession, cookie.split("_")[1])
        assert kept is not None and cookie.split("_", 2)[2] not in kept.secret_hash
    with db.session() as s:
        who = sessions.verify_session(s, cookie)
        assert who is not None and (who.user, who.role, who.key_id) == ("ann", "editor", key.id)
        assert who.short_lived  # never trusted stale by a cache
        assert sessions.verify_session(s, cookie[:-1] + "x") is None
        assert sessions.verify_session(s, "ifk_" + cookie[4:]) is None
    with db.session() as s:
        assert sessions.close_session(s, cookie)
    with db.session() as s:
        assert sessions.verify_session(s, cookie) is None
        assert not sessions.close_session(s, cookie)


def test_a_session_ends_with_its_key_or_its_time(db: Database) -> None:
    with db.session() as s:
        key, _ = keys.create_api_key(s, "ann", "viewer")
        live, _ = sessions.open_session(s, key.id)
        old, _ = sessions.open_session(s, key.id, life=timedelta(seconds=-1))
    with db.session() as s:
        assert sessions.verify_session(s, old) is None
        assert sessions.verify_session(s, live) is not None
        keys.revoke_api_key(s, key.id)
    with db.session() as s:
        assert sessions.verify_session(s, live) is None


def test_csrf_tokens_belong_to_one_session() -> None:
    a, b = "ifs_000000000001_aaaa", "ifs_000000000002_bbbb"
    assert sessions.csrf_matches(a, sessions.csrf_token(a))
    assert not sessions.csrf_matches(a, sessions.csrf_token(b))
    assert not sessions.csrf_matches(a, "") and not sessions.csrf_matches(a, "é" * 64)


def test_a_sign_in_code_works_once(db: Database) -> None:
    with db.session() as s:
        key, _ = keys.create_api_key(s, "raj", "viewer")
        code = sessions.issue_sign_in_code(s, key.id)
        late = sessions.issue_sign_in_code(s, key.id, life=timedelta(seconds=-1))
    with db.session() as s:
        assert sessions.redeem_sign_in_code(s, late) is None
        assert sessions.redeem_sign_in_code(s, code) == key.id
    with db.session() as s:
        assert sessions.redeem_sign_in_code(s, code) is None


def test_points_come_back_by_figure_oldest_first(db: Database) -> None:
    for at, accuracy in ((1000, 0.9), (2000, 0.5), (3000, None)):
        points.record(db, {"deployment": "d1", "end_ms": at, "window": "1h",
                           "model_version": 2, "figures": [
                               {"metric": "accuracy", "feature": "", "value": accuracy,
                                "samples": 10},
                               {"metric": "psi", "feature": "dti", "value": 0.2,
                                "samples": 10}]})
    found = points.series(db, "d1")
    assert found[("accuracy", "")] == [(1000, 0.9, 10), (2000, 0.5, 10), (3000, None, 10)]
    assert len(found[("psi", "dti")]) == 3
    assert points.series(db, "d1", limit=1)[("accuracy", "")] == [(3000, None, 10)]
    assert points.series(db, "other") == {}
    assert points.prune(db, 2500) == 4 and len(points.series(db, "d1")) == 2


def test_audit_filters_by_person_key_resource_and_action(db: Database) -> None:
    with db.session() as s:
        repo.audit(s, "ann", "run.create", "run/1", "ok", key_id="k1")
        repo.audit(s, "ann", "table.rollback", "table/lending.loans", "ok", key_id="k1")
        repo.audit(s, "bob", "run.stop", "run/1", "ok", key_id="k2")
        repo.audit(s, "bob", "run_x", "table/lending_x", "ok", key_id="k2")

    def actions(**where: str) -> list[str]:
        with db.session() as s:
            rows, _ = repo.list_audit(s, where=repo.AuditFilter(**where))
            return [e.action for e in rows]

    assert actions(actor="ann") == ["table.rollback", "run.create"]
    assert actions(key_id="k2") == ["run_x", "run.stop"]
    assert actions(action="run.") == ["run.stop", "run.create"]  # a prefix, "_" literal
    assert actions(target="table/lending.") == ["table.rollback"]
    assert actions(actor="bob", action="run.s") == ["run.stop"]

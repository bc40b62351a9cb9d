"""The web UI in-process: sign-in sessions, CSRF, roles exactly as on the API, escaping,
audit filters, paged logs. (The real browser walks the demo in tests/e2e/test_ui_browser.py.)"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pyarrow as pa
import pytest
from sqlalchemy import select

from icefloe.config import Settings
from icefloe.happenings import Actor
from icefloe.lakehouse import Lakehouse
from icefloe.store import repo
from icefloe.store.orm import AuditEvent, Run
from tests.people import member_of

T = "shop.orders"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


class Tab:
    """A browser tab in-process: one cookie jar, one event loop, no redirects followed."""

    def __init__(self, app: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                        base_url="http://127.0.0.1")
        self.cookies = self.client.cookies

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.client.request(method, path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)


@dataclass
class Ui:
    app: Any
    keys: dict[str, str]
    key_ids: dict[str, str]
    project_id: str
    job_id: str

    def browser(self) -> Tab:
        """A client that keeps cookies, like a browser tab."""
        return Tab(self.app)

    def signed_in(self, who: str) -> Tab:
        tab = self.browser()
        r = tab.post("/ui/signin", data={"secret": self.keys[who], "next": "/ui/"},
                     headers={"origin": "http://127.0.0.1"})
        assert r.status_code == 303 and r.headers["location"] == "/ui/", r.text
        return tab

    def audit(self, action: str) -> list[AuditEvent]:
        with self.app.state.db.session() as s:
            rows = list(s.scalars(select(AuditEvent).where(AuditEvent.action == action)))
            s.expunge_all()
            return rows


def csrf_of(page: str) -> str:
    found = CSRF.search(page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


@pytest.fixture
def ui(settings: Settings, lakehouse: Lakehouse, tmp_path: Any) -> Iterator[Ui]:
    from icefloe.api.app import create_app
    from icefloe.auth import keys

    lakehouse.write(T, pa.table({"cust": [1, 2], "amt": [5.0, 7.0]}), "create",
                    actor=Actor("ann"))
    lakehouse.write(T, pa.table({"cust": [3], "amt": [1.0], "coupon": ["x"]}), evolve=True,
                    actor=Actor("ann"))
    lakehouse.write("shop.odd", pa.table({"<script>alert(1)</script>": [1]}), "create")
    app = create_app(settings, start_runner=False)
    made, ids = {}, {}
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "hello.py").write_text("print('hello')\n")
    with app.state.db.session() as s:
        for who, role in (("admin", "admin"), ("ann", "editor"), ("vic", "viewer")):
            row, made[who] = keys.create_api_key(s, who, role)
            ids[who] = row.id
        project = member_of(s, "ann", namespaces={"shop": "write"}, path=str(folder))
        member_of(s, "vic", role="viewer")
        job_id = repo.create_job(s, project.id, {"name": "hello", "script": "hello.py"},
                                 created_by="ann").id
        project_id = project.id
    try:
        yield Ui(app, made, ids, project_id, job_id)
    finally:
        app.state.supervisor.close()
        app.state.prediction_log.close()


def test_pages_need_a_session_and_sign_in_opens_one(ui: Ui) -> None:
    tab = ui.browser()
    r = tab.get("/ui/tables")
    assert r.status_code == 303 and r.headers["location"] == "/ui/signin?next=%2Fui%2Ftables"
    assert tab.get("/").headers["location"] == "/ui/"
    # A wrong key, a run-token-shaped secret and an empty one are one refusal.
    for secret in ("ifk_000000000000_nope", "ifr_000000000000_nope", "x"):
        bad = tab.post("/ui/signin", data={"secret": secret})
        assert bad.status_code == 401 and "not valid" in bad.text
    r = tab.post("/ui/signin", data={"secret": ui.keys["ann"], "next": "/ui/tables"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/tables"
    cookie = r.headers["set-cookie"]
    assert "icefloe_session=ifs_" in cookie and "HttpOnly" in cookie
    assert "SameSite=strict" in cookie and "Secure" not in cookie  # plain http here
    page = tab.get("/ui/tables")
    assert page.status_code == 200 and T in page.text and "ann (editor key)" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["cache-control"] == "no-store"
    assert ui.audit("session.open")[-1].key_id == ui.key_ids["ann"]


def test_sign_in_goes_only_to_this_ui_and_refuses_other_sites_forms(ui: Ui) -> None:
    tab = ui.browser()
    for target in ("//evil.example/x", "https://evil.example/ui/", "/api/v2/keys"):
        r = tab.post("/ui/signin", data={"secret": ui.keys["ann"], "next": target})
        assert r.headers["location"] == "/ui/"
    forged = tab.post("/ui/signin", data={"secret": ui.keys["ann"]},
                      headers={"origin": "https://evil.example"})
    assert forged.status_code == 403 and "set-cookie" not in forged.headers


def test_a_session_ends_with_sign_out_and_with_its_key(ui: Ui) -> None:
    tab = ui.signed_in("ann")
    cookie = tab.cookies.get("icefloe_session")
    token = csrf_of(tab.get("/ui/").text)
    out = tab.post("/ui/signout", data={"csrf": token})
    assert out.status_code == 303 and out.headers["location"] == "/ui/signin"
    stolen = ui.browser()
    stolen.cookies.set("icefloe_session", cookie, domain="127.0.0.1", path="/ui")
    assert stolen.get("/ui/").status_code == 303  # the old cookie opens nothing
    # Revoking the key ends its sessions too (checked again within a second).
    tab = ui.signed_in("ann")
    from icefloe.auth import keys

    with ui.app.state.db.session() as s:
        keys.revoke_api_key(s, ui.key_ids["ann"])
    time.sleep(1.1)  # a session is trusted a second at most
    assert tab.get("/ui/").status_code == 303


def test_a_form_without_this_sessions_csrf_token_changes_nothing(ui: Ui) -> None:
    tab = ui.signed_in("ann")
    path = f"/ui/projects/{ui.project_id}/jobs/{ui.job_id}/run"
    stale = csrf_of(ui.signed_in("ann").get("/ui/").text)  # another session's token
    for data in ({}, {"csrf": "0" * 64}, {"csrf": stale}):
        r = tab.post(path, data=data)
        assert r.status_code == 403 and "CSRF" in r.text
    with ui.app.state.db.session() as s:
        assert s.scalar(select(Run.id)) is None
    good = csrf_of(tab.get(f"/ui/projects/{ui.project_id}").text)
    r = tab.post(path, data={"csrf": good})
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/runs/")
    assert [e.actor for e in ui.audit("run.create")] == ["ann"]
    assert ui.audit("run.create")[0].key_id == ui.key_ids["ann"]
    run_link = r.headers["location"]
    project = f"/ui/projects/{ui.project_id}"
    assert run_link in tab.get(f"{project}?trigger=manual").text
    assert "manual by ann" in tab.get(f"{project}?trigger=manual&status=ENGINE_SCHEDULING").text
    assert run_link not in tab.get(f"{project}?trigger=airflow").text
    assert run_link not in tab.get(f"{project}?status=ENGINE_FAILED").text


def test_a_viewer_sees_no_change_buttons_and_a_forged_post_is_refused(
        ui: Ui, lakehouse: Lakehouse) -> None:
    before = lakehouse.current_snapshot(T).snapshot_id
    first = lakehouse.snapshots(T)[0].snapshot_id
    tab = ui.signed_in("vic")
    project = tab.get(f"/ui/projects/{ui.project_id}").text
    assert "hello" in project and 'class="run-job"' not in project
    table = tab.get(f"/ui/tables/{T}").text
    assert "roll back to here" not in table and "rollback?to=" not in table
    token = csrf_of(table)  # the sign-out form's: a valid token of this session
    r = tab.post(f"/ui/tables/{T}/rollback", data={"csrf": token, "to": str(first)})
    assert r.status_code == 403 and "viewer" in r.text
    r = tab.post(f"/ui/projects/{ui.project_id}/jobs/{ui.job_id}/run", data={"csrf": token})
    assert r.status_code == 403
    assert lakehouse.current_snapshot(T).snapshot_id == before
    with ui.app.state.db.session() as s:
        assert s.scalar(select(Run.id)) is None
    denied = ui.audit(f"POST /api/v2/tables/{T}:rollback")
    ui.app.state.prediction_log.flush()
    denied = ui.audit(f"POST /api/v2/tables/{T}:rollback")
    assert denied and denied[0].outcome == "denied" and denied[0].actor == "vic"


def test_rollback_shows_what_changes_then_does_it(ui: Ui, lakehouse: Lakehouse) -> None:
    first, second = (s.snapshot_id for s in lakehouse.snapshots(T))
    tab = ui.signed_in("ann")
    table = tab.get(f"/ui/tables/{T}").text
    assert f"/ui/tables/{T}/rollback?to={first}" in table
    confirm = tab.get(f"/ui/tables/{T}/rollback?to={first}")
    assert confirm.status_code == 200 and "Rollback" in confirm.text
    assert "coupon" in confirm.text  # the column that leaves the schema
    assert lakehouse.current_snapshot(T).snapshot_id == second  # a confirmation only
    done = tab.post(f"/ui/tables/{T}/rollback",
                    data={"csrf": csrf_of(confirm.text), "to": str(first)})
    assert done.status_code == 303 and done.headers["location"] == f"/ui/tables/{T}?done={first}"
    assert lakehouse.current_snapshot(T).snapshot_id == first
    assert [e.actor for e in ui.audit("table.rollback")] == ["ann"]


def test_names_from_users_render_as_text(ui: Ui) -> None:
    tab = ui.signed_in("admin")
    evil = "<img src=x onerror=alert(1)>"
    r = tab.get(f"/ui/tables/{evil}")
    assert r.status_code in (404, 422)
    assert evil not in r.text and "&lt;img src=x onerror=alert(1)&gt;" in r.text
    odd = tab.get("/ui/tables/shop.odd?rows=1").text
    assert "<script>alert(1)</script>" not in odd
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in odd
    sql = tab.post("/ui/sql", data={"csrf": csrf_of(odd),
                                    "sql": "SELECT '<b>bold</b>' AS \"<i>x</i>\""}).text
    assert "<b>bold</b>" not in sql and "&lt;b&gt;bold&lt;/b&gt;" in sql


def test_audit_is_admins_only_and_filters_by_person_key_resource_and_action(ui: Ui) -> None:
    ann = ui.signed_in("ann")
    assert ann.get("/ui/audit").status_code == 403
    token = csrf_of(ann.get(f"/ui/projects/{ui.project_id}").text)
    ann.post(f"/ui/projects/{ui.project_id}/jobs/{ui.job_id}/run", data={"csrf": token})
    admin = ui.signed_in("admin")
    mine = admin.get("/ui/audit?actor=ann&action=run.").text
    assert "run.create" in mine and "session.open" not in mine
    by_key = admin.get(f"/ui/audit?key={ui.key_ids['ann']}").text
    assert "run.create" in by_key and "session.open" in by_key
    assert "run.create" not in admin.get("/ui/audit?target=table/").text
    listed = admin.get("/api/v2/audit?actor=ann&action=run.",
                       headers={"authorization": f"Bearer {ui.keys['admin']}"}).json()
    assert {e["action"] for e in listed["events"]} == {"run.create"}


def test_a_one_time_code_signs_in_once(ui: Ui) -> None:
    from icefloe.auth.sessions import issue_sign_in_code

    with ui.app.state.db.session() as s:
        code = issue_sign_in_code(s, ui.key_ids["vic"])
    form = ui.browser().get(f"/ui/signin?code={code}").text
    assert code in form  # filled in; nothing is opened by a GET
    tab = ui.browser()
    assert tab.post("/ui/signin", data={"secret": code}).status_code == 303
    assert "vic (viewer key)" in tab.get("/ui/").text
    assert ui.browser().post("/ui/signin", data={"secret": code}).status_code == 401


def test_a_long_log_is_paged_and_tailed_from_an_offset(ui: Ui) -> None:
    tab = ui.signed_in("ann")
    token = csrf_of(tab.get(f"/ui/projects/{ui.project_id}").text)
    run_id = tab.post(f"/ui/projects/{ui.project_id}/jobs/{ui.job_id}/run",
                      data={"csrf": token}).headers["location"].rsplit("/", 1)[1]
    with ui.app.state.db.session() as s:
        run = s.get(Run, run_id)
        log = ui.app.state.runner.log_path(run)
    log.parent.mkdir(parents=True, exist_ok=True)
    line = "<b>line</b> " + "x" * 1000 + "\n"
    log.write_text(line * 600)  # 600 KB: more than a page
    page = tab.get(f"/ui/runs/{run_id}").text
    assert "&lt;b&gt;line&lt;/b&gt;" in page and "next page" in page
    assert page.count("&lt;b&gt;line") < 600
    tail = tab.get(f"/ui/runs/{run_id}/log?offset={len(line) * 599}").json()
    assert tail["content"] == line and tail["next_offset"] == len(line) * 600
    assert tail["active"] is True  # not started: still scheduled
    assert ui.signed_in("vic").get(f"/ui/runs/{run_id}").status_code == 200
    outsider = ui.browser()
    assert outsider.get(f"/ui/runs/{run_id}/log").status_code == 303

"""The tables REST API, in-process over ASGI: listing filtered by grants, one 404 for hidden
and missing tables, history newest first with its writers, schema diffs, rollback (dry run
first) by an editor with a write grant, refused to a read grant and to a viewer key."""

from __future__ import annotations

import asyncio
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
from icefloe.store.orm import AuditEvent, LineageEdge
from tests.people import member_of

T = "shop.orders"


@dataclass
class Api:
    """The app and a key per person: ``admin``; ``ann`` (editor, write on shop); ``otto``
    (editor, read on shop); ``vic`` (a viewer key in ann's project); ``nell`` (no grant)."""

    app: Any
    keys: dict[str, str]

    def request(self, method: str, path: str, who: str, **kwargs: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await client.request(
                    method, path, headers={"Authorization": f"Bearer {self.keys[who]}"},
                    **kwargs)

        return asyncio.run(call())

    def get(self, path: str, who: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, who, **kwargs)

    def post(self, path: str, who: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, who, **kwargs)

    def audit(self, action: str) -> list[AuditEvent]:
        with self.app.state.db.session() as s:
            rows = s.scalars(select(AuditEvent).where(AuditEvent.action == action)).all()
            s.expunge_all()
            return list(rows)


@dataclass
class Story:
    """Three snapshots of shop.orders (the second adds ``coupon``), shop.items whose column
    is widened, and secret.t in a namespace only admins reach."""

    s1: int
    s2: int
    s3: int


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    from icefloe.api.app import create_app
    from icefloe.auth import keys

    app = create_app(settings, start_runner=False)
    made = {}
    with app.state.db.session() as s:
        for who, role in (("admin", "admin"), ("ann", "editor"), ("otto", "editor"),
                          ("vic", "viewer"), ("nell", "editor")):
            made[who] = keys.create_api_key(s, who, role)[1]
        member_of(s, "ann", namespaces={"shop": "write"})
        member_of(s, "vic", role="viewer")
        member_of(s, "otto", project="elsewhere", namespaces={"shop": "read"})
        member_of(s, "nell", project="no-grants")
    try:
        yield Api(app, made)
    finally:
        app.state.supervisor.close()
        app.state.prediction_log.close()


@pytest.fixture
def story(lakehouse: Lakehouse) -> Story:
    ann1, bob, ann2 = Actor("ann", run_id="run-1"), Actor("bob"), Actor("ann", run_id="run-2")
    s1 = lakehouse.write(T, pa.table({"cust": [1, 2], "amt": [5.0, 7.0]}), "create",
                         actor=ann1).snapshot.snapshot_id
    lakehouse.tag(T, "base", s1)
    s2 = lakehouse.write(T, pa.table({"cust": [3], "amt": [1.0], "coupon": ["x"]}),
                         evolve=True, actor=bob).snapshot.snapshot_id
    s3 = lakehouse.write(T, pa.table({"cust": [4], "amt": [2.0], "coupon": ["y"]}),
                         actor=ann2).snapshot.snapshot_id
    lakehouse.write("shop.items", pa.table({"n": pa.array([1], pa.int32())}), "create")
    lakehouse.write("shop.items", pa.table({"n": pa.array([2**40])}), evolve=True)
    lakehouse.write("secret.t", pa.table({"x": [1]}), "create")
    return Story(s1, s2, s3)


def _names(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [t["name"] for t in response.json()["tables"]]


def test_listing_shows_only_granted_namespaces_page_by_page(api: Api, story: Story) -> None:
    assert _names(api.get("/api/v2/tables", "admin")) == ["secret.t", "shop.items", T]
    assert _names(api.get("/api/v2/tables", "ann")) == ["shop.items", T]
    assert _names(api.get("/api/v2/tables", "otto")) == ["shop.items", T]
    assert _names(api.get("/api/v2/tables", "nell")) == []
    # A namespace not granted lists like one that does not exist: empty.
    assert _names(api.get("/api/v2/tables?namespace=secret", "ann")) == []
    assert _names(api.get("/api/v2/tables?namespace=nowhere", "ann")) == []
    assert _names(api.get("/api/v2/tables?namespace=secret", "admin")) == ["secret.t"]
    bad = api.get("/api/v2/tables?namespace=bad-name", "ann")
    assert bad.status_code == 422 and bad.json()["error"]["message"].startswith("namespace:")

    first = api.get("/api/v2/tables?page_size=2", "admin").json()
    assert [t["name"] for t in first["tables"]] == ["secret.t", "shop.items"]
    rest = api.get(f"/api/v2/tables?page_size=2&page_token={first['next_page_token']}",
                   "admin").json()
    assert rest["next_page_token"] == "" and len(rest["tables"]) == 1
    orders = rest["tables"][0]
    assert orders["name"] == T and orders["namespace"] == "shop"
    assert orders["current_snapshot_id"] == story.s3 and orders["snapshots"] == 3
    assert orders["rows"] == 4 and orders["last_updated"].endswith("+00:00")


def test_a_hidden_table_answers_exactly_like_a_missing_one(
        api: Api, story: Story, lakehouse: Lakehouse) -> None:
    hidden = {"error": {"type": "NoSuchTableError", "message": "table secret.t does not exist"}}
    for path in ("/api/v2/tables/secret.t", "/api/v2/tables/secret.t/snapshots",
                 "/api/v2/tables/secret.t/schema?snapshot=1&compare=2"):
        for who in ("ann", "nell", "vic"):
            r = api.get(path, who)
            assert (r.status_code, r.json()) == (404, hidden), (path, who)
    # Not even readable: 404 before any talk of writing (never 403), dry run or not.
    for body in ({"to": 1}, {"to": 1, "dry_run": True}):
        r = api.post("/api/v2/tables/secret.t:rollback", "otto", json=body)
        assert (r.status_code, r.json()) == (404, hidden)
    assert api.get("/api/v2/tables/shop.orders", "nell").json() == {"error": {
        "type": "NoSuchTableError", "message": "table shop.orders does not exist"}}
    # Once the table is really gone, an admin gets the very same answer.
    lakehouse.drop("secret.t")
    gone = api.get("/api/v2/tables/secret.t", "admin")
    assert (gone.status_code, gone.json()) == (404, hidden)
    missing = api.get("/api/v2/tables/nowhere.t", "admin")
    assert missing.json()["error"]["message"] == "table nowhere.t does not exist"
    bad = api.get("/api/v2/tables/no_dot", "ann")
    assert bad.status_code == 422
    assert bad.json()["error"]["message"].startswith("name: invalid table name 'no_dot'")


def test_a_table_its_snapshots_newest_first_and_who_wrote_them(api: Api, story: Story) -> None:
    table = api.get(f"/api/v2/tables/{T}", "otto")
    assert table.status_code == 200, table.text
    body = table.json()
    assert body["name"] == T and body["snapshots"] == 3
    assert body["current_snapshot"]["snapshot_id"] == story.s3
    assert body["current_snapshot"]["total_rows"] == 4
    assert [(f["name"], f["type"], f["required"]) for f in body["fields"]] == [
        ("cust", "long", False), ("amt", "double", False), ("coupon", "string", False)]
    assert body["tags"] == [{"tag": "base", "snapshot_id": story.s1}]

    first = api.get(f"/api/v2/tables/{T}/snapshots?page_size=2", "otto").json()
    rows = first["snapshots"]
    assert [r["snapshot_id"] for r in rows] == [story.s3, story.s2]
    assert [(r["current"], r["user"], r["run_id"]) for r in rows] == [
        (True, "ann", "run-2"), (False, "bob", None)]
    assert rows[0]["total_rows"] == 4 and rows[0]["short_id"] and rows[0]["time"]
    rest = api.get(f"/api/v2/tables/{T}/snapshots?page_size=2&page_token="
                   f"{first['next_page_token']}", "otto").json()
    assert rest["next_page_token"] == ""
    assert [(r["snapshot_id"], r["user"], r["run_id"], r["tags"]) for r in rest["snapshots"]] \
        == [(story.s1, "ann", "run-1", ["base"])]
    assert api.get(f"/api/v2/tables/{T}/snapshots?page_size=0", "otto").status_code == 422


def test_the_schema_of_a_snapshot_and_how_it_changed(api: Api, story: Story) -> None:
    then = api.get(f"/api/v2/tables/{T}/schema?snapshot=base&compare={story.s3}", "ann")
    assert then.status_code == 200, then.text
    body = then.json()
    assert body["snapshot_id"] == story.s1
    assert [f["name"] for f in body["fields"]] == ["cust", "amt"]
    diff = body["diff"]
    assert (diff["from"], diff["to"]) == (story.s1, story.s3)
    assert [(f["name"], f["type"]) for f in diff["added"]] == [("coupon", "string")]
    assert diff["removed"] == [] and diff["changed"] == []
    back = api.get(f"/api/v2/tables/{T}/schema?snapshot={story.s3}&compare=base", "ann").json()
    assert [f["name"] for f in back["diff"]["removed"]] == ["coupon"]
    now = api.get(f"/api/v2/tables/{T}/schema", "ann").json()
    assert now["snapshot_id"] == story.s3 and "diff" not in now
    assert [f["name"] for f in now["fields"]] == ["cust", "amt", "coupon"]
    # A widened column is a change of type.
    items = api.get("/api/v2/tables/shop.items/snapshots", "ann").json()["snapshots"]
    widened = api.get(f"/api/v2/tables/shop.items/schema?snapshot={items[-1]['snapshot_id']}"
                      f"&compare={items[0]['snapshot_id']}", "ann").json()["diff"]
    assert widened["changed"] == [{"name": "n", "from_type": "int", "to_type": "long",
                                   "from_required": False, "to_required": False}]
    unknown = api.get(f"/api/v2/tables/{T}/schema?snapshot=base&compare=424242", "ann")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == \
        f"snapshot 424242 is not in the history of {T}"


def test_rollback_dry_run_then_for_real_by_an_editor_with_a_write_grant(
        api: Api, story: Story, lakehouse: Lakehouse) -> None:
    path = f"/api/v2/tables/{T}:rollback"
    dry = api.post(path, "ann", json={"to": "base", "dry_run": True})
    assert dry.status_code == 200, dry.text
    plan = dry.json()
    assert plan["kind"] == "rollback" and plan["table"] == T
    assert plan["from"]["snapshot_id"] == story.s3 and plan["to"]["snapshot_id"] == story.s1
    assert (plan["rows_before"], plan["rows_after"]) == (4, 2)
    assert plan["columns_removed"] == ["coupon"] and plan["columns_restored"] == []
    # The dry run changed nothing and recorded nothing.
    assert lakehouse.current_snapshot(T).snapshot_id == story.s3
    assert "coupon" in lakehouse.table(T).schema().column_names
    assert api.audit("table.rollback") == []
    kept = api.post(path, "ann", json={"to": "base", "dry_run": True, "keep_schema": True})
    assert kept.json()["columns_removed"] == [] and kept.json()["kind"] == "rollback"

    done = api.post(path, "ann", json={"to": "base"})
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["kind"] == "rollback" and body["snapshot"]["snapshot_id"] == story.s1
    assert body["previous_snapshot_id"] == story.s3 and body["schema_changed"] is True
    assert body["columns_removed"] == ["coupon"]
    assert lakehouse.current_snapshot(T).snapshot_id == story.s1
    assert "coupon" not in lakehouse.table(T).schema().column_names
    (event,) = api.audit("table.rollback")
    assert (event.actor, event.target, event.outcome, event.detail) == (
        "ann", f"table/{T}", "ok", f"from {story.s3} to {story.s1}")
    with api.app.state.db.session() as s:  # lineage saw it as the CLI's rollback, by ann
        edges = s.scalars(select(LineageEdge).where(LineageEdge.relation == "rollback")).all()
        assert [(e.src, e.dst, e.actor) for e in edges] == [
            (f"snapshot:{T}@{story.s3}", f"snapshot:{T}@{story.s1}", "ann")]

    # Going back to the later snapshot is a roll forward; to the current one, nothing.
    forward = api.post(path, "ann", json={"to": story.s3, "dry_run": True}).json()
    assert forward["kind"] == "roll forward" and forward["columns_restored"] == ["coupon"]
    same = api.post(path, "ann", json={"to": "base", "dry_run": True}).json()
    assert same["kind"] == "no change" and same["rows_before"] == same["rows_after"] == 2
    snaps = api.get(f"/api/v2/tables/{T}/snapshots", "ann").json()["snapshots"]
    assert [s["snapshot_id"] for s in snaps if s["current"]] == [story.s1]


def test_rollback_is_refused_to_a_read_grant_a_viewer_key_and_a_bad_ref(
        api: Api, story: Story, lakehouse: Lakehouse) -> None:
    path = f"/api/v2/tables/{T}:rollback"
    for who, says in (("otto", "may only read"), ("vic", "(viewer) only reads")):
        for body in ({"to": "base"}, {"to": "base", "dry_run": True}):
            r = api.post(path, who, json=body)
            assert r.status_code == 403, (who, r.text)
            # (the viewer key is refused by the middleware, before the route: "Forbidden")
            assert r.json()["error"]["type"].startswith("Forbidden") and says in r.text
    unknown = api.post(path, "ann", json={"to": "nope"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"].startswith(f"tag 'nope' does not exist on {T}")
    by_id = api.post(path, "ann", json={"to": 424242, "dry_run": True})
    assert by_id.status_code == 404 and "snapshot 424242" in by_id.text and T in by_id.text
    typo = api.post(path, "ann", json={"to": "base", "dryrun": True})
    assert typo.status_code == 422  # a misspelt dry run is refused, not performed
    assert lakehouse.current_snapshot(T).snapshot_id == story.s3
    assert api.audit("table.rollback") == []


class _InProcess(httpx.BaseTransport):
    """A synchronous transport into the app (the SDK is synchronous; ASGI is not)."""

    def __init__(self, app: Any) -> None:
        self.asgi = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def call() -> httpx.Response:
            answer = await self.asgi.handle_async_request(request)
            return httpx.Response(answer.status_code, headers=answer.headers,
                                  content=await answer.aread())

        return asyncio.run(call())


def test_the_sdk_methods(api: Api, story: Story) -> None:
    from icefloe.client import Client

    sdk = Client("http://t", api_key="unused")
    sdk._http.close()
    sdk._http = httpx.Client(transport=_InProcess(api.app), base_url="http://t/api/v2",
                             headers={"Authorization": f"Bearer {api.keys['ann']}"})
    with sdk:
        assert [t["name"] for t in sdk.tables()] == ["shop.items", T]
        assert sdk.tables(namespace="secret") == []
        assert sdk.table(T)["current_snapshot"]["snapshot_id"] == story.s3
        assert [s["snapshot_id"] for s in sdk.table_snapshots(T)] == [story.s3, story.s2,
                                                                      story.s1]
        diff = sdk.table_schema(T, snapshot="base", compare=story.s3)["diff"]
        assert [f["name"] for f in diff["added"]] == ["coupon"]
        assert sdk.table_schema(T)["snapshot_id"] == story.s3
        assert sdk.rollback_table(T, "base", dry_run=True)["kind"] == "rollback"
        done = sdk.rollback_table(T, story.s1, keep_schema=True)
        assert done["kind"] == "rollback" and done["schema_changed"] is False

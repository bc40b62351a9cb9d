"""Tables: the list, a table's snapshot timeline, its schema at a snapshot and the diff of
two, rows at a snapshot or tag, rollback and roll forward behind a confirmation, SQL."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from icefloe.ui.calls import ApiError
from icefloe.ui.pages.jobs import refused
from icefloe.ui.render import PAGE_SIZE, page
from icefloe.ui.site import api, form, principal

ROWS_SHOWN = 50


async def tables(request: Request) -> Response:
    """Every table the caller's projects may read."""
    args = request.query_params
    listed = await api(request).get("/api/v2/tables", namespace=args.get("namespace") or None,
                                    page_size=PAGE_SIZE, page_token=args.get("page") or None)
    return page(request, "tables.html", tables=listed["tables"],
                next_page=listed.get("next_page_token") or "")


def _quoted(name: str) -> str:
    """``"ns"."table"`` for SQL (names come from the table route, checked there)."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split(".", 1))


async def table(request: Request) -> Response:
    """A table: snapshots (paged), schema at ``at`` and its diff with ``compare``, rows."""
    name = request.path_params["name"]
    args = request.query_params
    calls = api(request)
    try:
        info = await calls.get(f"/api/v2/tables/{name}")
        snaps = await calls.get(f"/api/v2/tables/{name}/snapshots", page_size=PAGE_SIZE,
                                page_token=args.get("page") or None)
    except ApiError as exc:
        return refused(request, exc)
    at, compare = args.get("at") or None, args.get("compare") or None
    schema: dict[str, Any] | None = None
    rows: dict[str, Any] | None = None
    problem = ""
    try:
        schema = await calls.get(f"/api/v2/tables/{name}/schema", snapshot=at, compare=compare)
        if args.get("rows"):
            pin = {name: int(at) if at and at.isdigit() else at} if at else None
            rows = await calls.post("/api/v2/sql", {
                "sql": f"SELECT * FROM {_quoted(name)} LIMIT {ROWS_SHOWN}",
                "at": pin, "max_rows": ROWS_SHOWN})
    except ApiError as exc:
        problem = str(exc)
    who = principal(request)
    return page(request, "table.html", name=name, info=info, snapshots=snaps["snapshots"],
                next_page=snaps.get("next_page_token") or "", schema=schema, rows=rows,
                at=at, compare=compare, problem=problem, may_write=who.may("POST"))


async def rollback(request: Request) -> Response:
    """GET: what a rollback to ``to`` would change (a dry run), with the confirm button.
    POST: do it (CSRF-checked; the API checks the role and the write grant)."""
    name = request.path_params["name"]
    calls = api(request)
    if request.method == "POST":
        fields = await form(request)
        try:
            done = await calls.post(f"/api/v2/tables/{name}:rollback",
                                    {"to": fields.get("to", ""),
                                     "keep_schema": fields.get("keep_schema") == "on"})
        except ApiError as exc:
            return refused(request, exc)
        snapshot = done["snapshot"]["snapshot_id"]
        return RedirectResponse(f"/ui/tables/{name}?done={snapshot}", status_code=303)
    to = request.query_params.get("to", "")
    try:
        plan = await calls.post(f"/api/v2/tables/{name}:rollback",
                                {"to": to, "dry_run": True})
    except ApiError as exc:
        return refused(request, exc)
    return page(request, "rollback.html", name=name, plan=plan, to=to)


async def sql(request: Request) -> Response:
    """The SQL box: the same sandbox as ``icefloe sql`` (SELECT only, granted tables)."""
    text = ""
    result: dict[str, Any] | None = None
    problem = ""
    if request.method == "POST":
        fields = await form(request)
        text = fields.get("sql", "")[:100_000]
        try:
            result = await api(request).post("/api/v2/sql", {"sql": text, "max_rows": 200})
        except ApiError as exc:
            problem = str(exc)
    return page(request, "sql.html", sql=text, result=result, problem=problem)


ROUTES = [
    Route("/ui/tables", tables),
    Route("/ui/tables/{name}", table),
    Route("/ui/tables/{name}/rollback", rollback, methods=["GET", "POST"]),
    Route("/ui/sql", sql, methods=["GET", "POST"]),
]

"""Overview, projects with their jobs and runs, a run with its log (tailed while it runs)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from icefloe.jobs import states
from icefloe.ui import queries
from icefloe.ui.calls import ApiError
from icefloe.ui.render import PAGE_SIZE, offset_of, page
from icefloe.ui.site import api, form, principal, run, ui_of

LOG_PAGE = 64 * 1024  # a page of a large log; the rest is one click (or request) away


async def overview(request: Request) -> Response:
    """Projects, deployments with health and firing alerts, recent runs, table commits."""
    ui, who, calls = ui_of(request), principal(request), api(request)
    projects = (await calls.get("/api/v2/projects", page_size=100))["projects"]
    deployments = (await calls.get("/api/v2/models/deployments"))["deployments"]
    recent, _ = await run(lambda: queries.runs(ui.db, who, queries.RunFilter(), limit=10))
    running, _ = await run(lambda: queries.runs(
        ui.db, who, queries.RunFilter(status=states.RUNNING), limit=20))
    firing = await run(queries.firing_alerts, ui.db, who)
    tables = (await calls.get("/api/v2/tables", page_size=100))["tables"]
    tables.sort(key=lambda t: t.get("last_updated") or "", reverse=True)
    return page(request, "overview.html", projects=projects, deployments=deployments,
                recent=recent, running=running, firing=firing, tables=tables[:10])


async def project(request: Request) -> Response:
    """A project's jobs (dependency graph, schedules) and its run history, filtered."""
    ui, who, calls = ui_of(request), principal(request), api(request)
    pid = request.path_params["project_id"]
    info = await calls.get(f"/api/v2/projects/{pid}")
    jobs = (await calls.get(f"/api/v2/projects/{pid}/jobs", page_size=1000))["jobs"]
    offset = offset_of(request)
    args = request.query_params
    where = queries.RunFilter(project_id=pid, job_id=args.get("job") or None,
                              status=args.get("status") or None,
                              trigger=args.get("trigger") or None)
    rows, more = await run(lambda: queries.runs(ui.db, who, where, offset=offset,
                                                limit=PAGE_SIZE))
    counts = await run(queries.run_counts, ui.db, who, pid)
    return page(request, "project.html", project=info, tree=job_tree(jobs), jobs=jobs,
                runs=rows, more=more, offset=offset, counts=counts,
                statuses=sorted(states.ALL), may_change=who.may_change(pid))


def job_tree(jobs: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """Jobs in dependency order with their depth (a child under its parent), for an
    indented list; a job whose parent is missing is shown as a root."""
    by_parent: dict[str, list[dict[str, Any]]] = {}
    ids = {j["id"] for j in jobs}
    for job in sorted(jobs, key=lambda j: j["name"]):
        parent = job.get("parent_job_id") or ""
        by_parent.setdefault(parent if parent in ids else "", []).append(job)
    ordered: list[tuple[int, dict[str, Any]]] = []
    seen: set[str] = set()

    def walk(parent: str, depth: int) -> None:
        for job in by_parent.get(parent, []):
            if job["id"] in seen:
                continue
            seen.add(job["id"])
            ordered.append((depth, job))
            walk(job["id"], depth + 1)

    walk("", 0)
    return ordered


async def run_page(request: Request) -> Response:
    """A run: its facts, its log (paged; tailed live while the run goes on)."""
    ui, who = ui_of(request), principal(request)
    found = await run(queries.run_by_id, ui.db, who, request.path_params["run_id"])
    if found is None:
        return page(request, "error.html", status=404,
                    message=f"run {request.path_params['run_id'][:64]!r} does not exist")
    offset = offset_of(request)
    log = await _log(request, found, offset)
    return page(request, "run.html", run=found, log=log, offset=offset,
                active=found["status"] in states.ACTIVE,
                may_change=who.may_change(found["project_id"]))


async def _log(request: Request, found: dict[str, Any], offset: int) -> dict[str, Any]:
    path = (f"/api/v2/projects/{found['project_id']}/jobs/{found['job_id']}/runs/"
            f"{found['id']}/logs")
    log: dict[str, Any] = await api(request).get(path, offset=offset)
    content = log["content"]
    if len(content) > LOG_PAGE:  # the API answers up to 1 MiB: a page shows less
        log["content"] = content[:LOG_PAGE]
        log["next_offset"] = offset + len(content[:LOG_PAGE].encode())
    return log


async def run_log(request: Request) -> Response:
    """The log from an offset, as JSON (what the page's tail script polls)."""
    ui, who = ui_of(request), principal(request)
    found = await run(queries.run_by_id, ui.db, who, request.path_params["run_id"])
    if found is None:
        return JSONResponse({"error": {"type": "NotFound", "message": "no such run"}},
                            status_code=404)
    log = await _log(request, found, offset_of(request))
    return JSONResponse({"content": log["content"], "next_offset": log["next_offset"],
                         "size": log["size"], "status": log["status"],
                         "active": log["status"] in states.ACTIVE})


async def run_job(request: Request) -> Response:
    """Start a run of a job (the Run button)."""
    fields = await form(request)
    pid, job_id = request.path_params["project_id"], request.path_params["job_id"]
    try:
        started = await api(request).post(f"/api/v2/projects/{pid}/jobs/{job_id}/runs",
                                           {"arguments": fields["arguments"]}
                                           if fields.get("arguments") else None)
    except ApiError as exc:
        return refused(request, exc)
    return RedirectResponse(f"/ui/runs/{started['id']}", status_code=303)


async def stop_run(request: Request) -> Response:
    """Stop a run (the Stop button)."""
    await form(request)
    ui, who = ui_of(request), principal(request)
    found = await run(queries.run_by_id, ui.db, who, request.path_params["run_id"])
    if found is None:
        return page(request, "error.html", status=404, message="no such run")
    try:
        await api(request).post(f"/api/v2/projects/{found['project_id']}/jobs/"
                                f"{found['job_id']}/runs/{found['id']}/stop")
    except ApiError as exc:
        return refused(request, exc)
    return RedirectResponse(f"/ui/runs/{found['id']}", status_code=303)


def refused(request: Request, exc: ApiError) -> Response:
    """The page of a change the API refused, with its status and reason."""
    return page(request, "error.html", status=exc.http_status, message=str(exc))


ROUTES = [
    Route("/ui/", overview),
    Route("/ui/projects/{project_id}", project),
    Route("/ui/projects/{project_id}/jobs/{job_id}/run", run_job, methods=["POST"]),
    Route("/ui/runs/{run_id}", run_page),
    Route("/ui/runs/{run_id}/log", run_log),
    Route("/ui/runs/{run_id}/stop", stop_run, methods=["POST"]),
]

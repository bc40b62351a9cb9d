"""REST API v2: projects, jobs, runs (CML shapes), keys and audit, over the platform store.

``create_app`` wires the store, the runner and the API key middleware; ``icefloe up`` serves
it with uvicorn.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from icefloe.api.auth import ApiKeyMiddleware, KeyCache, actor
from icefloe.api.models import add_model_routes, document_model_calls
from icefloe.api.prometheus import MetricsMiddleware, RequestMetrics
from icefloe.config import Settings
from icefloe.errors import ForbiddenError, IcefloeError, InvalidInputError
from icefloe.jobs.runner import Runner
from icefloe.serving.deployments import restore
from icefloe.serving.gateway import ModelGateway
from icefloe.serving.predictions import PredictionLog
from icefloe.serving.supervisor import Supervisor
from icefloe.store import repo
from icefloe.store.db import Database
from icefloe.store.models import Job, Project, Run

API = "/api/v2"
MAX_LOG_CHUNK = 1 << 20


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def project_json(p: Project) -> dict[str, Any]:
    """A project in the CML shape."""
    return {"id": p.id, "name": p.name, "description": p.description, "path": p.path,
            "created_at": _time(p.created_at), "updated_at": _time(p.updated_at)}


def job_json(j: Job) -> dict[str, Any]:
    """A job in the CML shape (``parent_id`` as CML names it, ``parent_job_id`` as created)."""
    return {"id": j.id, "project_id": j.project_id, "name": j.name, "script": j.script,
            "kernel": j.kernel, "arguments": j.arguments, "environment": j.environment,
            "cpu": j.cpu, "memory": j.memory, "timeout": j.timeout, "retries": j.retries,
            "parent_id": j.parent_job_id or "", "parent_job_id": j.parent_job_id or "",
            "schedule": j.schedule, "paused": j.paused,
            "created_at": _time(j.created_at), "updated_at": _time(j.updated_at)}


def run_json(r: Run) -> dict[str, Any]:
    """A run in the CML shape."""
    return {"id": r.id, "job_id": r.job_id, "project_id": r.project_id, "status": r.status,
            "trigger": r.trigger, "triggered_by": r.triggered_by,
            "parent_run_id": r.parent_run_id or "", "attempt": r.attempt,
            "exit_code": r.exit_code, "reason": r.reason,
            "created_at": _time(r.created_at), "scheduling_at": _time(r.created_at),
            "starting_at": _time(r.started_at), "running_at": _time(r.started_at),
            "finished_at": _time(r.ended_at)}


class ProjectIn(BaseModel):
    """Create a project."""

    name: str
    description: str = ""
    path: str | None = Field(None, description="An existing folder; default: in the home")


class JobIn(BaseModel):
    """Create a job (CML field names)."""

    name: str
    script: str
    kernel: str = "python3"
    arguments: str = ""
    environment: dict[str, str] = Field(default_factory=dict)
    cpu: int = 1
    memory: int = 1
    timeout: int = 0
    retries: int = 0
    parent_job_id: str | None = None
    schedule: str = ""
    paused: bool = False


class JobPatch(BaseModel):
    """Change some fields of a job."""

    name: str | None = None
    script: str | None = None
    kernel: str | None = None
    arguments: str | None = None
    environment: dict[str, str] | None = None
    cpu: int | None = None
    memory: int | None = None
    timeout: int | None = None
    retries: int | None = None
    parent_job_id: str | None = None
    schedule: str | None = None
    paused: bool | None = None


class KeyIn(BaseModel):
    """Create an API key for a user with a role."""

    user: str
    role: str = "viewer"


def _actor(request: Request) -> str:
    return actor(request.scope)


def create_app(settings: Settings, *, db: Database | None = None, runner: Runner | None = None,
               start_runner: bool = True, api_url: str = "") -> FastAPI:
    """The control-plane app.

    Args:
        settings: icefloe settings (home, platform DB URL).
        db: The platform DB (opened and migrated from the settings if omitted).
        runner: The job runner (created if omitted).
        start_runner: Start the runner's loop with the app (tests may tick it by hand).
        api_url: This server's base URL, handed to jobs.
    """
    database = db or Database(settings.resolved_platform_db_url)
    the_runner = runner or Runner(database, settings, api_url=api_url)
    keys = KeyCache(database)
    supervisor = Supervisor(settings.home.resolve())
    predictions = PredictionLog(database, spill_dir=settings.home.resolve() / "logs")
    metrics = RequestMetrics()
    metrics.gauges.append(lambda: serving_gauges(supervisor, predictions))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if start_runner:
            the_runner.start()
        restore(database, supervisor)
        # Startup objects (modules, routes, ORM metadata) live as long as the process: keep
        # them out of the collector's way, so full collections stay short under load.
        gc.collect()
        gc.freeze()
        yield
        if start_runner:
            the_runner.shutdown()
        supervisor.close()
        predictions.close()  # every answered prediction is written before we exit

    app = FastAPI(title="icefloe", version="2", openapi_url=f"{API}/openapi.json",
                  docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.db = database
    app.state.runner = the_runner
    app.state.keys = keys
    app.state.supervisor = supervisor
    app.state.prediction_log = predictions
    app.state.metrics = metrics

    @app.exception_handler(IcefloeError)
    async def _icefloe_error(_: Request, exc: IcefloeError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid')}" if where else "invalid request"
        return JSONResponse(InvalidInputError(message).to_dict(), status_code=422)

    router = APIRouter(prefix=API)

    @router.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/projects")
    def list_projects(search: str | None = None, page_size: int = Query(100),
                      page_token: str | None = None) -> dict[str, Any]:
        with database.session() as s:
            rows, token = repo.list_projects(s, search=search, page_size=page_size,
                                             page_token=page_token)
            return {"projects": [project_json(p) for p in rows], "next_page_token": token}

    @router.post("/projects", status_code=201)
    def create_project(body: ProjectIn, request: Request) -> dict[str, Any]:
        from pathlib import Path

        path = Path(body.path) if body.path else settings.home.resolve() / "projects" / body.name
        with database.session() as s:
            project = repo.create_project(s, body.name, str(path), body.description)
            if body.path and not path.is_dir():  # raising here rolls the project back
                raise InvalidInputError(f"project path {body.path!r} is not a folder")
            path.mkdir(parents=True, exist_ok=True)
            repo.audit(s, _actor(request), "project.create", f"project/{project.id}", "ok")
            return project_json(project)

    @router.get("/projects/{project_id}")
    def get_project(project_id: str) -> dict[str, Any]:
        with database.session() as s:
            return project_json(repo.get_project(s, project_id))

    @router.get("/projects/{project_id}/jobs")
    def list_jobs(project_id: str, search: str | None = None, page_size: int = Query(100),
                  page_token: str | None = None) -> dict[str, Any]:
        with database.session() as s:
            rows, token = repo.list_jobs(s, project_id, search=search, page_size=page_size,
                                         page_token=page_token)
            return {"jobs": [job_json(j) for j in rows], "next_page_token": token}

    @router.post("/projects/{project_id}/jobs", status_code=201)
    def create_job(project_id: str, body: JobIn, request: Request) -> dict[str, Any]:
        with database.session() as s:
            job = repo.create_job(s, project_id, body.model_dump())
            repo.audit(s, _actor(request), "job.create", f"job/{job.id}", "ok", job.name)
            return job_json(job)

    @router.get("/projects/{project_id}/jobs/{job_id}")
    def get_job(project_id: str, job_id: str) -> dict[str, Any]:
        with database.session() as s:
            return job_json(repo.get_job(s, project_id, job_id))

    @router.patch("/projects/{project_id}/jobs/{job_id}")
    def update_job(project_id: str, job_id: str, body: JobPatch,
                   request: Request) -> dict[str, Any]:
        with database.session() as s:
            job = repo.update_job(s, project_id, job_id, body.model_dump(exclude_unset=True))
            repo.audit(s, _actor(request), "job.update", f"job/{job.id}", "ok")
            return job_json(job)

    @router.delete("/projects/{project_id}/jobs/{job_id}", status_code=204)
    def delete_job(project_id: str, job_id: str, request: Request) -> None:
        with database.session() as s:
            repo.delete_job(s, project_id, job_id)
            repo.audit(s, _actor(request), "job.delete", f"job/{job_id}", "ok")

    @router.post("/projects/{project_id}/jobs/{job_id}/runs", status_code=201)
    def create_run(project_id: str, job_id: str, request: Request) -> dict[str, Any]:
        with database.session() as s:
            job = repo.get_job(s, project_id, job_id)
            run = repo.create_run(s, job, "api", _actor(request))
            repo.audit(s, _actor(request), "run.create", f"run/{run.id}", "ok", job.name)
            return run_json(run)

    @router.get("/projects/{project_id}/jobs/{job_id}/runs")
    def list_runs(project_id: str, job_id: str, page_size: int = Query(100),
                  page_token: str | None = None) -> dict[str, Any]:
        with database.session() as s:
            rows, token = repo.list_runs(s, project_id, job_id, page_size=page_size,
                                         page_token=page_token)
            return {"job_runs": [run_json(r) for r in rows], "next_page_token": token}

    @router.post("/projects/{project_id}/jobs/{job_id}/runs/{run_id}:stop",
                 operation_id="stop_run_cml")
    @router.post("/projects/{project_id}/jobs/{job_id}/runs/{run_id}/stop",
                 operation_id="stop_run")
    def stop_run(project_id: str, job_id: str, run_id: str, request: Request) -> dict[str, Any]:
        with database.session() as s:
            repo.get_run(s, project_id, job_id, run_id)
        stopped = the_runner.stop(run_id, reason=f"stopped by {_actor(request)}")
        with database.session() as s:
            repo.audit(s, _actor(request), "run.stop", f"run/{run_id}",
                       "ok" if stopped else "already ended")
            return run_json(repo.get_run(s, project_id, job_id, run_id))

    @router.get("/projects/{project_id}/jobs/{job_id}/runs/{run_id}")
    def get_run(project_id: str, job_id: str, run_id: str) -> dict[str, Any]:
        with database.session() as s:
            return run_json(repo.get_run(s, project_id, job_id, run_id))

    @router.get("/projects/{project_id}/jobs/{job_id}/runs/{run_id}/logs")
    def run_logs(project_id: str, job_id: str, run_id: str,
                 offset: int = Query(0, ge=0)) -> dict[str, Any]:
        with database.session() as s:
            run = repo.get_run(s, project_id, job_id, run_id)
            path = the_runner.log_path(run)
            status = run.status
        data = b""
        if path.is_file():
            with path.open("rb") as fh:
                fh.seek(offset)
                data = fh.read(MAX_LOG_CHUNK)
        return {"run_id": run_id, "status": status, "offset": offset,
                "next_offset": offset + len(data),
                "content": data.decode("utf-8", errors="replace")}

    @router.get("/keys")
    def list_keys(request: Request) -> dict[str, Any]:
        _require_admin(request)
        with database.session() as s:
            keys = repo.list_api_keys(s)
        return {"keys": [{**k, "created_at": _time(k["created_at"])} for k in keys]}

    @router.post("/keys", status_code=201)
    def create_key(body: KeyIn, request: Request) -> dict[str, Any]:
        _require_admin(request)
        with database.session() as s:
            key, secret = repo.create_api_key(s, body.user, body.role)
            repo.audit(s, _actor(request), "key.create", f"key/{key.prefix}", "ok", body.role)
            return {"id": key.id, "prefix": key.prefix, "user": body.user, "role": key.role,
                    "api_key": secret}

    @router.delete("/keys/{key_id}", status_code=204)
    def revoke_key(key_id: str, request: Request) -> None:
        _require_admin(request)
        with database.session() as s:
            repo.revoke_api_key(s, key_id)
            repo.audit(s, _actor(request), "key.revoke", f"key/{key_id}", "ok")
        keys.clear()

    @router.get("/audit")
    def audit_events(request: Request, page_size: int = Query(100),
                     page_token: str | None = None) -> dict[str, Any]:
        _require_admin(request)
        with database.session() as s:
            rows, token = repo.list_audit(s, page_size=page_size, page_token=page_token)
            return {"events": [{"id": e.id, "at": _time(e.at), "actor": e.actor,
                                "action": e.action, "target": e.target, "outcome": e.outcome,
                                "detail": e.detail} for e in rows],
                    "next_page_token": token}

    add_model_routes(router, database, settings, supervisor, predictions)
    app.include_router(router)

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        return document_model_calls(plain_openapi())

    app.openapi = openapi  # type: ignore[method-assign]
    # Outermost last: metrics time everything, model calls skip the REST middleware.
    app.add_middleware(ApiKeyMiddleware, keys=keys)
    app.add_middleware(ModelGateway, keys=keys, supervisor=supervisor, predictions=predictions)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def serving_gauges(supervisor: Supervisor, predictions: PredictionLog) -> list[str]:
    """Prometheus gauges: ready replicas per deployment, predictions waiting to be written."""
    lines = ["# HELP icefloe_model_replicas_ready Replicas taking traffic.",
             "# TYPE icefloe_model_replicas_ready gauge"]
    for dep_id, ready in sorted(supervisor.ready_counts().items()):
        lines.append(f'icefloe_model_replicas_ready{{deployment="{dep_id}"}} {ready}')
    lines += ["# HELP icefloe_predictions_queued Predictions not yet written to the store.",
              "# TYPE icefloe_predictions_queued gauge",
              f"icefloe_predictions_queued {predictions.queued()}"]
    return lines


def _require_admin(request: Request) -> None:
    principal = request.scope.get("icefloe.principal")
    if principal is None or principal.role != "admin":
        raise ForbiddenError("this key's role may not do that")

"""Projects, jobs and runs under /api/v2 in CML's shapes.

A run token reaches only its own project: other projects answer 404, as if they did not
exist, and it may not create projects.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from icefloe.auth.middleware import actor, principal_of
from icefloe.config import Settings
from icefloe.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from icefloe.governance import membership
from icefloe.jobs import folders, vault
from icefloe.jobs.environment import MAX_VALUE, MAX_VARIABLES, check_variables
from icefloe.jobs.runner import Runner
from icefloe.jobs.spec import MAX_INT, MAX_TEXT
from icefloe.jobs.submit import MAX_CONF, MAX_CONF_VALUE, MAX_CORES, check_spark
from icefloe.names import valid_name
from icefloe.store import repo
from icefloe.store.db import Database
from icefloe.store.orm import Job, Project, Run
from icefloe.timefmt import iso_utc

MAX_LOG_CHUNK = 1 << 20
MAX_OFFSET = 2**53 - 1  # the largest integer every JSON reader keeps exact
PAGE_SIZE = Query(100, ge=1, le=1000)
PAGE_TOKEN = Query(None, max_length=64, description="next_page_token of the previous page")
SEARCH = Query(None, max_length=255)


def project_json(p: Project) -> dict[str, Any]:
    """A project in the CML shape."""
    return {"id": p.id, "name": p.name, "description": p.description, "path": p.path,
            "created_at": iso_utc(p.created_at), "updated_at": iso_utc(p.updated_at)}


def job_json(j: Job) -> dict[str, Any]:
    """A job in the CML shape (``parent_id`` as CML names it, ``parent_job_id`` as created).

    Secret variables are listed by name only; their values never leave the server.
    """
    return {"id": j.id, "project_id": j.project_id, "name": j.name, "script": j.script,
            "kernel": j.kernel, "arguments": j.arguments, "environment": j.environment,
            "secret_environment": vault.masked(j.secret_environment),
            "cpu": j.cpu, "memory": j.memory, "timeout": j.timeout, "retries": j.retries,
            "parent_id": j.parent_job_id or "", "parent_job_id": j.parent_job_id or "",
            "schedule": j.schedule, "paused": j.paused, "spark": j.spark or {},
            "created_by": j.created_by,
            "created_at": iso_utc(j.created_at), "updated_at": iso_utc(j.updated_at)}


def run_json(r: Run) -> dict[str, Any]:
    """A run in the CML shape."""
    return {"id": r.id, "job_id": r.job_id, "project_id": r.project_id, "status": r.status,
            "trigger": r.trigger, "triggered_by": r.triggered_by, "run_as": r.run_as,
            "parent_run_id": r.parent_run_id or "", "attempt": r.attempt,
            "exit_code": r.exit_code, "reason": r.reason, "spark": r.spark or {},
            "node": r.owner or "",
            "created_at": iso_utc(r.created_at), "scheduling_at": iso_utc(r.created_at),
            "starting_at": iso_utc(r.started_at), "running_at": iso_utc(r.started_at),
            "finished_at": iso_utc(r.ended_at)}


NAME = Field(min_length=1, max_length=255)
TEXT = Field(max_length=MAX_TEXT)
COUNT = Field(ge=0, le=MAX_INT)
ID = Field(max_length=64)
Variables = Annotated[dict[Annotated[str, Field(max_length=255)],
                           Annotated[str, Field(max_length=MAX_VALUE)]],
                      Field(max_length=MAX_VARIABLES)]


class ProjectIn(BaseModel):
    """Create a project."""

    name: Annotated[str, NAME]
    description: Annotated[str, TEXT] = ""
    path: Annotated[str | None, Field(max_length=4096)] = Field(
        None, description="A folder inside the projects root (relative paths are resolved "
                          "against it); default: a new folder named after the project")


class SparkSettings(BaseModel, extra="forbid"):
    """Driver and executor settings of a spark-submit job or run (see icefloe.jobs.submit)."""

    driver_memory: Annotated[str | None, Field(max_length=16, examples=["1g"])] = None
    executor_memory: Annotated[str | None, Field(max_length=16, examples=["2g"])] = None
    driver_cores: Annotated[int | None, Field(ge=1, le=MAX_CORES)] = None
    executor_cores: Annotated[int | None, Field(ge=1, le=MAX_CORES)] = None
    num_executors: Annotated[int | None, Field(ge=1, le=MAX_CORES)] = None
    conf: Annotated[dict[Annotated[str, Field(max_length=256)],
                         Annotated[str, Field(max_length=MAX_CONF_VALUE)]] | None,
                    Field(max_length=MAX_CONF)] = None


def spark_of(body: SparkSettings | None) -> dict[str, Any] | None:
    """The given settings of a request body, checked (None when there are none)."""
    if body is None:
        return None
    return check_spark(body.model_dump(exclude_none=True)) or None


class JobIn(BaseModel):
    """Create a job (CML field names)."""

    name: Annotated[str, NAME]
    script: Annotated[str, Field(max_length=1024)]
    kernel: Annotated[str, Field(max_length=32)] = "python3"
    arguments: Annotated[str, TEXT] = ""
    environment: Variables = Field(default_factory=dict)
    secret_environment: Variables = Field(
        default_factory=dict, description="Variables only the run sees; stored encrypted and "
                                          "never returned (listed by name)")
    cpu: Annotated[int, COUNT] = 1
    memory: Annotated[int, COUNT] = 1
    timeout: Annotated[int, COUNT] = 0
    retries: Annotated[int, COUNT] = 0
    parent_job_id: Annotated[str | None, ID] = None
    schedule: Annotated[str, Field(max_length=255)] = ""
    paused: bool = False
    spark: SparkSettings | None = Field(
        None, description="Driver and executor settings (kernel spark-submit)")


class JobPatch(BaseModel):
    """Change some fields of a job."""

    name: Annotated[str | None, NAME] = None
    script: Annotated[str | None, Field(max_length=1024)] = None
    kernel: Annotated[str | None, Field(max_length=32)] = None
    arguments: Annotated[str | None, TEXT] = None
    environment: Variables | None = None
    secret_environment: Variables | None = None
    cpu: Annotated[int | None, COUNT] = None
    memory: Annotated[int | None, COUNT] = None
    timeout: Annotated[int | None, COUNT] = None
    retries: Annotated[int | None, COUNT] = None
    parent_job_id: Annotated[str | None, ID] = None
    schedule: Annotated[str | None, Field(max_length=255)] = None
    paused: bool | None = None
    spark: SparkSettings | None = None


class RunIn(BaseModel):
    """Start a run (CML's body; an empty body runs the job as it is defined)."""

    arguments: Annotated[str | None, TEXT] = Field(
        None, description="This run's arguments instead of the job's")
    environment: Variables | None = Field(
        None, description="Variables added to the job's for this run only")
    spark: SparkSettings | None = Field(
        None, description="Spark settings over the job's for this run only (spark-submit)")


IDEMPOTENCY_KEY = Header(None, max_length=255, description=(
    "A repeated key for the same job answers with the run the first request started "
    "(running or ended) instead of starting another"))


def request_run(database: Database, request: Request, project_id: str, job_ref: str, *,
                by_name: bool = False, idempotency_key: str | None = None,
                arguments: str | None = None, environment: dict[str, str] | None = None,
                spark: dict[str, Any] | None = None, number: bool = False
                ) -> tuple[dict[str, Any], bool]:
    """Start a run of a job, or find the one an earlier request with the same key started.

    Args:
        database: The platform DB.
        request: The HTTP request (its principal triggers the run).
        project_id: The job's project.
        job_ref: The job's id (or its name with ``by_name``).
        by_name: Find the job by name.
        idempotency_key: The caller's key for this request (None: always a new run).
        arguments: The run's own arguments (None: the job's).
        environment: Variables added to the job's for this run.
        spark: Spark settings over the job's for this run (checked).
        number: Also give the run its integer id (``"number"``) for the CDE routes.

    Returns:
        The run in the CML shape, and whether this request started it.
    """
    if environment:
        check_variables(environment, "environment")
    if arguments is not None:
        try:  # split at launch; refused now, not as a run that cannot start
            shlex.split(arguments)
        except ValueError as exc:
            raise InvalidInputError(f"arguments: cannot be split like a shell line: "
                                    f"{exc}") from None
    principal = principal_of(request.scope)
    who = actor(request.scope)

    def existing(s: Session, job: Job) -> dict[str, Any] | None:
        run = repo.run_by_key(s, job.id, idempotency_key) if idempotency_key else None
        if run is None:
            return None
        if (run.arguments, run.environment or None, run.spark or None) != \
                (arguments, environment or None, spark or None):
            raise InvalidInputError(
                f"idempotency key {idempotency_key!r} was used for run {run.id} of job "
                f"{job.name!r} with other arguments, environment or Spark settings; use a "
                "new key")
        return {**run_json(run), **({"number": repo.run_number(s, run.id)} if number else {})}

    for _ in range(2):
        try:
            with database.session() as s:
                reachable(s, request, project_id, change=True)
                job = (repo.get_job_by_name(s, project_id, job_ref) if by_name
                       else repo.get_job(s, project_id, job_ref))
                found = existing(s, job)
                if found is not None:
                    return found, False
                run = repo.create_run(s, job, "api", who,
                                      run_as=principal.user if principal else "",
                                      idempotency_key=idempotency_key, arguments=arguments,
                                      environment=environment, spark=spark)
                repo.audit(s, who, "run.create", f"run/{run.id}", "ok", job.name)
                out = run_json(run)
                if number:
                    out["number"] = repo.run_number(s, run.id)
                return out, True
        except IntegrityError:
            if not idempotency_key:
                raise
            # Another request with the same key won the race: the next pass finds its run.
            continue
    raise ConflictError(f"idempotency key {idempotency_key!r} is in use and its run could "
                        "not be read; try again")


def reachable(s: Session, request: Request, project_id: str, *, change: bool = False,
              own: bool = False) -> Project:
    """The project, or 404 when it does not exist or the caller may not see it.

    Args:
        s: A store session.
        request: The request (its principal).
        project_id: The project.
        change: The caller must be allowed to change what it holds (owner or editor; 403).
        own: The caller must own it (its members, its deletion; 403).
    """
    principal = principal_of(request.scope)
    if principal is not None and not principal.reaches(project_id):
        raise NotFoundError(f"project {project_id[:64]!r} does not exist")
    project = repo.get_project(s, project_id)
    if principal is not None:
        if own and not principal.owns(project_id):
            raise ForbiddenError(f"only an owner of project {project.name!r} (or an admin) "
                                 "may do that")
        if change and not principal.may_change(project_id):
            raise ForbiddenError(f"your role in project {project.name!r} only reads")
    return project


def _not_anothers_folder(s: Session, settings: Settings, folder: Path, new_id: str) -> None:
    """Refuse a folder another project already runs its jobs from (its scripts and logs
    are that project's)."""
    for (other,) in s.execute(select(Project.path).where(Project.id != new_id)):
        try:
            taken = folders.resolve_inside(settings.resolved_projects_root, other)
        except (InvalidInputError, OSError, ValueError):
            continue
        if taken == folder:
            raise ConflictError(f"project path {str(folder)[:200]!r} is already another "
                                "project's folder")


def _people_only(request: Request, what: str) -> None:
    """Refuse a job run's token what only people may do (403)."""
    principal = principal_of(request.scope)
    if principal is not None and principal.run_id is not None:
        raise ForbiddenError(f"a job run may not {what}")


def _job_fields(body: BaseModel, settings: Settings, *, exclude_unset: bool) -> dict[str, Any]:
    fields = body.model_dump(exclude_unset=exclude_unset)
    if "spark" in fields:
        fields["spark"] = spark_of(getattr(body, "spark", None)) or {}
    if fields.get("secret_environment") is not None:
        # Checked here, before sealing: the store only ever sees ciphertext.
        check_variables(fields["secret_environment"], "secret_environment")
        fields["secret_environment"] = vault.seal(settings, fields["secret_environment"])
    elif "secret_environment" in fields:
        del fields["secret_environment"]
    return fields


def add_project_routes(router: APIRouter, database: Database, settings: Settings,
                       runner: Runner) -> None:
    """Register the projects, jobs and runs routes on the /api/v2 router."""

    @router.get("/projects")
    def list_projects(request: Request, search: str | None = SEARCH,
                      page_size: int = PAGE_SIZE, page_token: str | None = PAGE_TOKEN
                      ) -> dict[str, Any]:
        principal = principal_of(request.scope)
        with database.session() as s:
            rows, token = repo.list_projects(
                s, search=search, page_size=page_size, page_token=page_token,
                only=principal.visible_projects() if principal else None)
            return {"projects": [project_json(p) for p in rows], "next_page_token": token}

    @router.post("/projects", status_code=201)
    def create_project(body: ProjectIn, request: Request) -> dict[str, Any]:
        _people_only(request, "create projects")
        valid_name("project", body.name)
        principal = principal_of(request.scope)
        if body.name == membership.DEFAULT_PROJECT and principal is not None \
                and not principal.is_admin:
            raise ForbiddenError(f"project name {body.name!r} is reserved for the platform's "
                                 "default project (what no project claimed); only an admin "
                                 "may create it")
        try:
            path, made = folders.project_folder(settings, body.name, body.path)
        except (OSError, ValueError) as exc:  # a name too long, a NUL, a symlink loop
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise InvalidInputError(f"project path {(body.path or body.name)[:200]!r} cannot "
                                    f"be used: {reason}") from None
        try:
            with database.session() as s:
                project = repo.create_project(s, body.name, str(path), body.description)
                if not made:
                    _not_anothers_folder(s, settings, path, project.id)
                if principal is not None:
                    membership.set_member(s, project.id, principal.user, "owner",
                                          by=principal.user)
                repo.audit(s, actor(request.scope), "project.create",
                           f"project/{project.id}", "ok", str(path))
                made_project = project_json(project)
            request.app.state.keys.clear()  # cached principals carry their memberships
            return made_project
        except BaseException:
            if made:  # the folder was made for this project: do not leave it behind
                folders.remove_empty(path)
            raise

    @router.get("/projects/{project_id}")
    def get_project(project_id: str, request: Request) -> dict[str, Any]:
        with database.session() as s:
            return project_json(reachable(s, request, project_id))

    @router.delete("/projects/{project_id}", status_code=204)
    def delete_project(project_id: str, request: Request) -> None:
        _people_only(request, "delete projects")
        with database.session() as s:
            project = reachable(s, request, project_id, own=True)
            moved = membership.hand_over_models(s, settings, project)
            repo.delete_project(s, project.id)
            repo.audit(s, actor(request.scope), "project.delete", f"project/{project_id}",
                       "ok", project.name + (f"; {moved} to the default project" if moved
                                             else ""))

    @router.get("/projects/{project_id}/jobs")
    def list_jobs(project_id: str, request: Request, search: str | None = SEARCH,
                  page_size: int = PAGE_SIZE, page_token: str | None = PAGE_TOKEN
                  ) -> dict[str, Any]:
        with database.session() as s:
            reachable(s, request, project_id)
            rows, token = repo.list_jobs(s, project_id, search=search, page_size=page_size,
                                         page_token=page_token)
            return {"jobs": [job_json(j) for j in rows], "next_page_token": token}

    @router.post("/projects/{project_id}/jobs", status_code=201)
    def create_job(project_id: str, body: JobIn, request: Request) -> dict[str, Any]:
        fields = _job_fields(body, settings, exclude_unset=False)
        principal = principal_of(request.scope)
        with database.session() as s:
            reachable(s, request, project_id, change=True)
            job = repo.create_job(s, project_id, fields,
                                  created_by=principal.user if principal else "")
            repo.audit(s, actor(request.scope), "job.create", f"job/{job.id}", "ok", job.name)
            return job_json(job)

    @router.get("/projects/{project_id}/jobs/{job_id}")
    def get_job(project_id: str, job_id: str, request: Request) -> dict[str, Any]:
        with database.session() as s:
            reachable(s, request, project_id)
            return job_json(repo.get_job(s, project_id, job_id))

    @router.patch("/projects/{project_id}/jobs/{job_id}")
    def update_job(project_id: str, job_id: str, body: JobPatch,
                   request: Request) -> dict[str, Any]:
        fields = _job_fields(body, settings, exclude_unset=True)
        with database.session() as s:
            reachable(s, request, project_id, change=True)
            job = repo.update_job(s, project_id, job_id, fields)
            repo.audit(s, actor(request.scope), "job.update", f"job/{job.id}", "ok")
            return job_json(job)

    @router.delete("/projects/{project_id}/jobs/{job_id}", status_code=204)
    def delete_job(project_id: str, job_id: str, request: Request) -> None:
        with database.session() as s:
            reachable(s, request, project_id, change=True)
            repo.delete_job(s, project_id, job_id)
            repo.audit(s, actor(request.scope), "job.delete", f"job/{job_id}", "ok")

    @router.post("/projects/{project_id}/jobs/{job_id}/runs", status_code=201)
    def create_run(project_id: str, job_id: str, request: Request, response: Response,
                   body: RunIn | None = None,
                   idempotency_key: str | None = IDEMPOTENCY_KEY) -> dict[str, Any]:
        run, started = request_run(
            database, request, project_id, job_id, idempotency_key=idempotency_key,
            arguments=body.arguments if body else None,
            environment=body.environment if body else None,
            spark=spark_of(body.spark) if body else None)
        if not started:
            response.status_code = 200  # the run an earlier request with this key started
        return run

    @router.get("/projects/{project_id}/jobs/{job_id}/runs")
    def list_runs(project_id: str, job_id: str, request: Request,
                  page_size: int = PAGE_SIZE, page_token: str | None = PAGE_TOKEN
                  ) -> dict[str, Any]:
        with database.session() as s:
            reachable(s, request, project_id)
            rows, token = repo.list_runs(s, project_id, job_id, page_size=page_size,
                                         page_token=page_token)
            return {"job_runs": [run_json(r) for r in rows], "next_page_token": token}

    @router.post("/projects/{project_id}/jobs/{job_id}/runs/{run_id}:stop",
                 operation_id="stop_run_cml")
    @router.post("/projects/{project_id}/jobs/{job_id}/runs/{run_id}/stop",
                 operation_id="stop_run")
    def stop_run(project_id: str, job_id: str, run_id: str, request: Request) -> dict[str, Any]:
        with database.session() as s:
            reachable(s, request, project_id, change=True)
            repo.get_run(s, project_id, job_id, run_id)
        stopped = runner.stop(run_id, reason=f"stopped by {actor(request.scope)}")
        with database.session() as s:
            repo.audit(s, actor(request.scope), "run.stop", f"run/{run_id}",
                       "ok" if stopped else "already ended")
            return run_json(repo.get_run(s, project_id, job_id, run_id))

    @router.get("/projects/{project_id}/jobs/{job_id}/runs/{run_id}")
    def get_run(project_id: str, job_id: str, run_id: str, request: Request) -> dict[str, Any]:
        with database.session() as s:
            reachable(s, request, project_id)
            return run_json(repo.get_run(s, project_id, job_id, run_id))

    @router.get("/projects/{project_id}/jobs/{job_id}/runs/{run_id}/logs")
    def run_logs(project_id: str, job_id: str, run_id: str, request: Request,
                 offset: int = Query(0, ge=0, le=MAX_OFFSET)) -> dict[str, Any]:
        with database.session() as s:
            reachable(s, request, project_id)
            run = repo.get_run(s, project_id, job_id, run_id)
            path = runner.log_path(run)
            status = run.status
        data, size = b"", 0
        if path.is_file():
            with path.open("rb") as fh:
                size = fh.seek(0, 2)
                # Past the end there is nothing to read (and a file system refuses a seek
                # far beyond its largest file).
                if offset < size:
                    fh.seek(offset)
                    data = fh.read(MAX_LOG_CHUNK)
        return {"run_id": run_id, "status": status, "offset": offset,
                "next_offset": offset + len(data), "size": size,
                "content": data.decode("utf-8", errors="replace")}

"""Store operations on one session: projects, jobs, runs, keys and audit events.

Every function takes an open session (``with db.session() as s``) so that callers decide the
transaction; errors are :mod:`icefloe.errors` types that name the project, job or run.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from icefloe.errors import ConflictError, InvalidInputError, NotFoundError
from icefloe.jobs import states
from icefloe.jobs.graph import would_cycle
from icefloe.jobs.spec import MAX_TEXT, check_job_fields
from icefloe.names import valid_name
from icefloe.paging import check_page_size, offset_of, token_for
from icefloe.store.orm import AuditEvent, Build, Deployment, Job, Project, Run, RunNumber


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A new random id."""
    return str(uuid.uuid4())


# -- paging ------------------------------------------------------------------------------

def page(query: Any, s: Session, page_size: int, page_token: str | None) -> tuple[list[Any], str]:
    """One page of ``query`` and the token of the next page ("" at the end), like CML."""
    check_page_size(page_size)
    offset = offset_of(page_token)
    rows = list(s.scalars(query.offset(offset).limit(page_size + 1)))
    token = ""
    if len(rows) > page_size:
        rows = rows[:page_size]
        token = token_for(offset + page_size)
    return rows, token


# -- projects ----------------------------------------------------------------------------

def create_project(s: Session, name: str, path: str, description: str = "") -> Project:
    """Create a project; its name is unique."""
    valid_name("project", name)
    if len(description or "") > MAX_TEXT:
        raise InvalidInputError(f"project description is over {MAX_TEXT} characters")
    if s.scalar(select(Project).where(Project.name == name)) is not None:
        raise ConflictError(f"project {name!r} already exists")
    project = Project(id=new_id(), name=name, path=path, description=description or "",
                      created_at=now(), updated_at=now())
    s.add(project)
    s.flush()
    return project


def get_build(s: Session, build_id: str) -> Build:
    """A model build by id."""
    build = s.get(Build, build_id)
    if build is None:
        raise NotFoundError(f"build {build_id!r} does not exist")
    return build


def get_deployment(s: Session, deployment_id: str) -> Deployment:
    """A model deployment by id."""
    dep = s.get(Deployment, deployment_id)
    if dep is None:
        raise NotFoundError(f"deployment {deployment_id!r} does not exist")
    return dep


def get_project(s: Session, project_id: str) -> Project:
    """A project by id."""
    project = s.get(Project, project_id)
    if project is None:
        raise NotFoundError(f"project {project_id!r} does not exist")
    return project


def list_projects(s: Session, *, search: str | None = None, page_size: int = 100,
                  page_token: str | None = None,
                  only: frozenset[str] | None = None) -> tuple[list[Project], str]:
    """Projects by name, optionally only those whose name contains ``search`` (and only the
    projects in ``only`` when the caller may see just those)."""
    query = select(Project).order_by(Project.name)
    if only is not None:
        query = query.where(Project.id.in_(only))
    if search:
        query = query.where(Project.name.contains(search))
    return page(query, s, page_size, page_token)


def delete_project(s: Session, project_id: str) -> None:
    """Delete a project with its jobs and runs; refused while any of its runs is active."""
    project = get_project(s, project_id)
    active = s.scalar(select(func.count()).select_from(Run).where(
        Run.project_id == project_id, Run.status.in_(states.ACTIVE)))
    if active:
        raise ConflictError(f"project {project.name!r} has {active} active run(s); stop them "
                            "first")
    s.delete(project)


# -- jobs --------------------------------------------------------------------------------

def _parents(s: Session, project_id: str) -> dict[str, str | None]:
    rows = s.execute(select(Job.id, Job.parent_job_id).where(Job.project_id == project_id))
    return {job_id: parent for job_id, parent in rows}


def _apply_job_fields(s: Session, job: Job, fields: dict[str, Any], creating: bool) -> None:
    """Apply job fields checked by the job rules, then what needs the database: the parent
    exists in the same project and makes no cycle."""
    checked = check_job_fields(fields, creating=creating)
    parent = checked.pop("parent_job_id", job.parent_job_id)
    for name, value in checked.items():
        setattr(job, name, value)
    if parent is not None and parent != job.parent_job_id:
        parent_job = s.get(Job, parent)
        if parent_job is None or parent_job.project_id != job.project_id:
            raise NotFoundError(f"parent job {parent!r} does not exist in this project")
        if would_cycle(_parents(s, job.project_id), job.id, parent):
            raise ConflictError(
                f"parent job {parent_job.name!r} would make a dependency cycle")
    job.parent_job_id = parent


def create_job(s: Session, project_id: str, fields: dict[str, Any],
               created_by: str = "") -> Job:
    """Create a job in a project (name unique per project, parent in the same project).

    ``created_by`` is the user scheduled runs act as.
    """
    get_project(s, project_id)
    job = Job(id=new_id(), project_id=project_id, kernel="python3", arguments="",
              environment={}, spark={}, cpu=1, memory=1, timeout=0, retries=0, schedule="",
              paused=False, secret_environment="", created_by=created_by,
              created_at=now(), updated_at=now())
    _apply_job_fields(s, job, fields, creating=True)
    if s.scalar(select(Job).where(Job.project_id == project_id, Job.name == job.name)):
        raise ConflictError(f"job {job.name!r} already exists in this project")
    s.add(job)
    s.flush()
    return job


def update_job(s: Session, project_id: str, job_id: str, fields: dict[str, Any]) -> Job:
    """Change a job's fields (checked like at creation)."""
    job = get_job(s, project_id, job_id)
    _apply_job_fields(s, job, fields, creating=False)
    job.updated_at = now()
    s.flush()
    return job


def get_job(s: Session, project_id: str, job_id: str) -> Job:
    """A job of a project."""
    job = s.get(Job, job_id)
    if job is None or job.project_id != project_id:
        raise NotFoundError(f"job {job_id!r} does not exist in project {project_id!r}")
    return job


def get_job_by_name(s: Session, project_id: str, name: str) -> Job:
    """A job of a project, by its name."""
    job = s.scalar(select(Job).where(Job.project_id == project_id, Job.name == name))
    if job is None:
        raise NotFoundError(f"job {name!r} does not exist in project {project_id!r}")
    return job


def list_jobs(s: Session, project_id: str, *, search: str | None = None, page_size: int = 100,
              page_token: str | None = None) -> tuple[list[Job], str]:
    """Jobs of a project by name."""
    get_project(s, project_id)
    query = select(Job).where(Job.project_id == project_id).order_by(Job.name)
    if search:
        query = query.where(Job.name.contains(search))
    return page(query, s, page_size, page_token)


def delete_job(s: Session, project_id: str, job_id: str) -> None:
    """Delete a job; refused while it has active runs."""
    job = get_job(s, project_id, job_id)
    active = s.scalar(select(func.count()).select_from(Run).where(
        Run.job_id == job_id, Run.status.in_(states.ACTIVE)))
    if active:
        raise ConflictError(f"job {job.name!r} has {active} active run(s); stop them first")
    s.delete(job)


def child_jobs(s: Session, job: Job) -> list[Job]:
    """Jobs whose parent is ``job``."""
    return list(s.scalars(select(Job).where(Job.parent_job_id == job.id).order_by(Job.name)))


# -- runs --------------------------------------------------------------------------------

def create_run(s: Session, job: Job, trigger: str, triggered_by: str,
               parent_run_id: str | None = None, attempt: int = 1, run_as: str = "", *,
               idempotency_key: str | None = None, arguments: str | None = None,
               environment: dict[str, str] | None = None,
               spark: dict[str, Any] | None = None) -> Run:
    """Queue a run of ``job`` (state ENGINE_SCHEDULING) acting as the user ``run_as``.

    Args:
        idempotency_key: The caller's key for this request; a second run of the same job
            with the same key fails on the store's unique constraint (see
            :func:`run_by_key`).
        arguments: This run's arguments instead of the job's (None: the job's).
        environment: Variables added to the job's for this run only.
        spark: Spark settings over the job's for this run only (checked by the caller).
    """
    run = Run(id=new_id(), job_id=job.id, project_id=job.project_id, status=states.SCHEDULING,
              trigger=trigger, triggered_by=triggered_by, run_as=run_as,
              parent_run_id=parent_run_id,
              attempt=attempt, owner="", reason="", log_path="", created_at=now(),
              idempotency_key=idempotency_key, arguments=arguments,
              environment=environment or None, spark=spark or None)
    s.add(run)
    s.flush()
    return run


def run_by_key(s: Session, job_id: str, idempotency_key: str) -> Run | None:
    """The run a request with this idempotency key already started for a job, if any."""
    return s.scalar(select(Run).where(Run.job_id == job_id,
                                      Run.idempotency_key == idempotency_key))


def run_number(s: Session, run_id: str) -> int:
    """The integer a run is known by on the CDE routes (given on first use)."""
    number = s.scalar(select(RunNumber.number).where(RunNumber.run_id == run_id))
    if number is None:
        row = RunNumber(run_id=run_id)
        s.add(row)
        s.flush()
        number = row.number
    return number


def run_of_number(s: Session, project_id: str, number: int) -> Run:
    """The run behind a CDE job-run id, in a project."""
    run = s.scalar(select(Run).join(RunNumber, RunNumber.run_id == Run.id)
                   .where(RunNumber.number == number, Run.project_id == project_id))
    if run is None:
        raise NotFoundError(f"job run {number} does not exist")
    return run


def get_run(s: Session, project_id: str, job_id: str, run_id: str) -> Run:
    """A run of a job."""
    run = s.get(Run, run_id)
    if run is None or run.job_id != job_id or run.project_id != project_id:
        raise NotFoundError(f"run {run_id!r} does not exist for job {job_id!r}")
    return run


def list_runs(s: Session, project_id: str, job_id: str, *, page_size: int = 100,
              page_token: str | None = None) -> tuple[list[Run], str]:
    """Runs of a job, newest first."""
    get_job(s, project_id, job_id)
    query = select(Run).where(Run.job_id == job_id).order_by(Run.created_at.desc(), Run.id)
    return page(query, s, page_size, page_token)


def move_run(s: Session, run_id: str, new_status: str, **fields: Any) -> Run | None:
    """Move a run to ``new_status`` if the state machine allows it; None if it may not.

    The row is locked (``SELECT ... FOR UPDATE`` on Postgres; SQLite serialises writers), so
    two parties racing to end a run cannot both win.
    """
    run = s.scalar(select(Run).where(Run.id == run_id).with_for_update())
    if run is None or not states.can_move(run.status, new_status):
        return None
    run.status = new_status
    for key, value in fields.items():
        setattr(run, key, value)
    if new_status == states.RUNNING and run.started_at is None:
        run.started_at = now()
    if new_status in states.TERMINAL:
        run.ended_at = now()
    s.flush()
    return run


def claim_run(s: Session, run_id: str, owner: str) -> Run | None:
    """Take a queued run for the node ``owner`` (STARTING): one conditional update, so of
    several nodes reaching for the same run exactly one gets it. None if another did."""
    claimed = s.execute(update(Run).where(Run.id == run_id, Run.status == states.SCHEDULING)
                        .values(status=states.STARTING, owner=owner)
                        .execution_options(synchronize_session=False))
    if not getattr(claimed, "rowcount", 0):
        return None
    run = s.get(Run, run_id)
    if run is not None:
        s.refresh(run)
    return run


def runs_in(s: Session, statuses: frozenset[str] | set[str]) -> list[Run]:
    """Runs in any of ``statuses``, oldest first."""
    return list(s.scalars(select(Run).where(Run.status.in_(statuses)).order_by(Run.created_at)))


# -- audit ------------------------------------------------------------------------------

# The key the current request acts with: set by the authentication layer, so every audit
# event records it without each route passing it along.
ACTING_KEY: ContextVar[str | None] = ContextVar("icefloe_acting_key", default=None)


def audit(s: Session, actor: str, action: str, target: str, outcome: str,
          detail: str = "", *, key_id: str | None = None) -> None:
    """Record an audit event (``key_id``: the acting key, by default the request's)."""
    s.add(AuditEvent(at=now(), actor=actor, action=action, target=target, outcome=outcome,
                     detail=detail[:2000], key_id=key_id or ACTING_KEY.get()))


@dataclass(frozen=True)
class AuditFilter:
    """Which audit events to list: each given field must match (``target`` and ``action``
    by prefix, so ``run.`` or ``table/lending.`` select a family)."""

    actor: str | None = None
    key_id: str | None = None
    target: str | None = None
    action: str | None = None


def _prefix(column: Any, text: str) -> Any:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(f"{escaped}%", escape="\\")


def list_audit(s: Session, *, page_size: int = 100, page_token: str | None = None,
               where: AuditFilter | None = None) -> tuple[list[AuditEvent], str]:
    """Audit events, newest first, optionally filtered."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc())
    if where is not None:
        if where.actor:
            query = query.where(AuditEvent.actor == where.actor)
        if where.key_id:
            query = query.where(AuditEvent.key_id == where.key_id)
        if where.target:
            query = query.where(_prefix(AuditEvent.target, where.target))
        if where.action:
            query = query.where(_prefix(AuditEvent.action, where.action))
    return page(query, s, page_size, page_token)

"""The store reads of the UI's lists that no single API route answers (runs across jobs,
firing alerts), each limited to the projects the signed-in principal sees, and paged so a
list of 10,000 runs reads one page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select

from icefloe.auth.principals import Principal
from icefloe.lineage.nodes import airflow_parts
from icefloe.store.db import Database
from icefloe.store.orm import AlertRule, Deployment, Job, Project, Run
from icefloe.timefmt import iso_utc


@dataclass(frozen=True)
class RunFilter:
    """Which runs a list shows (each from the URL, so a filtered list can be shared).

    ``trigger`` is ``manual``, ``airflow``, ``schedule``, ``parent`` or ``retry``."""

    project_id: str | None = None
    job_id: str | None = None
    status: str | None = None
    trigger: str | None = None


def run_row(run: Run, job_name: str, project_name: str) -> dict[str, Any]:
    """A run as the run lists show it: its trigger spelled out (an Airflow task included)."""
    task = airflow_parts(run.idempotency_key)
    started, ended = run.started_at, run.ended_at
    seconds = (ended - started).total_seconds() if started and ended else None
    return {"id": run.id, "job_id": run.job_id, "job": job_name, "project_id": run.project_id,
            "project": project_name, "status": run.status, "trigger": run.trigger,
            "triggered_by": run.triggered_by, "run_as": run.run_as,
            "parent_run_id": run.parent_run_id or "", "attempt": run.attempt,
            "airflow": ({"dag_id": task[0], "dag_run_id": task[1], "task_id": task[2]}
                        if task else None),
            "created_at": iso_utc(run.created_at), "started_at": iso_utc(started),
            "ended_at": iso_utc(ended), "seconds": seconds, "reason": run.reason,
            "exit_code": run.exit_code}


def runs(db: Database, who: Principal, where: RunFilter, *, offset: int = 0,
         limit: int = 50) -> tuple[list[dict[str, Any]], bool]:
    """A page of runs, newest first, and whether there are more."""
    visible = who.visible_projects()
    query = (select(Run, Job.name, Project.name).join(Job, Job.id == Run.job_id)
             .join(Project, Project.id == Run.project_id))
    if visible is not None:
        query = query.where(Run.project_id.in_(visible))
    if where.project_id:
        query = query.where(Run.project_id == where.project_id)
    if where.job_id:
        query = query.where(Run.job_id == where.job_id)
    if where.status:
        query = query.where(Run.status == where.status)
    if where.trigger == "airflow":  # started by an Airflow task (its idempotency key)
        query = query.where(Run.idempotency_key.like("airflow:%"))
    elif where.trigger == "manual":  # by a person, through the API, CLI or UI
        query = query.where(Run.trigger == "api", or_(
            Run.idempotency_key.is_(None), ~Run.idempotency_key.like("airflow:%")))
    elif where.trigger:
        query = query.where(Run.trigger == where.trigger)
    query = query.order_by(Run.created_at.desc(), Run.id).offset(offset).limit(limit + 1)
    with db.session() as s:
        rows = [run_row(run, job, project) for run, job, project in s.execute(query)]
    return rows[:limit], len(rows) > limit


def run_counts(db: Database, who: Principal, project_id: str | None = None
               ) -> dict[str, int]:
    """How many runs are in each status."""
    visible = who.visible_projects()
    query = select(Run.status, func.count()).group_by(Run.status)
    if visible is not None:
        query = query.where(Run.project_id.in_(visible))
    if project_id:
        query = query.where(Run.project_id == project_id)
    with db.session() as s:
        return {status: int(n) for status, n in s.execute(query)}


def firing_alerts(db: Database, who: Principal) -> list[dict[str, Any]]:
    """Alert rules that fire now, on deployments the principal sees."""
    visible = who.visible_projects()
    query = (select(AlertRule, Deployment.model_name, Deployment.model_version)
             .join(Deployment, Deployment.id == AlertRule.deployment_id)
             .where(AlertRule.state == "FIRING", Deployment.status == "DEPLOYED"))
    if visible is not None:
        query = query.where(Deployment.project_id.in_(visible))
    with db.session() as s:
        return [{"rule_id": r.id, "deployment_id": r.deployment_id, "model": model,
                 "model_version": version, "metric": r.metric, "feature": r.feature,
                 "comparison": r.comparison, "threshold": r.threshold,
                 "value": r.last_value, "since": iso_utc(r.state_since)}
                for r, model, version in s.execute(query.order_by(AlertRule.state_since))]


def run_by_id(db: Database, who: Principal, run_id: str) -> dict[str, Any] | None:
    """A run the principal may see, or None (hidden and missing alike)."""
    with db.session() as s:
        found = s.execute(select(Run, Job.name, Project.name).join(Job, Job.id == Run.job_id)
                          .join(Project, Project.id == Run.project_id)
                          .where(Run.id == run_id)).first()
        if found is None or not who.reaches(found[0].project_id):
            return None
        return run_row(*found)

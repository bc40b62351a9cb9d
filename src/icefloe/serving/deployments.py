"""Deployments: a READY build served by replicas behind an access key.

The database says what should be served; the :class:`Supervisor` serves it. Creating or
redeploying returns once the replicas are ready; if they never are, a new deployment is
``FAILED`` with the reason and a redeploy leaves the old build serving (the reason is kept
on the deployment). Deployments still ``DEPLOYED`` come back when the control plane starts.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select

from icefloe.auth.digests import access_key_hash as key_hash
from icefloe.errors import ConflictError, UnavailableError
from icefloe.serving.builds import READY
from icefloe.serving.supervisor import Supervisor
from icefloe.store import repo
from icefloe.store.db import Database
from icefloe.store.models import Build, Deployment

DEPLOYED, STOPPED, FAILED = "DEPLOYED", "STOPPED", "FAILED"
MAX_REPLICAS = 16


def deployment_json(d: Deployment, supervisor: Supervisor | None = None) -> dict[str, Any]:
    """A deployment as plain data (never its access key), with its live replicas."""
    return {"id": d.id, "crn": d.id, "build_id": d.build_id, "model": d.model_name,
            "model_version": d.model_version, "status": d.status, "reason": d.reason,
            "auth_enabled": d.auth_enabled, "replicas": d.replicas,
            "replica_status": supervisor.replicas(d.id) if supervisor else [],
            "created_at": d.created_at.isoformat() if d.created_at else None,
            "updated_at": d.updated_at.isoformat() if d.updated_at else None}


def _ready_build(s: Any, build_id: str) -> Build:
    build = repo.get_build(s, build_id)
    if build.status != READY:
        raise ConflictError(f"build {build_id} is {build.status}: {build.reason}")
    return build


def create_deployment(db: Database, supervisor: Supervisor, build_id: str, *,
                      auth_enabled: bool = True, replicas: int = 1,
                      created_by: str = "") -> tuple[Deployment, str]:
    """Deploy a READY build; returns the deployment and its access key (shown once).

    Raises:
        UnavailableError: The replicas never became ready (the deployment is FAILED).
    """
    if not 1 <= replicas <= MAX_REPLICAS:
        raise ConflictError(f"replicas must be between 1 and {MAX_REPLICAS}, got {replicas}")
    access_key = "m" + secrets.token_hex(16)
    actor = created_by or "system"
    with db.session() as s:
        build = _ready_build(s, build_id)
        dep = Deployment(id=repo.new_id(), build_id=build.id, model_name=build.model_name,
                         model_version=build.model_version, access_key_hash=key_hash(access_key),
                         auth_enabled=auth_enabled, replicas=replicas, status=DEPLOYED,
                         reason="", created_by=created_by, created_at=repo.now(),
                         updated_at=repo.now())
        s.add(dep)
        build_path = build.path
    try:
        supervisor.deploy(dep.id, dep.access_key_hash, dep.model_name, build_id, build_path,
                          replicas=replicas, auth_enabled=auth_enabled)
    except UnavailableError as exc:
        with db.session() as s:
            row = repo.get_deployment(s, dep.id)
            row.status, row.reason, row.updated_at = FAILED, exc.message, repo.now()
            repo.audit(s, actor, "deployment.create", f"deployment/{dep.id}", "failed",
                       exc.message)
        raise
    with db.session() as s:
        repo.audit(s, actor, "deployment.create", f"deployment/{dep.id}", "ok",
                   f"build/{build_id}")
    return dep, access_key


def redeploy(db: Database, supervisor: Supervisor, deployment_id: str, build_id: str,
             actor: str = "") -> Deployment:
    """Move a deployment (same access key, same id) to another build of its model.

    Raises:
        ConflictError: The deployment is not DEPLOYED, or the build is not READY or is of
            another model.
        UnavailableError: The new build's replicas never became ready; the old build keeps
            serving and the reason is kept on the deployment.
    """
    who = actor or "system"
    with db.session() as s:
        dep = repo.get_deployment(s, deployment_id)
        if dep.status != DEPLOYED:
            raise ConflictError(f"deployment {deployment_id} is {dep.status}")
        build = _ready_build(s, build_id)
        if build.model_name != dep.model_name:
            raise ConflictError(f"build {build_id} is of model {build.model_name!r}; "
                                f"deployment {deployment_id} serves {dep.model_name!r}")
        build_path, version = build.path, build.model_version
    try:
        supervisor.redeploy(deployment_id, build_id, build_path)
    except UnavailableError as exc:
        with db.session() as s:
            row = repo.get_deployment(s, deployment_id)
            row.reason = f"redeploy to build {build_id} failed; still serving " \
                         f"{row.build_id}: {exc.message}"
            row.updated_at = repo.now()
            repo.audit(s, who, "deployment.redeploy", f"deployment/{deployment_id}",
                       "failed", row.reason)
        raise
    with db.session() as s:
        row = repo.get_deployment(s, deployment_id)
        previous = row.build_id
        row.build_id, row.model_version, row.reason = build_id, version, ""
        row.updated_at = repo.now()
        repo.audit(s, who, "deployment.redeploy", f"deployment/{deployment_id}", "ok",
                   f"build/{previous} -> build/{build_id}")
    return row


def stop_deployment(db: Database, supervisor: Supervisor, deployment_id: str,
                    actor: str = "") -> Deployment:
    """Stop serving a deployment (its replicas finish what they are answering)."""
    with db.session() as s:
        dep = repo.get_deployment(s, deployment_id)
        dep.status, dep.updated_at = STOPPED, repo.now()
        repo.audit(s, actor or "system", "deployment.stop", f"deployment/{dep.id}", "ok")
    supervisor.stop(deployment_id)
    return dep


def get_deployment(db: Database, deployment_id: str) -> Deployment:
    """One deployment."""
    with db.session() as s:
        return repo.get_deployment(s, deployment_id)


def list_deployments(db: Database) -> list[Deployment]:
    """All deployments, newest first."""
    with db.session() as s:
        return list(s.scalars(select(Deployment).order_by(Deployment.created_at.desc())))


def restore(db: Database, supervisor: Supervisor) -> int:
    """Serve again every DEPLOYED deployment (at control-plane start); returns how many.

    Replicas start in the background: calls that arrive first wait for them briefly.
    """
    with db.session() as s:
        rows = s.execute(select(Deployment, Build.path).join(Build, Build.id ==
                                                             Deployment.build_id)
                         .where(Deployment.status == DEPLOYED)).all()
        wanted = [(d.id, d.access_key_hash, d.model_name, d.build_id, path, d.replicas,
                   d.auth_enabled) for d, path in rows]
    for dep_id, khash, model, build_id, path, replicas, auth in wanted:
        supervisor.deploy(dep_id, khash, model, build_id, path, replicas=replicas,
                          auth_enabled=auth, wait=False)
    return len(wanted)

"""Deployments: a READY build behind an access key, scored in this process.

This first slice serves every deployment from the control plane's own process; replicas in
separate processes with a supervisor and zero-downtime switches come next.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import select

from icefloe.errors import ConflictError, NotFoundError
from icefloe.serving.builds import READY, BuildScorer
from icefloe.store import repo
from icefloe.store.db import Database
from icefloe.store.models import Build, Deployment

DEPLOYED, STOPPED = "DEPLOYED", "STOPPED"


def _key_hash(access_key: str) -> str:
    return hashlib.sha256(access_key.encode()).hexdigest()


def deployment_json(d: Deployment) -> dict[str, Any]:
    """A deployment as plain data (never its access key)."""
    return {"id": d.id, "build_id": d.build_id, "model": d.model_name,
            "model_version": d.model_version, "status": d.status,
            "auth_enabled": d.auth_enabled, "replicas": d.replicas,
            "created_at": d.created_at.isoformat() if d.created_at else None}


def create_deployment(db: Database, build_id: str, *, auth_enabled: bool = True,
                      replicas: int = 1, created_by: str = "") -> tuple[Deployment, str]:
    """Deploy a READY build; returns the deployment and its access key (shown once)."""
    access_key = "m" + secrets.token_hex(16)
    with db.session() as s:
        build = s.get(Build, build_id)
        if build is None:
            raise NotFoundError(f"build {build_id!r} does not exist")
        if build.status != READY:
            raise ConflictError(f"build {build_id} is {build.status}: {build.reason}")
        dep = Deployment(id=repo.new_id(), build_id=build.id, model_name=build.model_name,
                         model_version=build.model_version, access_key_hash=_key_hash(access_key),
                         auth_enabled=auth_enabled, replicas=replicas, status=DEPLOYED,
                         created_by=created_by, created_at=repo.now(), updated_at=repo.now())
        s.add(dep)
        repo.audit(s, created_by or "system", "deployment.create", f"deployment/{dep.id}", "ok",
                   f"build/{build.id}")
    return dep, access_key


def stop_deployment(db: Database, deployment_id: str, actor: str = "") -> Deployment:
    """Stop serving a deployment."""
    with db.session() as s:
        dep = s.get(Deployment, deployment_id)
        if dep is None:
            raise NotFoundError(f"deployment {deployment_id!r} does not exist")
        dep.status, dep.updated_at = STOPPED, repo.now()
        repo.audit(s, actor or "system", "deployment.stop", f"deployment/{dep.id}", "ok")
        return dep


def list_deployments(db: Database) -> list[Deployment]:
    """All deployments, newest first."""
    with db.session() as s:
        return list(s.scalars(select(Deployment).order_by(Deployment.created_at.desc())))


class ModelServer:
    """Finds the deployment of an access key and keeps its scorer loaded."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._scorers: dict[str, BuildScorer] = {}
        self._lock = threading.Lock()

    def resolve(self, access_key: str) -> tuple[Deployment, BuildScorer] | None:
        """The live deployment and scorer for an access key, or None."""
        with self.db.session() as s:
            dep = s.scalar(select(Deployment).where(
                Deployment.access_key_hash == _key_hash(access_key)))
            if dep is None or dep.status != DEPLOYED:
                return None
            build = s.get(Build, dep.build_id)
            assert build is not None
            path = Path(build.path)
        with self._lock:
            scorer = self._scorers.get(dep.build_id)
            if scorer is None:
                scorer = self._scorers[dep.build_id] = BuildScorer.load(path)
        return dep, scorer

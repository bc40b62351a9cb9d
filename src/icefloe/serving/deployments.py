"""Deployments: a READY build served by replicas behind an access key.

The database says what is served, and only once it is: a new deployment is ``DEPLOYING``
until its replicas are ready, then ``DEPLOYED`` (or ``FAILED`` with the reason, its replicas
stopped). A redeploy starts the new build's replicas, records the new build, then moves
traffic; if they never become ready the old build keeps serving and the reason is kept on
the deployment. Changes of one deployment (create, redeploy, stop) take turns in this
process, and each is recorded with a conditional update (the row must still be as it was
read), so the database and the :class:`Supervisor` always name the same build. At start,
deployments still ``DEPLOYED`` are served again and any left ``DEPLOYING`` (the control
plane stopped before their replicas were ready) become ``FAILED``.

With several nodes (``multi_node``), a change is made by the node that took the request
(its replicas start there first); every node then keeps its own share of each deployment's
replicas (see :mod:`icefloe.serving.spread`).
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
import threading
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import SQLAlchemyError

from icefloe.auth.digests import access_key_hash as key_hash
from icefloe.errors import ConflictError, IcefloeError, UnavailableError
from icefloe.happenings import Happening, actor_named, emit, process_parent
from icefloe.serving.builds import READY
from icefloe.serving.schema import (
    InputSchema,
    NewFields,
    describe_fields,
    example_request,
    new_fields,
)
from icefloe.serving.supervisor import Supervisor
from icefloe.store import repo
from icefloe.store.db import Database
from icefloe.store.orm import Build, Deployment
from icefloe.timefmt import iso_utc

DEPLOYING, DEPLOYED, STOPPED, FAILED = "DEPLOYING", "DEPLOYED", "STOPPED", "FAILED"
MAX_REPLICAS = 16
CHANGE_WAIT = 150.0  # seconds a change waits for the one before it on the same deployment
INTERRUPTED = "the control plane stopped before the replicas were ready"
# With several nodes, a DEPLOYING row may be another node's change under way: only one
# left that long (a change's wait and its replicas' start, twice) was surely interrupted.
STALE_DEPLOYING_S = 2 * (CHANGE_WAIT + 60.0)
log = logging.getLogger(__name__)


class _Turn:
    """The lock of one deployment's changes; kept only while someone holds or awaits it."""

    __slots__ = ("__weakref__", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()


_turns: weakref.WeakValueDictionary[str, _Turn] = weakref.WeakValueDictionary()
_turns_lock = threading.Lock()


@contextmanager
def one_change_at_a_time(deployment_id: str, wait: float = CHANGE_WAIT) -> Iterator[None]:
    """Hold the turn of a deployment: its changes in this process run one after another.

    Raises:
        ConflictError: The change before it did not end within ``wait`` seconds.
    """
    with _turns_lock:
        turn = _turns.get(deployment_id)
        if turn is None:
            turn = _turns[deployment_id] = _Turn()
    if not turn.lock.acquire(timeout=wait):
        raise ConflictError(f"deployment {deployment_id} is still being changed by another "
                            f"request; try again")
    try:
        yield
    finally:
        turn.lock.release()


def _transition(s: Any, deployment_id: str, expected: dict[str, Any], **values: Any) -> bool:
    """Update a deployment only if its row still holds ``expected``; whether it did."""
    stmt = (update(Deployment)
            .where(Deployment.id == deployment_id,
                   *(getattr(Deployment, name) == value for name, value in expected.items()))
            .values(updated_at=repo.now(), **values)
            .execution_options(synchronize_session=False))
    return cast("CursorResult[Any]", s.execute(stmt)).rowcount == 1


def _record_failure(db: Database, deployment_id: str, expected: dict[str, Any], actor: str,
                    action: str, reason: str, **values: Any) -> None:
    """Keep why a change failed on the deployment (if it is still as ``expected``); a store
    that cannot take it now is logged (a DEPLOYING row left behind is failed at the next
    start)."""
    try:
        with db.session() as s:
            if _transition(s, deployment_id, expected, reason=reason, **values):
                repo.audit(s, actor, action, f"deployment/{deployment_id}", "failed", reason)
    except SQLAlchemyError:
        log.exception("recording that %s of deployment %s failed (%s) failed", action,
                      deployment_id, reason)


def deployment_json(d: Deployment, supervisor: Supervisor | None = None,
                    build: Build | None = None) -> dict[str, Any]:
    """A deployment as plain data (never its access key), with its live replicas and what a
    request to it looks like: the build's ``input_schema`` and an ``example_request``.

    The schema comes from ``build`` when given (the deployment's build), else from the folder
    of the build the supervisor serves it from; a deployment that is not served and was
    given no build answers None for both.
    """
    schema = (build.input_schema if build is not None and build.id == d.build_id
              else _served_schema(d, supervisor))
    return {"id": d.id, "crn": d.id, "build_id": d.build_id, "model": d.model_name,
            "model_version": d.model_version, "status": d.status, "reason": d.reason,
            "auth_enabled": d.auth_enabled, "replicas": d.replicas,
            "replica_status": supervisor.replicas(d.id) if supervisor else [],
            "input_schema": schema or None, "example_request": example_request(schema),
            "created_at": iso_utc(d.created_at), "updated_at": iso_utc(d.updated_at)}


def _served_schema(d: Deployment, supervisor: Supervisor | None) -> dict[str, Any] | None:
    route = supervisor.route(d.access_key_hash) if supervisor is not None else None
    if route is None or route.build_id != d.build_id or not route.build_path:
        return None
    return _build_schema(route.build_path)


@functools.lru_cache(maxsize=256)
def _build_schema(build_path: str) -> dict[str, Any] | None:
    """The schema file of a build folder (builds are immutable: read once)."""
    try:
        loaded = json.loads((Path(build_path) / "schema.json").read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _ready_build(s: Any, build_id: str) -> Build:
    build = repo.get_build(s, build_id)
    if build.status != READY:
        raise ConflictError(f"build {build_id} is {build.status}: {build.reason}")
    return build


def create_deployment(db: Database, supervisor: Supervisor, build_id: str, *,
                      auth_enabled: bool = True, replicas: int = 1,
                      created_by: str = "") -> tuple[Deployment, str]:
    """Deploy a READY build; returns the deployment and its access key (shown once).

    The row is ``DEPLOYING`` while the replicas start and ``DEPLOYED`` once they are ready,
    just before the first call can reach them.

    Raises:
        UnavailableError: The replicas never became ready (the deployment is FAILED, with
            the reason).
    """
    if not 1 <= replicas <= MAX_REPLICAS:
        raise ConflictError(f"replicas must be between 1 and {MAX_REPLICAS}, got {replicas}")
    access_key = "m" + secrets.token_hex(16)
    actor = created_by or "system"
    with db.session() as s:
        build = _ready_build(s, build_id)
        dep = Deployment(id=repo.new_id(), build_id=build.id, project_id=build.project_id,
                         model_name=build.model_name,
                         model_version=build.model_version, access_key_hash=key_hash(access_key),
                         auth_enabled=auth_enabled, replicas=replicas, status=DEPLOYING,
                         reason="", created_by=created_by, created_at=repo.now(),
                         updated_at=repo.now())
        s.add(dep)
        build_path = build.path
    starting = {"status": DEPLOYING}
    with one_change_at_a_time(dep.id):
        try:
            ready = supervisor.start_replicas(dep.id, build_id, build_path, replicas)
        except BaseException as exc:  # never left DEPLOYING: FAILED with whatever stopped it
            reason = exc.message if isinstance(exc, IcefloeError) else \
                f"starting the replicas failed: {type(exc).__name__}: {exc}"[:2000]
            _record_failure(db, dep.id, starting, actor, "deployment.create", reason,
                            status=FAILED)
            emit(lambda: _happening("FAIL", dep, build_id, created_by, "create", error=reason))
            raise
        try:
            with db.session() as s:
                if not _transition(s, dep.id, starting, status=DEPLOYED):
                    raise ConflictError(f"deployment {dep.id} was changed elsewhere while its "
                                        f"replicas were starting; it is not served")
                repo.audit(s, actor, "deployment.create", f"deployment/{dep.id}", "ok",
                           f"build/{build_id}")
        except BaseException as exc:
            supervisor.discard(dep.id, ready)
            _record_failure(db, dep.id, starting, actor, "deployment.create",
                            f"recording the deployment failed: {exc}"[:2000], status=FAILED)
            raise
        try:
            supervisor.serve(dep.id, dep.access_key_hash, dep.model_name, build_id, build_path,
                             replicas=replicas, auth_enabled=auth_enabled, ready=ready,
                             project_id=dep.project_id)
        except BaseException as exc:  # the control plane is closing (serve stopped `ready`):
            # the access key is never shown, so the deployment must not come back at start.
            _record_failure(db, dep.id, {"status": DEPLOYED}, actor, "deployment.create",
                            f"serving the deployment failed: {exc}"[:2000], status=FAILED)
            raise
    dep.status = DEPLOYED
    emit(lambda: _happening("COMPLETE", dep, build_id, created_by, "create"))
    return dep, access_key


def _happening(state: str, dep: Deployment, build_id: str, actor: str, action: str,
               previous_build_id: str | None = None, error: str = "") -> Happening:
    """A deployment happening: the build now served (create or redeploy), or the error.
    Its run id is stable for one deployment and build."""
    subject = {"deployment_id": dep.id, "build_id": build_id, "model": dep.model_name,
               "version": dep.model_version, "action": action, "project_id": dep.project_id,
               "previous_build_id": previous_build_id, "replicas": dep.replicas}
    if error:
        subject["error"] = error
    run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"icefloe:deployment/{dep.id}/{build_id}"))
    return Happening("deployment", state, run_id, actor=actor_named(actor), subject=subject,
                     parent=process_parent())


def _input_schema(build: Build | None) -> InputSchema | None:
    stored = build.input_schema if build is not None else None
    return InputSchema.from_dict(stored) if stored and "fields" in stored else None


def check_new_fields(dep: Deployment, serving: Build | None, build: Build,
                     accept_new_fields: bool = False) -> NewFields:
    """Compare the input schema of the build a deployment would move to with the one it
    serves; returns the fields the new build adds.

    Raises:
        ConflictError: The new build requires fields the serving build does not take (no
            declared default: callers do not send them today, so every call would be
            refused), naming them, and ``accept_new_fields`` is off.
    """
    old, new = _input_schema(serving), _input_schema(build)
    if old is None or new is None:  # a build made before schemas were kept: nothing to say
        return NewFields()
    added = new_fields(old, new)
    if added.breaks_callers and not accept_new_fields:
        raise ConflictError(
            f"build {build.id} ({build.model_name}/{build.model_version}) "
            f"{added.breaking()}, unlike what deployment {dep.id} takes today (build "
            f"{dep.build_id}, {dep.model_name}/{dep.model_version}): calls its callers make "
            "today would be refused. The deployment still serves its build; redeploy with "
            "accept_new_fields (CLI --accept-new-fields) once callers are ready")
    return added


def redeploy(db: Database, supervisor: Supervisor, deployment_id: str, build_id: str,
             actor: str = "", *, accept_new_fields: bool = False,
             other_nodes: bool = False) -> Deployment:
    """Move a deployment (same access key, same id) to another build of its model.

    Redeploys of one deployment take turns: each starts its build's replicas, records the
    build (only if the row still names the build it replaces), then moves traffic.

    A build that requires input fields the serving build does not take would refuse every
    call its callers make today: it is refused unless ``accept_new_fields``. New fields with
    a declared default (strings: the unknown category) need no acceptance; calls without
    them are scored with it and counted in the tracked metric ``missing_fields``.

    Raises:
        ConflictError: The deployment is not DEPLOYED (or not served here), the build is not
            READY or is of another model, it requires new input fields (naming them) and
            ``accept_new_fields`` is off, or the row changed meanwhile (the new replicas are
            stopped; the old build keeps serving).

    With ``other_nodes`` (several nodes), a node that holds none of the deployment's replicas
    proves the build runs with one replica of its own, records it and stops that replica;
    the nodes holding replicas then move their own share (see :mod:`icefloe.serving.spread`).
        UnavailableError: The new build's replicas never became ready; the old build keeps
            serving and the reason is kept on the deployment.
    """
    who = actor or "system"
    with one_change_at_a_time(deployment_id):
        with db.session() as s:
            dep = repo.get_deployment(s, deployment_id)
            if dep.status != DEPLOYED:
                raise ConflictError(f"deployment {deployment_id} is {dep.status}")
            build = _ready_build(s, build_id)
            if build.model_name != dep.model_name:
                raise ConflictError(f"build {build_id} is of model {build.model_name!r}; "
                                    f"deployment {deployment_id} serves {dep.model_name!r}")
            added = check_new_fields(dep, s.get(Build, dep.build_id), build,
                                     accept_new_fields)
            previous, wanted = dep.build_id, dep.replicas
            build_path, version = build.path, build.model_version
        served = supervisor.serving(deployment_id)
        elsewhere = other_nodes and served is None
        if elsewhere:
            wanted = 1  # only to prove the build runs: the holders move their own share
        elif served != previous:
            raise ConflictError(f"deployment {deployment_id} is recorded on build {previous} "
                                f"but this control plane serves "
                                f"{f'build {served}' if served else 'nothing'} for it")
        current = {"status": DEPLOYED, "build_id": previous}
        try:
            fresh = supervisor.start_replicas(
                deployment_id, build_id, build_path, wanted,
                f"redeploy of {deployment_id} to build {build_id}")
        except UnavailableError as exc:
            _record_failure(db, deployment_id, current, who, "deployment.redeploy",
                            f"redeploy to build {build_id} failed; still serving {previous}: "
                            f"{exc.message}")
            raise
        try:
            with db.session() as s:
                if not _transition(s, deployment_id, current, build_id=build_id,
                                   model_version=version, reason=""):
                    raise ConflictError(f"deployment {deployment_id} was changed elsewhere "
                                        f"while build {build_id} was starting; it still "
                                        f"serves build {previous}")
                repo.audit(s, who, "deployment.redeploy", f"deployment/{deployment_id}", "ok",
                           f"build/{previous} -> build/{build_id}" + _fields_note(added))
                row = repo.get_deployment(s, deployment_id)
        except BaseException:
            supervisor.discard(deployment_id, fresh)
            raise
        if elsewhere:
            supervisor.discard(deployment_id, fresh)
        else:
            supervisor.switch(deployment_id, build_id, build_path, fresh)
    emit(lambda: _happening("COMPLETE", row, build_id, actor, "redeploy", previous))
    return row


def _fields_note(added: NewFields) -> str:
    """What the audit keeps about new input fields of a redeploy ("" for none)."""
    parts = ([f"new required field(s) accepted: {describe_fields(added.required)}"]
             if added.required else [])
    if added.defaulted:
        parts.append(f"new field(s) with defaults: {describe_fields(added.defaulted)}")
    return "".join(f"; {p}" for p in parts)


def stop_deployment(db: Database, supervisor: Supervisor, deployment_id: str,
                    actor: str = "") -> Deployment:
    """Stop serving a deployment (its replicas finish what they are answering); it waits for
    a change of the deployment already under way."""
    with one_change_at_a_time(deployment_id):
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


def restore(db: Database, supervisor: Supervisor, *, serve: bool = True,
            stale_after: float | None = None) -> int:
    """Serve again every DEPLOYED deployment, on the build recorded (at control-plane start);
    returns how many. Deployments left DEPLOYING were never served: they become FAILED.

    Replicas start in the background: calls that arrive first wait for them briefly.

    Args:
        serve: Start the replicas here (False: another part, e.g. the spreader, does).
        stale_after: Fail only DEPLOYING rows unchanged for this many seconds (another node
            may be making the others).
    """
    query = select(Deployment.id).where(Deployment.status == DEPLOYING)
    if stale_after is not None:
        query = query.where(Deployment.updated_at < repo.now() - timedelta(seconds=stale_after))
    with db.session() as s:
        interrupted = list(s.scalars(query))
        for dep_id in interrupted:
            if _transition(s, dep_id, {"status": DEPLOYING}, status=FAILED,
                           reason=INTERRUPTED):
                repo.audit(s, "system", "deployment.create", f"deployment/{dep_id}", "failed",
                           INTERRUPTED)
        rows = s.execute(select(Deployment, Build.path).join(Build, Build.id ==
                                                             Deployment.build_id)
                         .where(Deployment.status == DEPLOYED)).all()
        wanted = [(d.id, d.access_key_hash, d.model_name, d.build_id, path, d.replicas,
                   d.auth_enabled, d.project_id) for d, path in rows] if serve else []
    for dep_id, khash, model, build_id, path, replicas, auth, project_id in wanted:
        supervisor.deploy(dep_id, khash, model, build_id, path, replicas=replicas,
                          auth_enabled=auth, wait=False, project_id=project_id)
    if interrupted:
        log.warning("%d deployment(s) were still starting when the control plane stopped; "
                    "they are FAILED: %s", len(interrupted), ", ".join(interrupted))
    return len(wanted)

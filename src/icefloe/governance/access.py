"""Access tracking: who read which table at which snapshot, who called which model, who
changed what, and who may.

What is recorded, and where:

- **Reads and changes of tables** come from the happenings bus (:mod:`icefloe.happenings`):
  each dataset a happening read becomes one ``read`` row of ``access_events`` (via the
  happening's kind: ``sql.report``, ``table.read``, ``training``, ``table.write`` for an
  ETL's input...; with the subject's ``via`` after a colon when it says more, e.g.
  ``table.read:reproduce``) and each table it wrote one ``change`` row, with the actor's
  user, key, job run and address and the snapshot id. Only a happening's end counts:
  ``START`` is skipped, so a START and its COMPLETE are one read. A ``FAIL`` or ``ABORT``
  still records its inputs (the data may have been read before the failure) but no change
  (nothing was committed). A rollback is a change only (its input is the snapshot it
  left). Files (source batches) are not tables and are left to lineage.
- **Model calls** are not written again here: every answered call already is a row of the
  prediction log (``predictions``: caller, deployment, time) and failed calls are counted
  per minute (``call_failures``); a report on ``deployment:<id>`` or ``model:<name>`` reads
  them, so the serving hot path pays nothing for access tracking.
- **Changes made through the API** are in the audit log (``audit_events``); a report shows
  those whose target is the resource.

Retention: access events older than ``access_retention_days`` (default 400 days: more than
a year, so a yearly review sees a whole year) are deleted by the control plane at most
once an hour, on its monitoring schedule (:func:`prune_due`); 0 keeps them forever. The
prediction log and the audit log keep their own policies.

Who may, now: a table's namespace is granted (``read``/``write``) to projects, or every
namespace (``*``); each member of a granted project reads, and owners and editors also
write where the grant is ``write`` (a viewer only reads); platform admins reach every table.
A model's project is the project of its card, deployments and builds; its owners and editors
change it, every member calls it.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from icefloe.errors import InvalidInputError
from icefloe.governance.period import period, utc
from icefloe.store.orm import (
    AccessEvent,
    ApiKey,
    AuditEvent,
    Build,
    CallFailure,
    Deployment,
    Membership,
    ModelCard,
    NamespaceGrant,
    Prediction,
    Project,
    User,
)
from icefloe.timefmt import iso_utc, stored_utc

if TYPE_CHECKING:
    from icefloe.config import Settings
    from icefloe.happenings import Happening
    from icefloe.store.db import Database

log = logging.getLogger(__name__)

READ, CHANGE = "read", "change"
DEFAULT_RETENTION_DAYS = 400
PRUNE_EVERY_S = 3600.0
MAX_CHANGES = 500  # newest first; the report says when there were more
MAX_GROUPS = 10_000
NOT_READS = frozenset({"table.rollback"})  # inputs that are not data reads
CHANGE_ROLES = frozenset({"owner", "editor"})  # project roles that change things
_DEPLOYMENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


# -- recording -----------------------------------------------------------------------------

def _parent_run(parent: Mapping[str, Any] | None) -> str:
    """The job run a happening belongs to, when its parent says so."""
    if parent and parent.get("kind") == "job.run" and parent.get("run_id"):
        return str(parent["run_id"])
    return ""


def access_rows(happening: Happening) -> list[dict[str, Any]]:
    """The ``access_events`` rows one happening makes (pure; see the module's rules)."""
    if happening.state == "START":
        return []  # its COMPLETE (or FAIL) is the one that counts
    actor = happening.actor
    how = happening.subject.get("via")  # e.g. table.read:reproduce, table.write:export
    via = f"{happening.kind}:{how}" if isinstance(how, str) and how else happening.kind
    common = {"at": utc(happening.at), "user": actor.user[:255], "key_id": actor.key_id[:64],
              "run_id": (actor.run_id or _parent_run(happening.parent))[:36],
              "source": actor.source[:255], "via": via[:32],
              "detail": json.dumps({"happening": happening.run_id, "state": happening.state})}
    # A rollback's input is the snapshot it moved away from: metadata, no data was read.
    # A Spark write's inputs were recorded when Spark read them (its table.read).
    spark_write = happening.kind == "table.write" and how == "spark"
    reads = () if happening.kind in NOT_READS or spark_write else happening.inputs
    rows = [{**common, "action": READ, "resource": f"table:{d.name}"[:512],
             "snapshot_id": d.snapshot_id} for d in reads if d.kind == "table"]
    if happening.state == "COMPLETE":
        rows += [{**common, "action": CHANGE, "resource": f"table:{d.name}"[:512],
                  "snapshot_id": d.snapshot_id} for d in happening.outputs if d.kind == "table"]
    return rows


def subscriber(settings: Settings,
               database: Database | None) -> Callable[[Happening], None] | None:
    """The happenings subscriber that records access events in the platform DB.

    Args:
        settings: Unused (access tracking is always on where there is a platform DB).
        database: The platform DB; None (no DB at hand): no subscriber.
    """
    del settings
    if database is None:
        return None

    def record_access(happening: Happening) -> None:
        rows = access_rows(happening)
        if rows:
            with database.session() as s:
                s.add_all(AccessEvent(**row) for row in rows)

    return record_access


# -- retention -----------------------------------------------------------------------------

def prune(session: Session, now: datetime, days: int = DEFAULT_RETENTION_DAYS) -> int:
    """Delete the access events older than ``days`` before ``now`` (0: keep everything).

    Returns:
        How many were deleted.
    """
    if days <= 0:
        return 0
    cutoff = utc(now) - timedelta(days=days)
    result = session.execute(delete(AccessEvent).where(AccessEvent.at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)


_pruned_at: dict[str, float] = {}
_prune_lock = threading.Lock()


def prune_due(db: Database, settings: Settings) -> int:
    """Apply the retention policy if this process has not in the last hour (the control
    plane's schedule calls this on every round). Returns how many events were deleted."""
    with _prune_lock:
        last = _pruned_at.get(db.url)
        if last is not None and time.monotonic() - last < PRUNE_EVERY_S:
            return 0
        _pruned_at[db.url] = time.monotonic()
    with db.session() as s:
        deleted = prune(s, datetime.now(UTC), settings.access_retention_days)
    if deleted:
        log.info("access tracking: %d events older than %d days deleted", deleted,
                 settings.access_retention_days)
    return deleted


# -- the period and the resource -----------------------------------------------------------

@dataclass(frozen=True)
class Resource:
    """What a report is about: a ``table``, a ``deployment`` or a ``model``."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


def parse_resource(text: str) -> Resource:
    """``namespace.table`` (or ``table:namespace.table``), ``deployment:<id>`` or
    ``model:<name>``.

    Raises:
        InvalidInputError: Another form, or a bad name.
    """
    kind, colon, name = text.partition(":")
    if not colon:
        kind, name = "table", text
    if kind == "table":
        # Imported here: the lakehouse package brings PyIceberg, which the app loads lazily.
        from icefloe.lakehouse.names import parse_table_name

        return Resource("table", str(parse_table_name(name)))
    if kind == "deployment" and _DEPLOYMENT_ID.fullmatch(name):
        return Resource(kind, name)
    if kind == "model" and name and len(name) <= 255 and name.isprintable():
        return Resource(kind, name)
    raise InvalidInputError(f"{text[:100]!r} is not namespace.table, deployment:ID or "
                            "model:NAME")


# -- who may -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Grant:
    """A project's reach to a resource: its grant (``read``/``write``) and on what."""

    project_id: str
    project: str
    access: str
    namespace: str = ""


@dataclass(frozen=True)
class Member:
    """A user's role in a project."""

    project_id: str
    user: str
    role: str


def _stronger(a: str, b: str) -> str:
    return "write" if "write" in (a, b) else "read"


def holders(grants: Iterable[Grant], members: Iterable[Member],
            admins: Iterable[str]) -> list[dict[str, Any]]:
    """Who may read or write a resource now (pure): admins write; a member of a granted
    project reads, and writes too where the grant is ``write`` and their role changes
    things (owner, editor).

    Returns:
        One row per user, by name: ``user``, ``access`` (``read``/``write``), ``admin`` and
        the ``projects`` it comes through (project, role, grant, namespace, access).
    """
    by_project: dict[str, Grant] = {}
    for g in grants:  # a namespace's own grant and the `*` one: the stronger counts
        held = by_project.get(g.project_id)
        if held is None or (g.access == "write" and held.access != "write"):
            by_project[g.project_id] = g
    out: dict[str, dict[str, Any]] = {}
    for name in admins:
        out[name] = {"user": name, "access": "write", "admin": True, "projects": []}
    for m in members:
        grant = by_project.get(m.project_id)
        if grant is None:
            continue
        access = "write" if grant.access == "write" and m.role in CHANGE_ROLES else "read"
        row = out.setdefault(m.user, {"user": m.user, "access": access, "admin": False,
                                      "projects": []})
        row["access"] = _stronger(row["access"], access)
        row["projects"].append({"project": grant.project, "project_id": grant.project_id,
                                "role": m.role, "grant": grant.access,
                                "namespace": grant.namespace, "access": access})
    for row in out.values():
        row["projects"].sort(key=lambda p: (p["project"], p["project_id"]))
    return [out[name] for name in sorted(out)]


def _grants(s: Session, resource: Resource) -> list[Grant]:
    if resource.kind == "table":
        namespace = resource.name.split(".", 1)[0]
        rows = s.execute(select(NamespaceGrant.project_id, Project.name, NamespaceGrant.access,
                                NamespaceGrant.namespace)
                         .join(Project, Project.id == NamespaceGrant.project_id)
                         .where(NamespaceGrant.namespace.in_((namespace, "*"))))
        return [Grant(pid, pname, access, ns) for pid, pname, access, ns in rows]
    if resource.kind == "deployment":
        ids = set(s.scalars(select(Deployment.project_id).where(
            Deployment.id == resource.name)))
    else:  # a model: the project of its card, its deployments and its builds
        ids = set(s.scalars(select(ModelCard.project_id).where(
            ModelCard.name == resource.name)))
        ids |= set(s.scalars(select(Deployment.project_id).where(
            Deployment.model_name == resource.name)))
        ids |= set(s.scalars(select(Build.project_id).where(Build.model_name == resource.name)))
    found = sorted(pid for pid in ids if pid is not None)
    names = dict(s.execute(select(Project.id, Project.name).where(Project.id.in_(found))).all())
    # Owners and editors change a model (deploy, redeploy, stop); every member calls it.
    return [Grant(pid, str(names.get(pid, "")), "write") for pid in found]


def access_now(s: Session, resource: Resource) -> list[dict[str, Any]]:
    """Who may read (call) or write (change) the resource now (see :func:`holders`)."""
    grants = _grants(s, resource)
    members = [Member(pid, user, role) for pid, user, role in s.execute(
        select(Membership.project_id, User.name, Membership.role)
        .join(User, User.id == Membership.user_id)
        .where(Membership.project_id.in_(sorted({g.project_id for g in grants}))))]
    # Admin power needs a live admin key too (see icefloe.auth.keys).
    admins = s.scalars(select(User.name).distinct().join(ApiKey, ApiKey.user_id == User.id)
                       .where(User.role == "admin", ApiKey.role == "admin",
                              ApiKey.revoked.is_(False)))
    return holders(grants, members, admins)


# -- who did -------------------------------------------------------------------------------

def split_actor(actor: str) -> tuple[str, str]:
    """``alice (run/<id>)`` (how audit rows and the prediction log name a job run acting
    for a user) -> ``("alice", "<id>")``; a plain name has no run."""
    found = re.fullmatch(r"(.*) \(run/([^)]*)\)", actor)
    return (found.group(1), found.group(2)) if found else (actor, "")


def readers(groups: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per user (pure), from read events grouped by user, via, snapshot, run, key and
    source (each with ``count``, ``first``, ``last``): ``reads``, ``first``, ``last`` and the
    sorted ``via`` kinds, ``snapshot_ids``, ``run_ids``, ``key_ids`` and ``sources``."""
    out: dict[str, dict[str, Any]] = {}
    for g in groups:
        row = out.setdefault(g["user"], {"user": g["user"], "reads": 0, "first": g["first"],
                                         "last": g["last"], "via": set(), "snapshot_ids": set(),
                                         "run_ids": set(), "key_ids": set(), "sources": set()})
        row["reads"] += int(g["count"])
        row["first"], row["last"] = min(row["first"], g["first"]), max(row["last"], g["last"])
        for key, value in (("via", g["via"]), ("snapshot_ids", g["snapshot_id"]),
                           ("run_ids", g["run_id"]), ("key_ids", g["key_id"]),
                           ("sources", g["source"])):
            if value not in (None, ""):
                row[key].add(value)
    return [{**row, "first": iso_utc(row["first"]), "last": iso_utc(row["last"]),
             **{k: sorted(row[k]) for k in ("via", "snapshot_ids", "run_ids", "key_ids",
                                            "sources")}}
            for row in sorted(out.values(), key=lambda r: r["user"])]


def callers(groups: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per user (pure), from predictions grouped by caller and deployment (``count``,
    ``first_ms``, ``last_ms``): ``calls``, ``first``, ``last``, ``deployments``, ``run_ids``."""
    out: dict[str, dict[str, Any]] = {}
    for g in groups:
        user, run_id = split_actor(g["caller"] or "anonymous")
        row = out.setdefault(user, {"user": user, "calls": 0, "first": g["first_ms"],
                                    "last": g["last_ms"], "deployments": set(),
                                    "run_ids": set()})
        row["calls"] += int(g["count"])
        row["first"] = min(row["first"], g["first_ms"])
        row["last"] = max(row["last"], g["last_ms"])
        row["deployments"].add(g["deployment_id"])
        if run_id:
            row["run_ids"].add(run_id)
    return [{**row, "first": iso_utc(row["first"]), "last": iso_utc(row["last"]),
             "deployments": sorted(row["deployments"]), "run_ids": sorted(row["run_ids"])}
            for row in sorted(out.values(), key=lambda r: r["user"])]


def _read_groups(s: Session, resource: Resource, since: datetime,
                 until: datetime) -> list[dict[str, Any]]:
    keys = (AccessEvent.user, AccessEvent.via, AccessEvent.snapshot_id, AccessEvent.run_id,
            AccessEvent.key_id, AccessEvent.source)
    rows = s.execute(select(*keys, func.count(), func.min(AccessEvent.at),
                            func.max(AccessEvent.at))
                     .where(AccessEvent.resource == str(resource), AccessEvent.action == READ,
                            AccessEvent.at >= since, AccessEvent.at < until)
                     .group_by(*keys).limit(MAX_GROUPS))
    return [{"user": user, "via": via, "snapshot_id": snap, "run_id": run, "key_id": key,
             "source": source, "count": count, "first": stored_utc(first),
             "last": stored_utc(last)}
            for user, via, snap, run, key, source, count, first, last in rows]


def _deployment_ids(s: Session, resource: Resource) -> list[str]:
    if resource.kind == "deployment":
        return [resource.name]
    return list(s.scalars(select(Deployment.id).where(Deployment.model_name == resource.name)))


def _call_groups(s: Session, resource: Resource, since: datetime,
                 until: datetime) -> list[dict[str, Any]]:
    where = (Prediction.deployment_id == resource.name if resource.kind == "deployment"
             else Prediction.model_name == resource.name)
    since_ms, until_ms = int(since.timestamp() * 1000), int(until.timestamp() * 1000)
    rows = s.execute(select(Prediction.caller, Prediction.deployment_id, func.count(),
                            func.min(Prediction.timestamp_ms), func.max(Prediction.timestamp_ms))
                     .where(where, Prediction.timestamp_ms >= since_ms,
                            Prediction.timestamp_ms < until_ms)
                     .group_by(Prediction.caller, Prediction.deployment_id).limit(MAX_GROUPS))
    return [{"caller": caller, "deployment_id": dep, "count": count, "first_ms": first,
             "last_ms": last} for caller, dep, count, first, last in rows]


def _failed_calls(s: Session, deployment_ids: list[str], since: datetime,
                  until: datetime) -> int:
    if not deployment_ids:
        return 0
    since_ms, until_ms = int(since.timestamp() * 1000), int(until.timestamp() * 1000)
    return int(s.scalar(select(func.coalesce(func.sum(CallFailure.count), 0)).where(
        CallFailure.deployment_id.in_(deployment_ids), CallFailure.minute_ms >= since_ms,
        CallFailure.minute_ms < until_ms)) or 0)


def _audit_targets(s: Session, resource: Resource) -> list[str]:
    """How the audit log names the resource (``lending.loans``, ``deployment/<id>``...)."""
    if resource.kind == "table":
        return [resource.name, f"table/{resource.name}", str(resource)]
    targets = [f"deployment/{d}" for d in _deployment_ids(s, resource)]
    if resource.kind == "model":
        targets += [f"build/{b}" for b in s.scalars(
            select(Build.id).where(Build.model_name == resource.name))]
    return targets


def _changes(s: Session, resource: Resource, since: datetime,
             until: datetime) -> tuple[list[dict[str, Any]], bool]:
    """Changes in the period, newest first: tables written (happenings) and the audit log."""
    found: list[dict[str, Any]] = []
    for e in s.scalars(select(AccessEvent).where(
            AccessEvent.resource == str(resource), AccessEvent.action == CHANGE,
            AccessEvent.at >= since, AccessEvent.at < until)
            .order_by(AccessEvent.at.desc()).limit(MAX_CHANGES + 1)):
        found.append({"at": stored_utc(e.at), "user": e.user, "run_id": e.run_id,
                      "action": e.via, "snapshot_id": e.snapshot_id, "outcome": "ok",
                      "source": e.source, "recorded_by": "happening"})
    targets = _audit_targets(s, resource)
    if targets:
        for a in s.scalars(select(AuditEvent).where(
                or_(*(AuditEvent.target == t for t in targets)),
                AuditEvent.at >= since, AuditEvent.at < until)
                .order_by(AuditEvent.at.desc()).limit(MAX_CHANGES + 1)):
            user, run_id = split_actor(a.actor)
            found.append({"at": stored_utc(a.at), "user": user, "run_id": run_id,
                          "action": a.action, "snapshot_id": None, "outcome": a.outcome,
                          "source": "", "recorded_by": "audit"})
    found.sort(key=lambda c: c["at"], reverse=True)
    return [{**c, "at": iso_utc(c["at"])} for c in found[:MAX_CHANGES]], \
        len(found) > MAX_CHANGES


def report(session: Session, table: str, since: datetime, until: datetime) -> dict[str, Any]:
    """Who may reach a resource now and who did over ``[since, until)``.

    Args:
        session: An open platform DB session.
        table: ``namespace.table``, or ``deployment:<id>`` / ``model:<name>`` for a model.
        since: Start of the period (included).
        until: End of the period (excluded).

    Returns:
        ``resource``, ``kind``, ``name``, ``since``, ``until``, ``access`` (see
        :func:`holders`), ``changes`` (newest first, at most :data:`MAX_CHANGES`, and
        ``changes_truncated``) and, for a table, ``readers`` (see :func:`readers`); for a
        model, ``callers`` (see :func:`callers`) and ``failed_calls``.

    Raises:
        InvalidInputError: A bad resource name.
    """
    resource = parse_resource(table)
    start, end = utc(since), utc(until)
    changes, truncated = _changes(session, resource, start, end)
    out: dict[str, Any] = {"resource": str(resource), "kind": resource.kind,
                           "name": resource.name, "since": iso_utc(start),
                           "until": iso_utc(end), "access": access_now(session, resource)}
    if resource.kind == "table":
        out["readers"] = readers(_read_groups(session, resource, start, end))
    else:
        out["callers"] = callers(_call_groups(session, resource, start, end))
        out["failed_calls"] = _failed_calls(session, _deployment_ids(session, resource),
                                            start, end)
    out["changes"], out["changes_truncated"] = changes, truncated
    return out


def table_report(db: Database, settings: Settings, table: str, since: str | None,
                 until: str | None, *, names: tuple[str, str] = ("since", "until"),
                 now: datetime | None = None) -> dict[str, Any]:
    """:func:`report` with the period given as text (what the route and the CLI take), and
    the retention policy it was read under (``retention_days``).

    Raises:
        InvalidInputError: A bad resource or period, naming the field (``names``).
    """
    parse_resource(table)  # a bad name is named before a bad period
    start, end = period(since, until, now or datetime.now(UTC), names=names)
    with db.session() as s:
        out = report(s, table, start, end)
    out["retention_days"] = settings.access_retention_days
    return out

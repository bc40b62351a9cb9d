"""Namespace grants: which projects may read or write the tables of a namespace.

A table belongs to its namespace (``lending`` for ``lending.loans``); a grant gives a project
``read`` or ``write`` on a namespace, or on every namespace (``*``, made by the migration
for the default project of an install that existed before grants). A member of a granted
project reads; an owner or editor also writes where the grant is ``write``. Platform admins
reach every table. Only admins grant.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from icefloe.auth.principals import CHANGE_ROLES, Principal
from icefloe.errors import InvalidInputError, NotFoundError
from icefloe.store import repo
from icefloe.store.orm import NamespaceGrant, Project
from icefloe.timefmt import iso_utc

ACCESS = ("read", "write")
EVERY_NAMESPACE = "*"
_NAMESPACE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")


def valid_namespace(namespace: str) -> str:
    """A namespace name as grants take it (or ``*``), else 422 naming it."""
    if namespace != EVERY_NAMESPACE and not _NAMESPACE.fullmatch(namespace or ""):
        raise InvalidInputError(f"invalid namespace {namespace[:100]!r}: letters, digits and "
                                "'_', starting with a letter or '_' (or '*' for all)")
    return namespace


def set_grant(s: Session, project_id: str, namespace: str, access: str, *,
              by: str = "") -> NamespaceGrant:
    """Give a project ``read`` or ``write`` on a namespace (replacing its earlier grant)."""
    valid_namespace(namespace)
    if access not in ACCESS:
        raise InvalidInputError(f"access must be one of {', '.join(ACCESS)}, "
                                f"got {access[:50]!r}")
    grant = s.get(NamespaceGrant, (namespace, project_id))
    if grant is None:
        grant = NamespaceGrant(namespace=namespace, project_id=project_id, access=access,
                               created_by=by, created_at=repo.now())
        s.add(grant)
    else:
        grant.access = access
    s.flush()
    return grant


def remove_grant(s: Session, project_id: str, namespace: str) -> None:
    """Take a project's grant on a namespace away (404 when it has none)."""
    grant = s.get(NamespaceGrant, (namespace, project_id))
    if grant is None:
        raise NotFoundError(f"project has no grant on namespace {namespace[:255]!r}")
    s.delete(grant)


def grant_json(g: NamespaceGrant, project_name: str = "") -> dict[str, Any]:
    """A grant as the API shows it."""
    return {"namespace": g.namespace, "project_id": g.project_id, "project": project_name,
            "access": g.access, "granted_by": g.created_by, "granted_at": iso_utc(g.created_at)}


def list_grants(s: Session, *, project_id: str | None = None,
                namespace: str | None = None) -> list[dict[str, Any]]:
    """Grants of a project, or on a namespace (its own and ``*``)."""
    query = select(NamespaceGrant, Project.name).join(
        Project, Project.id == NamespaceGrant.project_id)
    if project_id is not None:
        query = query.where(NamespaceGrant.project_id == project_id)
    if namespace is not None:
        query = query.where(NamespaceGrant.namespace.in_((namespace, EVERY_NAMESPACE)))
    rows = s.execute(query.order_by(NamespaceGrant.namespace, Project.name))
    return [grant_json(g, name) for g, name in rows]


def table_access(grants: Iterable[tuple[str, str, str]], principal: Principal,
                 namespace: str) -> str | None:
    """What a principal may do with a namespace's tables: ``write``, ``read`` or None (pure).

    Args:
        grants: ``(namespace, project id, access)`` rows.
        principal: The caller.
        namespace: The table's namespace.
    """
    if principal.is_admin:
        return "write"
    best: str | None = None
    for granted, project_id, access in grants:
        if granted not in (namespace, EVERY_NAMESPACE):
            continue
        role = principal.project_role(project_id)
        if role is None:
            continue
        if access == "write" and role in CHANGE_ROLES:
            return "write"
        best = "read"
    return best


def namespace_access(s: Session, principal: Principal) -> Mapping[str, str]:
    """``namespace -> read|write`` for every namespace a principal reaches (``*``: all)."""
    if principal.is_admin:
        return {EVERY_NAMESPACE: "write"}
    rows = [(n, p, a) for n, p, a in s.execute(select(
        NamespaceGrant.namespace, NamespaceGrant.project_id, NamespaceGrant.access))]
    out: dict[str, str] = {}
    for namespace in {r[0] for r in rows}:
        access = table_access(rows, principal, namespace)
        if access is not None:
            out[namespace] = access
    return out


def check_table(s: Session, principal: Principal | None, table: str, *,
                write: bool = False) -> None:
    """Refuse a table the caller may not read (404, as if it did not exist) or write (403).

    Raises:
        NotFoundError: No grant lets the caller read the table's namespace.
        ForbiddenError: It may read but not write it.
    """
    from icefloe.errors import ForbiddenError

    if principal is None or principal.is_admin:
        return
    namespace = table.split(".", 1)[0] if "." in table else table
    rows = [(n, p, a) for n, p, a in s.execute(select(
        NamespaceGrant.namespace, NamespaceGrant.project_id, NamespaceGrant.access).where(
        NamespaceGrant.namespace.in_((namespace, EVERY_NAMESPACE))))]
    access = table_access(rows, principal, namespace)
    if write and access != "write":
        raise ForbiddenError(f"no project of yours may write namespace {namespace[:255]!r}"
                             + (" (it may only read it)" if access else ""))
    if access is None:
        raise NotFoundError(f"table {table[:255]!r} does not exist")

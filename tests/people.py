"""Test set-up of people: a project whose member a user is, with namespace grants."""

from __future__ import annotations

from sqlalchemy.orm import Session

from icefloe.governance import grants, membership
from icefloe.store import repo
from icefloe.store.orm import Project


def member_of(s: Session, user: str, project: str = "team", role: str = "editor",
              namespaces: dict[str, str] | None = None, path: str = "/tmp") -> Project:
    """Make ``project`` if new (its folder need not exist: no job runs in it), make ``user``
    a member with ``role``, and grant the project ``namespaces`` (name -> read|write)."""
    found = s.query(Project).filter(Project.name == project).one_or_none()
    if found is None:
        found = repo.create_project(s, project, path)
    membership.set_member(s, found.id, user, role, by="test")
    for namespace, access in (namespaces or {}).items():
        grants.set_grant(s, found.id, namespace, access, by="test")
    return found

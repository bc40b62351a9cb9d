"""Users, project members and namespace grants under /api/v2.

Admins make users and grant namespaces; a project's owners (and admins) manage its members.
A project a caller cannot see answers 404 here too. Every change is an audit event.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from icefloe.api.admin import require_admin
from icefloe.api.projects import reachable
from icefloe.auth.cache import KeyCache
from icefloe.auth.middleware import actor, principal_of
from icefloe.governance import grants, membership
from icefloe.store import repo
from icefloe.store.db import Database
from icefloe.store.orm import Project, User

USER = Path(max_length=255)
NAMESPACE = Path(max_length=255)


class UserIn(BaseModel):
    """Make a user (they get API keys through ``POST /api/v2/keys``)."""

    name: str = Field(min_length=1, max_length=255)
    admin: bool = Field(False, description="A platform admin reaches every project")


class MemberIn(BaseModel):
    """A user's role in a project."""

    role: str = Field(max_length=16, description="owner, editor or viewer")


class GrantIn(BaseModel):
    """A project's access to a namespace's tables."""

    access: str = Field(max_length=8, description="read or write")


def add_people_routes(router: APIRouter, database: Database, keys: KeyCache) -> None:
    """Register the users, members and grants routes on the /api/v2 router."""

    @router.get("/users")
    def list_users(request: Request) -> dict[str, Any]:
        require_admin(database, request, "user.list")
        with database.session() as s:
            return {"users": [membership.user_json(s, u) for u in membership.list_users(s)]}

    @router.get("/users/me")
    def me(request: Request) -> dict[str, Any]:
        principal = principal_of(request.scope)
        assert principal is not None  # the middleware lets no anonymous caller here
        with database.session() as s:
            user = s.scalar(select(User).where(User.name == principal.user))
            out = (membership.user_json(s, user) if user is not None else
                   {"id": "", "name": principal.user, "admin": False, "projects": [],
                    "keys": 0, "created_at": None})  # e.g. a scheduled run's "system"
            if principal.run_id is not None:  # a run token sees its own project only
                project = s.get(Project, principal.project_id)
                out["projects"] = [{"id": project.id, "name": project.name,
                                    "role": principal.role}] if project else []
        return {**out, "key_id": principal.key_id, "key_role": principal.role,
                "run_id": principal.run_id or ""}

    @router.post("/users", status_code=201)
    def create_user(body: UserIn, request: Request) -> dict[str, Any]:
        require_admin(database, request, "user.create")
        with database.session() as s:
            user = membership.create_user(s, body.name, admin=body.admin)
            repo.audit(s, actor(request.scope), "user.create", f"user/{user.name}", "ok",
                       "admin" if body.admin else "user")
            return membership.user_json(s, user)

    @router.get("/projects/{project_id}/members")
    def list_members(project_id: str, request: Request) -> dict[str, Any]:
        with database.session() as s:
            reachable(s, request, project_id)
            return {"members": membership.list_members(s, project_id)}

    @router.put("/projects/{project_id}/members/{user}")
    def set_member(project_id: str, body: MemberIn, request: Request,
                   user: str = USER) -> dict[str, Any]:
        with database.session() as s:
            reachable(s, request, project_id, own=True)
            membership.set_member(s, project_id, user, body.role, by=actor(request.scope))
            repo.audit(s, actor(request.scope), "member.set", f"project/{project_id}", "ok",
                       f"{user}: {body.role}")
            members = membership.list_members(s, project_id)
        keys.clear()  # cached principals carry their memberships
        return next(m for m in members if m["user"] == user)

    @router.delete("/projects/{project_id}/members/{user}", status_code=204)
    def remove_member(project_id: str, request: Request, user: str = USER) -> None:
        with database.session() as s:
            reachable(s, request, project_id, own=True)
            membership.remove_member(s, project_id, user)
            repo.audit(s, actor(request.scope), "member.remove", f"project/{project_id}",
                       "ok", user)
        keys.clear()

    @router.get("/projects/{project_id}/grants")
    def list_grants(project_id: str, request: Request) -> dict[str, Any]:
        with database.session() as s:
            reachable(s, request, project_id)
            return {"grants": grants.list_grants(s, project_id=project_id)}

    @router.put("/projects/{project_id}/grants/{namespace}")
    def set_grant(project_id: str, body: GrantIn, request: Request,
                  namespace: str = NAMESPACE) -> dict[str, Any]:
        require_admin(database, request, "grant.set")
        with database.session() as s:
            project = reachable(s, request, project_id)
            grant = grants.set_grant(s, project_id, namespace, body.access,
                                     by=actor(request.scope))
            repo.audit(s, actor(request.scope), "grant.set", f"namespace/{namespace}", "ok",
                       f"{project.name}: {body.access}")
            return grants.grant_json(grant, project.name)

    @router.delete("/projects/{project_id}/grants/{namespace}", status_code=204)
    def remove_grant(project_id: str, request: Request, namespace: str = NAMESPACE) -> None:
        require_admin(database, request, "grant.remove")
        with database.session() as s:
            reachable(s, request, project_id)
            grants.remove_grant(s, project_id, namespace)
            repo.audit(s, actor(request.scope), "grant.remove", f"namespace/{namespace}",
                       "ok", project_id)

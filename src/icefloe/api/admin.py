"""Admin routes under /api/v2: API keys and the audit log.

Every refusal here is recorded, reads included: who tried to list keys or read the audit
log matters as much as who changed them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from icefloe.auth import keys as api_keys
from icefloe.auth.cache import KeyCache
from icefloe.auth.middleware import actor, principal_of
from icefloe.errors import ForbiddenError
from icefloe.store import repo
from icefloe.store.db import Database
from icefloe.timefmt import iso_utc


class KeyIn(BaseModel):
    """Create an API key for a user with a role."""

    user: str = Field(min_length=1, max_length=255)
    role: str = Field("viewer", max_length=16)


def require_admin(database: Database, request: Request, what: str) -> None:
    """Refuse (403) anyone but a platform admin, recording the refusal as ``what``."""
    principal = principal_of(request.scope)
    if principal is None or not principal.is_admin:
        with database.session() as s:
            repo.audit(s, actor(request.scope), what, request.url.path, "denied",
                       f"role {principal.role if principal else 'none'}")
        raise ForbiddenError("only a platform admin may do that")


def add_admin_routes(router: APIRouter, database: Database, keys: KeyCache) -> None:
    """Register the keys and audit routes on the /api/v2 router."""

    @router.get("/keys")
    def list_keys(request: Request) -> dict[str, Any]:
        require_admin(database, request, "key.list")
        with database.session() as s:
            rows = api_keys.list_api_keys(s)
        return {"keys": [{**k, "created_at": iso_utc(k["created_at"])} for k in rows]}

    @router.post("/keys", status_code=201)
    def create_key(body: KeyIn, request: Request) -> dict[str, Any]:
        require_admin(database, request, "key.create")
        with database.session() as s:
            key, secret = api_keys.create_api_key(s, body.user, body.role)
            repo.audit(s, actor(request.scope), "key.create", f"key/{key.prefix}", "ok",
                       body.role)
            return {"id": key.id, "prefix": key.prefix, "user": body.user, "role": key.role,
                    "api_key": secret}

    @router.delete("/keys/{key_id}", status_code=204)
    def revoke_key(key_id: str, request: Request) -> None:
        require_admin(database, request, "key.revoke")
        with database.session() as s:
            api_keys.revoke_api_key(s, key_id)
            repo.audit(s, actor(request.scope), "key.revoke", f"key/{key_id}", "ok")
        keys.clear()

    @router.get("/audit")
    def audit_events(request: Request, page_size: int = Query(100, ge=1, le=1000),
                     page_token: str | None = Query(None, max_length=64),
                     actor_name: str | None = Query(None, alias="actor", max_length=255,
                                                    description="Who acted (exactly)"),
                     key: str | None = Query(None, max_length=36,
                                             description="The acting key's id"),
                     target: str | None = Query(None, max_length=255,
                                                description="Target prefix: table/lending."),
                     action: str | None = Query(None, max_length=64,
                                                description="Action prefix: run. or run.stop")
                     ) -> dict[str, Any]:
        require_admin(database, request, "audit.read")
        where = repo.AuditFilter(actor=actor_name, key_id=key, target=target, action=action)
        with database.session() as s:
            rows, token = repo.list_audit(s, page_size=page_size, page_token=page_token,
                                          where=where)
            return {"events": [{"id": e.id, "at": iso_utc(e.at), "actor": e.actor,
                                "key_id": e.key_id, "action": e.action, "target": e.target,
                                "outcome": e.outcome, "detail": e.detail} for e in rows],
                    "next_page_token": token}

"""Access reports under /api/v2: who may reach a table (or model) now and who did over a
period (see :mod:`icefloe.governance.access`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from icefloe.auth.middleware import principal_of
from icefloe.config import Settings
from icefloe.store.db import Database

SINCE = Query(None, max_length=64,
              description="ISO 8601 time or a span before now (30m, 12h, 7d, 2w); default 30d")
UNTIL = Query(None, max_length=64, description="ISO 8601 time, a span before now, or now "
                                               "(the default)")


def add_access_routes(router: APIRouter, db: Database, settings: Settings) -> None:
    """Register the access report routes on the /api/v2 router."""

    def answer(request: Request, resource: str, since: str | None,
               until: str | None) -> dict[str, Any]:
        from icefloe.governance.access import table_report
        from icefloe.governance.policy import check_access_report

        with db.session() as s:  # admins and the owners of the project holding it
            check_access_report(s, settings, principal_of(request.scope), resource)
        return table_report(db, settings, resource, since, until)

    @router.get("/access/tables/{table}")
    def table_access(table: str, request: Request, since: str | None = SINCE,
                     until: str | None = UNTIL) -> dict[str, Any]:
        """Who may read or write the table now (grants, memberships, admins), who read it
        in the period (user, job run, snapshots, how) and its changes."""
        return answer(request, f"table:{table}", since, until)

    @router.get("/access/deployments/{deployment_id}")
    def deployment_access(deployment_id: str, request: Request, since: str | None = SINCE,
                          until: str | None = UNTIL) -> dict[str, Any]:
        """Who may call or change the deployment now, who called it in the period (from the
        prediction log), failed calls and its changes."""
        return answer(request, f"deployment:{deployment_id}", since, until)

    @router.get("/access/models/{name}")
    def model_access(name: str, request: Request, since: str | None = SINCE,
                     until: str | None = UNTIL) -> dict[str, Any]:
        """The same for every deployment of a registered model."""
        return answer(request, f"model:{name}", since, until)

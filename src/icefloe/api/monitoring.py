"""Monitoring routes under /api/v2: a deployment's window of figures, alert rules and their
state changes. Viewers may read; changing rules needs an editor (the middleware's rule)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from icefloe.api.lake import LazyLakehouse
from icefloe.auth.middleware import actor, principal_of
from icefloe.config import Settings
from icefloe.governance import policy
from icefloe.monitoring import alerts
from icefloe.monitoring.rules import MAX_COOLDOWN_S, RuleSpec
from icefloe.store.db import Database
from icefloe.store.orm import AlertRule

WINDOW = Query("1h", max_length=16, description="30m, 1h, 7d (ending now) or 500 (the last)")


class RuleIn(BaseModel):
    """An alert rule on one figure of a deployment's window."""

    metric: str = Field(max_length=64)
    feature: str = Field("", max_length=255)
    comparison: str = Field(max_length=2, description=">, >=, < or <=")
    threshold: float
    window: str = Field("1h", max_length=16)
    min_samples: int = Field(100, ge=1, le=10_000_000)
    cooldown_s: int = Field(0, ge=0, le=MAX_COOLDOWN_S)
    channel: str = Field("webhook", max_length=16)
    target: str = Field(max_length=2048, description="the webhook URL or e-mail address")
    secret: str = Field("", max_length=1024,
                        description="signs each webhook delivery (HMAC-SHA256, 16+ "
                                    "characters); never returned")


def add_monitoring_routes(router: APIRouter, db: Database, settings: Settings,
                          lakehouse: LazyLakehouse) -> None:
    """Register the monitoring and alert routes on the /api/v2 router."""

    def guard(request: Request, deployment_id: str, *, change: bool = False) -> None:
        with db.session() as s:
            policy.check_deployment(s, principal_of(request.scope), deployment_id,
                                    change=change)

    def guard_rule(request: Request, rule_id: str, *, change: bool = False) -> None:
        with db.session() as s:
            deployment_id = s.scalar(select(AlertRule.deployment_id).where(
                AlertRule.id == rule_id))
            principal = principal_of(request.scope)
            if deployment_id is not None:
                policy.check_project(principal, policy.deployment_project(s, deployment_id),
                                     f"rule {rule_id[:64]!r}", change=change)

    @router.get("/models/deployments/{deployment_id}/monitoring")
    def monitoring(deployment_id: str, request: Request, window: str = WINDOW,
                   min_samples: int = Query(100, ge=1, le=10_000_000)) -> dict[str, Any]:
        from icefloe.monitoring.monitor import monitor_deployment

        guard(request, deployment_id)

        return monitor_deployment(db, lakehouse(), deployment_id, window,
                                  min_samples=min_samples, record=False)

    @router.get("/models/deployments/{deployment_id}/report", response_class=HTMLResponse)
    def report(deployment_id: str, request: Request, window: str = Query("7d", max_length=16),
               min_samples: int = Query(100, ge=1, le=10_000_000)) -> HTMLResponse:
        from icefloe.monitoring.monitor import report_page

        guard(request, deployment_id)

        page, _ = report_page(db, lakehouse(), deployment_id, window,
                              min_samples=min_samples, record=False)
        # The page is self-contained: nothing may load from anywhere, scripts least of all.
        return HTMLResponse(page, headers={"Content-Security-Policy":
                                           "default-src 'none'; style-src 'unsafe-inline'"})

    @router.post("/models/deployments/{deployment_id}/rules", status_code=201)
    def create_rule(deployment_id: str, body: RuleIn, request: Request) -> dict[str, Any]:
        guard(request, deployment_id, change=True)
        spec = RuleSpec(metric=body.metric, comparison=body.comparison,
                        threshold=body.threshold, feature=body.feature, window=body.window,
                        min_samples=body.min_samples, cooldown_s=body.cooldown_s,
                        channel=body.channel, target=body.target)
        return alerts.rule_json(alerts.create_rule(db, settings, deployment_id, spec,
                                                   body.secret, actor(request.scope)))

    @router.get("/models/deployments/{deployment_id}/rules")
    def rules(deployment_id: str, request: Request) -> dict[str, Any]:
        guard(request, deployment_id)
        return {"rules": [alerts.rule_json(r) for r in alerts.list_rules(db, deployment_id)]}

    @router.post("/models/deployments/{deployment_id}/rules:evaluate")
    def evaluate(deployment_id: str, request: Request) -> dict[str, Any]:
        guard(request, deployment_id, change=True)
        return {"changes": alerts.evaluate(db, lakehouse(), settings, deployment_id)}

    @router.post("/monitoring/predictions:export", operation_id="export_predictions")
    def export(request: Request) -> dict[str, Any]:
        """Bring ``monitoring.predictions`` up to date with the prediction log (what
        ``icefloe monitor export`` does), so SQL reports read every answered call."""
        from icefloe.governance.grants import check_table
        from icefloe.monitoring.export import export_predictions
        from icefloe.store import repo

        with db.session() as s:
            check_table(s, principal_of(request.scope), "monitoring.predictions", write=True)
        result = export_predictions(db, lakehouse())
        with db.session() as s:
            repo.audit(s, actor(request.scope), "monitoring.export", result.table, "ok",
                       f"{result.added} added, {result.truth_updated} given truth")
        return result.to_dict()

    @router.get("/rules/{rule_id}")
    def get_rule(rule_id: str, request: Request) -> dict[str, Any]:
        guard_rule(request, rule_id)
        return alerts.rule_json(alerts.get_rule(db, rule_id))

    @router.delete("/rules/{rule_id}", status_code=204)
    def delete_rule(rule_id: str, request: Request) -> None:
        guard_rule(request, rule_id, change=True)
        alerts.delete_rule(db, rule_id, actor(request.scope))

    @router.get("/rules/{rule_id}/events")
    def events(rule_id: str, request: Request) -> dict[str, Any]:
        guard_rule(request, rule_id)
        return {"events": [alerts.event_json(e) for e in alerts.rule_events(db, rule_id)]}

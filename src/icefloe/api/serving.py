"""Model resources under /api/v2 (builds, deployments, metrics) in CML API v2 style.

The model calls themselves (``POST /model`` and ``/model/batch``) are answered by
:class:`icefloe.serving.gateway.ModelGateway` in front of this app; they are described in
the OpenAPI document by :func:`document_model_calls`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from icefloe.auth.middleware import actor
from icefloe.config import Settings
from icefloe.errors import NotFoundError
from icefloe.serving import builds as builds_store
from icefloe.serving import deployments as deps
from icefloe.serving.builds import build_json, create_build
from icefloe.serving.predictions import (
    MAX_TIMESTAMP_MS,
    PredictionLog,
    read_metrics,
    track_aggregate_metrics,
    track_delayed_metrics,
)
from icefloe.serving.supervisor import Supervisor
from icefloe.store.db import Database
from icefloe.store.orm import Build

ID = Field(max_length=64)
CRN = Field(max_length=255)
TIMESTAMP = Field(ge=0, le=MAX_TIMESTAMP_MS, description="milliseconds since 1970 (UTC)")
Metrics = Annotated[dict[Annotated[str, Field(max_length=255)], Any],
                    Field(max_length=1000)]


class BuildIn(BaseModel):
    """Build a model version: ``NAME/VERSION`` or ``NAME@ALIAS``."""

    model: Annotated[str, Field(max_length=600)]


class DeploymentIn(BaseModel):
    """Deploy a READY build."""

    build_id: Annotated[str, ID]
    auth_enabled: bool = True
    replicas: int = Field(1, ge=1, le=deps.MAX_REPLICAS)


class RedeployIn(BaseModel):
    """Move a deployment to another READY build of its model."""

    build_id: Annotated[str, ID]
    accept_new_fields: bool = Field(
        False, description="Move even if the build requires input fields the serving build "
                           "does not take (callers must send them from now on); without it "
                           "such a redeploy is refused with 409 naming them.")


class DelayedIn(BaseModel):
    """Ground truth (or any late metric) for a prediction."""

    prediction_uuid: Annotated[str, ID]
    metrics: Metrics


class AggregateIn(BaseModel):
    """Metrics about a window of a deployment's predictions."""

    model_deployment_crn: Annotated[str, CRN]
    start_timestamp_ms: Annotated[int, TIMESTAMP]
    end_timestamp_ms: Annotated[int, TIMESTAMP]
    metrics: Metrics


def add_model_routes(router: APIRouter, db: Database, settings: Settings,
                     supervisor: Supervisor, predictions: PredictionLog) -> None:
    """Register builds, deployments and metrics routes on the /api/v2 router."""

    @router.post("/models/builds", status_code=201)
    def build(body: BuildIn, request: Request) -> dict[str, Any]:
        return build_json(create_build(db, settings, body.model, actor(request.scope)))

    @router.get("/models/builds")
    def builds() -> dict[str, Any]:
        with db.session() as s:
            rows = s.scalars(select(Build).order_by(Build.created_at.desc()))
            return {"builds": [build_json(b) for b in rows]}

    @router.get("/models/builds/{build_id}")
    def get_build(build_id: str) -> dict[str, Any]:
        return build_json(builds_store.get_build(db, build_id))

    @router.get("/models")
    def models() -> dict[str, Any]:
        from icefloe.registry.mlflow_registry import ModelRegistry

        return {"models": ModelRegistry(settings).list_models()}

    @router.get("/models/{name}/versions")
    def versions(name: str) -> dict[str, Any]:
        from icefloe.registry.mlflow_registry import ModelRegistry

        return {"versions": ModelRegistry(settings).versions(name)}

    @router.post("/models/deployments", status_code=201)
    def deploy(body: DeploymentIn, request: Request) -> dict[str, Any]:
        dep, key = deps.create_deployment(db, supervisor, body.build_id,
                                          auth_enabled=body.auth_enabled,
                                          replicas=body.replicas,
                                          created_by=actor(request.scope))
        base = str(request.base_url).rstrip("/")
        return {**deps.deployment_json(dep, supervisor), "access_key": key,
                "endpoint": f"{base}/model"}

    @router.get("/models/deployments")
    def deployments() -> dict[str, Any]:
        return {"deployments": [deps.deployment_json(d, supervisor)
                                for d in deps.list_deployments(db)]}

    @router.get("/models/deployments/{deployment_id}")
    def get_deployment(deployment_id: str) -> dict[str, Any]:
        return deps.deployment_json(deps.get_deployment(db, deployment_id), supervisor)

    @router.post("/models/deployments/{deployment_id}:redeploy", operation_id="redeploy")
    def redeploy(deployment_id: str, body: RedeployIn, request: Request) -> dict[str, Any]:
        dep = deps.redeploy(db, supervisor, deployment_id, body.build_id,
                            actor(request.scope), accept_new_fields=body.accept_new_fields)
        return deps.deployment_json(dep, supervisor)

    @router.post("/models/deployments/{deployment_id}:stop", operation_id="stop_deployment")
    def stop(deployment_id: str, request: Request) -> dict[str, Any]:
        dep = deps.stop_deployment(db, supervisor, deployment_id, actor(request.scope))
        return deps.deployment_json(dep, supervisor)

    @router.post("/metrics/delayed")
    def delayed(body: DelayedIn) -> dict[str, Any]:
        try:
            return track_delayed_metrics(db, body.prediction_uuid, body.metrics)
        except NotFoundError:
            # The prediction may still be on its way to the DB: write the queue, look again.
            predictions.flush()
            return track_delayed_metrics(db, body.prediction_uuid, body.metrics)

    @router.post("/metrics/aggregate", status_code=201)
    def aggregate(body: AggregateIn, request: Request) -> dict[str, Any]:
        return track_aggregate_metrics(db, body.metrics, body.start_timestamp_ms,
                                       body.end_timestamp_ms, body.model_deployment_crn,
                                       actor(request.scope))

    @router.get("/metrics")
    def metrics(model_deployment_crn: str = Query(max_length=255),
                start_timestamp_ms: int = Query(0, ge=0, le=MAX_TIMESTAMP_MS),
                end_timestamp_ms: int = Query(MAX_TIMESTAMP_MS, ge=0, le=MAX_TIMESTAMP_MS)
                ) -> dict[str, Any]:
        predictions.flush()  # a read right after a call sees that call
        return read_metrics(db, model_deployment_crn, start_timestamp_ms, end_timestamp_ms)


def document_model_calls(schema: dict[str, Any]) -> dict[str, Any]:
    """Add ``POST /model`` and ``/model/batch`` to an OpenAPI document."""
    one = {"type": "object", "required": ["accessKey", "request"],
           "properties": {"accessKey": {"type": "string"},
                          "request": {"type": "object", "additionalProperties": True}}}
    many = {"type": "object", "required": ["accessKey", "requests"],
            "properties": {"accessKey": {"type": "string"},
                           "requests": {"type": "array", "items": {"type": "object"}}}}
    for path, body, summary in (
            ("/model", one, "Score one record (CML model-service shape)"),
            ("/model/batch", many, "Score many records in one call")):
        schema.setdefault("paths", {})[path] = {"post": {
            "summary": summary, "operationId": "call_model" + path[6:].replace("/", "_"),
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": body}}},
            "responses": {"200": {"description": "prediction, probability and uuid"},
                          "401": {"description": "missing or invalid API key or access key"},
                          "413": {"description": "body over 5 MB"},
                          "422": {"description": "invalid input, naming the field"},
                          "503": {"description": "no replica is ready"}}}}
    return schema

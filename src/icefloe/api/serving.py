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

from icefloe.auth.middleware import actor, principal_of
from icefloe.config import Settings
from icefloe.errors import InvalidInputError, NotFoundError
from icefloe.governance import policy
from icefloe.registry.refs import parse_model_ref
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
from icefloe.store.orm import Build, Prediction

ID = Field(max_length=64)
CRN = Field(max_length=255)
TIMESTAMP = Field(ge=0, le=MAX_TIMESTAMP_MS, description="milliseconds since 1970 (UTC)")
Metrics = Annotated[dict[Annotated[str, Field(max_length=255)], Any],
                    Field(max_length=1000)]


class BuildIn(BaseModel):
    """Build a model version: ``NAME/VERSION`` or ``NAME@ALIAS``."""

    model: Annotated[str, Field(max_length=600)]
    project_id: Annotated[str | None, ID] = Field(
        None, description="The project the build belongs to (default: the model's project, "
                          "a job run's project, or the caller's only project)")


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
    """Register builds, deployments and metrics routes on the /api/v2 router.

    A build, deployment or model of a project the caller is not a member of answers 404;
    changing one needs an owner's or editor's role there (403).
    """

    def _visible(request: Request) -> frozenset[str] | None:
        principal = principal_of(request.scope)
        return None if principal is None else principal.visible_projects()

    def _guard(request: Request, deployment_id: str, *, change: bool = False) -> None:
        with db.session() as s:
            policy.check_deployment(s, principal_of(request.scope), deployment_id,
                                    change=change)

    @router.post("/models/builds", status_code=201)
    def build(body: BuildIn, request: Request) -> dict[str, Any]:
        name = parse_model_ref(body.model).name
        with db.session() as s:
            project_id = policy.project_for_new_build(s, settings, principal_of(request.scope),
                                                      name, body.project_id)
        return build_json(create_build(db, settings, body.model, actor(request.scope),
                                       project_id=project_id))

    @router.get("/models/builds")
    def builds(request: Request) -> dict[str, Any]:
        visible = _visible(request)
        with db.session() as s:
            query = select(Build).order_by(Build.created_at.desc())
            if visible is not None:
                query = query.where(Build.project_id.in_(visible))
            return {"builds": [build_json(b) for b in s.scalars(query)]}

    @router.get("/models/builds/{build_id}")
    def get_build(build_id: str, request: Request) -> dict[str, Any]:
        with db.session() as s:
            policy.check_build(s, principal_of(request.scope), build_id)
        return build_json(builds_store.get_build(db, build_id))

    @router.get("/models")
    def models(request: Request) -> dict[str, Any]:
        from icefloe.registry.mlflow_registry import ModelRegistry

        found = ModelRegistry(settings).list_models()
        with db.session() as s:
            names = set(policy.visible_models(s, settings, principal_of(request.scope),
                                              [m["name"] for m in found]))
        return {"models": [m for m in found if m["name"] in names]}

    @router.get("/models/{name}/versions")
    def versions(name: str, request: Request) -> dict[str, Any]:
        from icefloe.registry.mlflow_registry import ModelRegistry

        with db.session() as s:
            policy.check_model(s, settings, principal_of(request.scope), name)
        return {"versions": ModelRegistry(settings).versions(name)}

    @router.post("/models/deployments", status_code=201)
    def deploy(body: DeploymentIn, request: Request) -> dict[str, Any]:
        with db.session() as s:
            policy.check_build(s, principal_of(request.scope), body.build_id, change=True)
        dep, key = deps.create_deployment(db, supervisor, body.build_id,
                                          auth_enabled=body.auth_enabled,
                                          replicas=body.replicas,
                                          created_by=actor(request.scope))
        base = str(request.base_url).rstrip("/")
        return {**deps.deployment_json(dep, supervisor), "access_key": key,
                "endpoint": f"{base}/model"}

    @router.get("/models/deployments")
    def deployments(request: Request) -> dict[str, Any]:
        visible = _visible(request)
        return {"deployments": [deps.deployment_json(d, supervisor)
                                for d in deps.list_deployments(db)
                                if visible is None or d.project_id in visible]}

    @router.get("/models/deployments/{deployment_id}")
    def get_deployment(deployment_id: str, request: Request) -> dict[str, Any]:
        _guard(request, deployment_id)
        dep = deps.get_deployment(db, deployment_id)
        build = None
        if supervisor.serving(dep.id) is None:  # served by other nodes: the build tells
            with db.session() as s:
                build = s.get(Build, dep.build_id)
        return deps.deployment_json(dep, supervisor, build)

    @router.post("/models/deployments/{deployment_id}:redeploy", operation_id="redeploy")
    def redeploy(deployment_id: str, body: RedeployIn, request: Request) -> dict[str, Any]:
        _guard(request, deployment_id, change=True)
        with db.session() as s:  # the new build must be one the caller may use too
            policy.check_build(s, principal_of(request.scope), body.build_id)
            if policy.build_project(s, body.build_id) != policy.deployment_project(
                    s, deployment_id):
                raise InvalidInputError(f"build_id: build {body.build_id!r} belongs to another "
                                        "project than the deployment")
        dep = deps.redeploy(db, supervisor, deployment_id, body.build_id,
                            actor(request.scope), accept_new_fields=body.accept_new_fields,
                            other_nodes=settings.multi_node)
        return deps.deployment_json(dep, supervisor)

    @router.post("/models/deployments/{deployment_id}:stop", operation_id="stop_deployment")
    def stop(deployment_id: str, request: Request) -> dict[str, Any]:
        _guard(request, deployment_id, change=True)
        dep = deps.stop_deployment(db, supervisor, deployment_id, actor(request.scope))
        return deps.deployment_json(dep, supervisor)

    @router.post("/metrics/delayed")
    def delayed(body: DelayedIn, request: Request) -> dict[str, Any]:
        with db.session() as s:
            deployment_id = s.scalar(select(Prediction.deployment_id).where(
                Prediction.uuid == body.prediction_uuid))
        if deployment_id is None:
            predictions.flush()  # it may still be on its way to the DB
            with db.session() as s:
                deployment_id = s.scalar(select(Prediction.deployment_id).where(
                    Prediction.uuid == body.prediction_uuid))
        if deployment_id is None:
            raise NotFoundError(f"no prediction has uuid {body.prediction_uuid!r}")
        try:
            _guard(request, deployment_id, change=True)
        except NotFoundError:
            raise NotFoundError(f"no prediction has uuid {body.prediction_uuid!r}") from None
        try:
            return track_delayed_metrics(db, body.prediction_uuid, body.metrics)
        except NotFoundError:
            # The prediction may still be on its way to the DB: write the queue, look again.
            predictions.flush()
            return track_delayed_metrics(db, body.prediction_uuid, body.metrics)

    @router.post("/metrics/aggregate", status_code=201)
    def aggregate(body: AggregateIn, request: Request) -> dict[str, Any]:
        _guard(request, body.model_deployment_crn, change=True)
        return track_aggregate_metrics(db, body.metrics, body.start_timestamp_ms,
                                       body.end_timestamp_ms, body.model_deployment_crn,
                                       actor(request.scope))

    @router.get("/metrics")
    def metrics(request: Request, model_deployment_crn: str = Query(max_length=255),
                start_timestamp_ms: int = Query(0, ge=0, le=MAX_TIMESTAMP_MS),
                end_timestamp_ms: int = Query(MAX_TIMESTAMP_MS, ge=0, le=MAX_TIMESTAMP_MS)
                ) -> dict[str, Any]:
        _guard(request, model_deployment_crn)
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
                          "401": {"description": "missing or invalid API key or access key, "
                                                  "or a key outside the deployment's "
                                                  "project"},
                          "413": {"description": "body over 5 MB"},
                          "422": {"description": "invalid input, naming the field"},
                          "503": {"description": "no replica is ready"}}}}
    return schema

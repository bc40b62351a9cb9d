"""Model routes: builds and deployments under /api/v2/models, metrics, and ``POST /model``.

``POST /model`` is the CML model-service shape on the control plane's port:
``{"accessKey": ..., "request": {...}}`` -> ``{"success": true, "response": {...}}``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from icefloe.api.auth import actor
from icefloe.config import Settings
from icefloe.errors import AuthError, IcefloeError, InvalidInputError, NotFoundError
from icefloe.serving.builds import build_json, create_build
from icefloe.serving.deployments import (
    ModelServer,
    create_deployment,
    deployment_json,
    list_deployments,
    stop_deployment,
)
from icefloe.serving.predictions import PredictionLog, read_metrics, track_delayed_metrics
from icefloe.serving.schema import parse_body
from icefloe.store.db import Database
from icefloe.store.models import Build


class BuildIn(BaseModel):
    """Build a model version: ``NAME/VERSION`` or ``NAME@ALIAS``."""

    model: str


class DeploymentIn(BaseModel):
    """Deploy a READY build."""

    build_id: str
    auth_enabled: bool = True
    replicas: int = 1


class DelayedIn(BaseModel):
    """Ground truth (or any late metric) for a prediction."""

    prediction_uuid: str
    metrics: dict[str, Any]


def _actor(request: Request) -> str:
    return actor(request.scope)


def add_model_routes(app: FastAPI, router: APIRouter, db: Database, settings: Settings) -> None:
    """Register the model routes; the prediction log is flushed when the app stops."""
    server = ModelServer(db)
    predictions = PredictionLog(db)
    app.state.prediction_log = predictions
    app.router.on_shutdown.append(predictions.close)

    @router.post("/models/builds", status_code=201)
    def build(body: BuildIn, request: Request) -> dict[str, Any]:
        return build_json(create_build(db, settings, body.model, _actor(request)))

    @router.get("/models/builds")
    def builds() -> dict[str, Any]:
        from sqlalchemy import select

        with db.session() as s:
            rows = s.scalars(select(Build).order_by(Build.created_at.desc()))
            return {"builds": [build_json(b) for b in rows]}

    @router.post("/models/deployments", status_code=201)
    def deploy(body: DeploymentIn, request: Request) -> dict[str, Any]:
        dep, key = create_deployment(db, body.build_id, auth_enabled=body.auth_enabled,
                                     replicas=body.replicas, created_by=_actor(request))
        base = str(request.base_url).rstrip("/")
        return {**deployment_json(dep), "access_key": key, "endpoint": f"{base}/model"}

    @router.get("/models/deployments")
    def deployments() -> dict[str, Any]:
        return {"deployments": [deployment_json(d) for d in list_deployments(db)]}

    @router.post("/models/deployments/{deployment_id}:stop", operation_id="stop_deployment")
    def stop(deployment_id: str, request: Request) -> dict[str, Any]:
        return deployment_json(stop_deployment(db, deployment_id, _actor(request)))

    @router.post("/metrics/delayed")
    def delayed(body: DelayedIn) -> dict[str, Any]:
        try:
            return track_delayed_metrics(db, body.prediction_uuid, body.metrics)
        except NotFoundError:
            # The prediction may still be on its way to the DB: write the queue, look again.
            predictions.flush()
            return track_delayed_metrics(db, body.prediction_uuid, body.metrics)

    @router.get("/metrics")
    def metrics(model_deployment_crn: str, start_timestamp_ms: int = 0,
                end_timestamp_ms: int = 2**62) -> dict[str, Any]:
        return read_metrics(db, model_deployment_crn, start_timestamp_ms, end_timestamp_ms)

    async def _answer(request: Request, batch: bool) -> JSONResponse:
        started = time.perf_counter()
        principal = request.scope.get("icefloe.principal")
        try:
            try:
                body = parse_body(await request.body())
            except IcefloeError:
                if principal is None:  # say nothing about the body to an unknown caller
                    raise AuthError("missing or invalid API key or access key") from None
                raise
            if not isinstance(body, dict) or not isinstance(body.get("accessKey"), str):
                raise InvalidInputError("field 'accessKey' is required")
            found = server.resolve(body["accessKey"])
            if found is None or (found[0].auth_enabled and principal is None):
                raise AuthError("missing or invalid API key or access key")
            dep, scorer = found
            records = body.get("requests") if batch else [body.get("request")]
            if batch and not isinstance(records, list):
                raise InvalidInputError("field 'requests' must be a list of records")
            if not batch and "request" not in body:
                raise InvalidInputError("field 'request' is required")
            answers = scorer.predict(records or [])
        except IcefloeError as exc:
            return JSONResponse({"success": False, **exc.to_dict()},
                                status_code=exc.http_status)
        latency = (time.perf_counter() - started) * 1000
        now_ms = int(time.time() * 1000)
        caller = principal.user if principal else "anonymous"
        responses = []
        for record, answer in zip(records or [], answers, strict=True):
            pid = str(uuid.uuid4())
            predictions.record({
                "uuid": pid, "deployment_id": dep.id, "build_id": dep.build_id,
                "model_name": dep.model_name, "model_version": dep.model_version,
                "timestamp_ms": now_ms, "caller": caller, "inputs": record,
                "outputs": answer, "latency_ms": latency, "metrics": {},
                "delayed_metrics": None})
            responses.append({**answer, "uuid": pid, "model_version": dep.model_version,
                              "build": dep.build_id})
        key = "responses" if batch else "response"
        return JSONResponse({"success": True, key: responses if batch else responses[0]})

    @app.post("/model")
    async def model(request: Request) -> JSONResponse:
        return await _answer(request, batch=False)

    @app.post("/model/batch")
    async def model_batch(request: Request) -> JSONResponse:
        return await _answer(request, batch=True)


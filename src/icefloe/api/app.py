"""The control plane's HTTP app: REST API v2 (CML shapes), model calls and Prometheus.

``create_app`` wires the store, the runner, the supervisor and the layers in front of the
routes (metrics, model gateway, authentication); ``icefloe up`` serves it with uvicorn.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException

from icefloe import happenings
from icefloe.api.access import add_access_routes
from icefloe.api.admin import add_admin_routes
from icefloe.api.catalog import add_catalog_routes
from icefloe.api.cde import add_cde_routes, add_token_route
from icefloe.api.lake import LazyLakehouse
from icefloe.api.limits import BodyLimits
from icefloe.api.lineage import add_lineage_routes
from icefloe.api.monitoring import add_monitoring_routes
from icefloe.api.people import add_people_routes
from icefloe.api.projects import add_project_routes
from icefloe.api.prometheus import MetricsMiddleware, RequestMetrics
from icefloe.api.serving import add_model_routes, document_model_calls
from icefloe.api.sql import add_sql_routes
from icefloe.api.tables import add_table_routes
from icefloe.auth.cache import KeyCache
from icefloe.auth.middleware import ApiKeyMiddleware
from icefloe.auth.refusals import Refusals
from icefloe.config import Settings
from icefloe.errors import IcefloeError, InvalidInputError, NotFoundError
from icefloe.governance.membership import ensure_default_folder
from icefloe.home import prepare_home
from icefloe.jobs.runner import Runner
from icefloe.monitoring.alerts import Evaluator
from icefloe.serving.deployments import STALE_DEPLOYING_S, restore
from icefloe.serving.gateway import ModelGateway
from icefloe.serving.hosts import ModelHosts
from icefloe.serving.predictions import PredictionLog
from icefloe.serving.spread import Spreader
from icefloe.serving.supervisor import Supervisor
from icefloe.store.db import Database

API = "/api/v2"


def create_app(settings: Settings, *, db: Database | None = None, runner: Runner | None = None,
               start_runner: bool = True, api_url: str = "") -> FastAPI:
    """The control-plane app.

    Args:
        settings: icefloe settings (home, platform DB URL).
        db: The platform DB (opened and migrated from the settings if omitted).
        runner: The job runner (created if omitted).
        start_runner: Start the runner's loop with the app (tests may tick it by hand).
        api_url: This server's base URL, handed to jobs.
    """
    prepare_home(settings, share=True)
    database = db or Database(settings.resolved_platform_db_url)
    the_runner = runner or Runner(database, settings, api_url=api_url)
    keys = KeyCache(database)
    the_runner.on_run_end.append(keys.forget_run)
    refusals = Refusals(settings.auth_failures_per_minute)
    # Many small models share a few host processes when model_hosts says so.
    supervisor = ModelHosts(settings.home.resolve(), settings.model_hosts,
                            idle_seconds=settings.model_idle_seconds) \
        if settings.model_hosts > 0 else Supervisor(settings.home.resolve())
    predictions = PredictionLog.in_home(database, settings.home.resolve(),
                                        periodic=[refusals.due])
    metrics = RequestMetrics()
    metrics.gauges.append(lambda: serving_gauges(supervisor, predictions))

    # Several nodes: each keeps its share of the replicas and relays calls it cannot serve.
    spreader = Spreader(database, supervisor, the_runner.instance) if settings.multi_node \
        else None
    evaluator = Evaluator(database, settings, settings.monitor_interval if start_runner else 0)
    # What happens here (and what job runs report) is told to the server's own subscribers.
    happenings.install(happenings.make_subscribers(settings, database))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if start_runner:
            the_runner.start()
        evaluator.start()
        if spreader is None:
            restore(database, supervisor)
        else:  # replicas are the spreader's; only long-stuck DEPLOYING rows are failed here
            restore(database, supervisor, serve=False, stale_after=STALE_DEPLOYING_S)
            spreader.start()
        with database.session() as s:
            ensure_default_folder(s, settings)
        # Startup objects (modules, routes, ORM metadata) live as long as the process: keep
        # them out of the collector's way, so full collections stay short under load.
        gc.collect()
        gc.freeze()
        yield
        if start_runner:
            the_runner.shutdown()
        evaluator.stop()
        if spreader is not None:
            spreader.close()
        supervisor.close()
        predictions.close()  # every answered prediction is written before we exit
        happenings.reset()
        from icefloe.openlineage.transport import close_all

        close_all()  # OpenLineage events still queued are sent (bounded wait)

    app = FastAPI(title="icefloe", version="2", openapi_url=f"{API}/openapi.json",
                  docs_url=None, redoc_url=None, lifespan=lifespan)
    # Starlette's trailing-slash redirect builds an absolute URL from the Host header, which
    # a caller controls; ours below answers with a path only.
    app.router.redirect_slashes = False
    app.state.db = database
    app.state.runner = the_runner
    app.state.keys = keys
    app.state.supervisor = supervisor
    app.state.prediction_log = predictions
    app.state.metrics = metrics

    @app.exception_handler(IcefloeError)
    async def _icefloe_error(_: Request, exc: IcefloeError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")[:200]
        message = f"{where or 'request body'}: {first.get('msg', 'invalid')}"
        return JSONResponse(InvalidInputError(message).to_dict(), status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        path = request.url.path
        if exc.status_code == 404 and path.endswith("/") and path.rstrip("/"):
            # A relative Location: never a host taken from the request.
            location = path.rstrip("/") + (f"?{request.url.query}" if request.url.query
                                           else "")
            return Response(status_code=307, headers={"location": location})
        if exc.status_code == 404:
            error: IcefloeError = NotFoundError(f"no route {request.method} {path}"[:300])
        elif exc.status_code == 400:  # a body FastAPI could not parse: ours is 422
            error = InvalidInputError(f"invalid request: {exc.detail}")
        else:
            error = IcefloeError(str(exc.detail))
            error.http_status = exc.status_code
        return JSONResponse(error.to_dict(), status_code=error.http_status,
                            headers=getattr(exc, "headers", None))

    router = APIRouter(prefix=API)

    @router.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    add_project_routes(router, database, settings, the_runner)
    add_admin_routes(router, database, keys)
    add_people_routes(router, database, keys)
    add_model_routes(router, database, settings, supervisor, predictions)
    lakehouse = LazyLakehouse(settings)
    add_monitoring_routes(router, database, settings, lakehouse)
    add_sql_routes(router, database, lakehouse)
    add_table_routes(router, database, lakehouse)
    add_catalog_routes(router, database, settings, supervisor, lakehouse)
    add_access_routes(router, database, settings)
    add_lineage_routes(router, database, settings, lakehouse, predictions)
    app.include_router(router)
    add_token_route(app, database, refusals)
    add_cde_routes(app, database, the_runner)

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        return document_model_calls(plain_openapi())

    app.openapi = openapi  # type: ignore[method-assign]
    # Outermost last: metrics time everything, model calls skip the REST middleware, bodies
    # are read only for authenticated callers.
    app.add_middleware(BodyLimits, max_bytes=settings.max_body_bytes)
    app.add_middleware(ApiKeyMiddleware, keys=keys, refusals=refusals,
                       audit=predictions.audit)
    # The web UI answers /ui itself and calls the API below as its signed-in user.
    from icefloe.ui import router as ui_router
    from icefloe.ui.site import UiContext, UiMiddleware, sessions_cache

    app.add_middleware(UiMiddleware, router=ui_router(), context=UiContext(
        db=database, settings=settings, api_app=app.router, lakehouse=lakehouse,
        supervisor=supervisor, sessions=sessions_cache(database), refusals=refusals))
    app.add_middleware(ModelGateway, keys=keys, supervisor=supervisor, predictions=predictions,
                       refusals=refusals, peers=spreader.elsewhere if spreader else None)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def serving_gauges(supervisor: Supervisor, predictions: PredictionLog) -> list[str]:
    """Prometheus gauges: ready replicas per deployment, predictions waiting to be written."""
    lines = ["# HELP icefloe_model_replicas_ready Replicas taking traffic.",
             "# TYPE icefloe_model_replicas_ready gauge"]
    for dep_id, ready in sorted(supervisor.ready_counts().items()):
        lines.append(f'icefloe_model_replicas_ready{{deployment="{dep_id}"}} {ready}')
    lines += ["# HELP icefloe_predictions_queued Predictions not yet written to the store.",
              "# TYPE icefloe_predictions_queued gauge",
              f"icefloe_predictions_queued {predictions.queued()}"]
    return lines

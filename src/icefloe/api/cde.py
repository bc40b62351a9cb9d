"""What Cloudera's Airflow operator talks to: an OAuth2 token route and CDE job routes.

``cloudera-airflow-provider``'s ``CDEJobRunOperator`` (AWC auth mode) first exchanges a client
id and secret for a bearer token at ``POST /api/v0/auth/access-keys/token``, then runs a job
of a CDE virtual cluster and polls it. Here a virtual cluster is an icefloe project:
``/cde/{project id}/api/v1``, whose jobs are found by name. The client id is an API key's id
(as ``/api/v2/keys`` lists it) and the client secret is the key itself; the token acts as that
key until it expires or the key is revoked.

CDE's run request maps onto an icefloe run: ``variables`` become variables of the run's
environment, ``overrides.spark.args`` its arguments, ``overrides.spark``'s driver and executor
settings (``driverMemory``, ``executorCores``, ``numExecutors``, ``conf``...) the Spark settings
of a spark-submit run, and ``requestID`` (or an
``Idempotency-Key`` header) its idempotency key: a repeated one answers 409 with the run it
started, which is what the operator expects.
"""

from __future__ import annotations

import base64
import binascii
import re
import shlex
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from icefloe.api.projects import IDEMPOTENCY_KEY, Variables, reachable, request_run
from icefloe.auth import keys
from icefloe.auth.middleware import UNAUTHORIZED, actor, too_many
from icefloe.auth.refusals import Refusals, source_of
from icefloe.errors import ConflictError, InvalidInputError
from icefloe.jobs import states
from icefloe.jobs.runner import Runner
from icefloe.jobs.submit import MAX_CONF, MAX_CONF_VALUE, MAX_CORES, from_cde
from icefloe.store import repo
from icefloe.store.db import Database
from icefloe.store.orm import Job, Run
from icefloe.timefmt import iso_utc

TOKEN_PATH = "/api/v0/auth/access-keys/token"  # noqa: S105 (a route, not a secret)
KEY_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MAX_FORM = 4096

CDE_STATUS = {states.SCHEDULING: "starting", states.STARTING: "starting",
              states.RUNNING: "running", states.SUCCEEDED: "succeeded",
              states.FAILED: "failed", states.TIMEDOUT: "failed", states.STOPPED: "killed"}


class SparkOverrides(BaseModel, extra="forbid"):
    """The part of CDE's ``overrides.spark`` icefloe honours (the settings apply to
    spark-submit jobs)."""

    args: list[Annotated[str, Field(max_length=4096)]] | None = Field(
        None, max_length=1000, description="The run's arguments instead of the job's")
    driverMemory: Annotated[str | None, Field(max_length=16)] = None  # noqa: N815
    executorMemory: Annotated[str | None, Field(max_length=16)] = None  # noqa: N815
    driverCores: Annotated[int | None, Field(ge=1, le=MAX_CORES)] = None  # noqa: N815
    executorCores: Annotated[int | None, Field(ge=1, le=MAX_CORES)] = None  # noqa: N815
    numExecutors: Annotated[int | None, Field(ge=1, le=MAX_CORES)] = None  # noqa: N815
    conf: Annotated[dict[Annotated[str, Field(max_length=256)],
                         Annotated[str, Field(max_length=MAX_CONF_VALUE)]] | None,
                    Field(max_length=MAX_CONF)] = None


class Overrides(BaseModel, extra="forbid"):
    """CDE's per-run overrides (``spark``'s arguments and driver/executor settings; anything
    else is refused by name)."""

    spark: SparkOverrides | None = None


class CdeRunIn(BaseModel):
    """CDE's job run request."""

    variables: Variables | None = None
    overrides: Overrides | None = None
    user: Annotated[str | None, Field(max_length=255)] = None
    requestID: Annotated[str | None, Field(max_length=255)] = None  # noqa: N815 (CDE's name)


def _client_credentials(request: Request) -> tuple[str, str] | None:
    """``(client id, client secret)`` from an HTTP Basic Authorization header, or None."""
    values = [v for k, v in request.headers.raw if k == b"authorization"]
    if len(values) != 1:
        return None
    scheme, _, encoded = values[0].decode("latin-1").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, secret = decoded.partition(":")
    return (client_id, secret) if colon and client_id and secret else None


def add_token_route(app: FastAPI, database: Database, refusals: Refusals) -> None:
    """Register the OAuth2 client-credentials token route (public: it checks its own
    credentials, and refusals count against the caller like a bad key)."""

    @app.post(TOKEN_PATH, tags=["auth"], responses={401: {"description": "bad credentials"}})
    async def access_token(request: Request) -> JSONResponse:
        source = source_of(request.scope)
        wait = refusals.retry_after(source)
        if wait:
            status, body, headers = too_many(wait)
            return JSONResponse(body, status_code=status,
                                headers={k.decode(): v.decode() for k, v in headers})
        raw = await request.body()
        if len(raw) > MAX_FORM:
            raise InvalidInputError(f"the token request body is over {MAX_FORM} bytes")
        form = parse_qs(raw.decode("utf-8", "replace"))
        grant = form.get("grant_type", [""])
        if grant != ["client_credentials"]:
            raise InvalidInputError("grant_type: must be client_credentials")
        credentials = _client_credentials(request)
        issued = None
        if credentials is not None:
            issued = await run_in_threadpool(_issue, database, *credentials)
        if issued is None:
            refusals.count(source, "auth")
            return JSONResponse(UNAUTHORIZED, status_code=401,
                                headers={"www-authenticate": 'Basic realm="icefloe"'})
        token, expires_ms = issued
        return JSONResponse({"access_token": token, "token_type": "Bearer",
                             "expires_in": expires_ms},
                            headers={"cache-control": "no-store"})


def _issue(database: Database, client_id: str, secret: str) -> tuple[str, int] | None:
    # The client id goes into the audit log only when it has a key id's shape: a key pasted
    # into the wrong field (login and password swapped) must not be written down.
    named = f"key/{client_id}" if KEY_ID.fullmatch(client_id) else "key/?"
    with database.session() as s:
        issued = keys.issue_access_token(s, client_id[:64], secret)
        if issued is None:
            repo.audit(s, "anonymous", "token.issue", named, "denied")
            return None
        token, expires_at = issued
        repo.audit(s, named, "token.issue", named, "ok")
        return token, int(expires_at.timestamp() * 1000)


def _cde_run(s: Any, run: Run) -> dict[str, Any]:
    job = s.get(Job, run.job_id)
    return {"id": repo.run_number(s, run.id), "job": job.name if job else "",
            "icefloeRunId": run.id, "status": CDE_STATUS.get(run.status, "unknown"),
            "user": run.run_as, "reason": run.reason, "exitCode": run.exit_code,
            "created": iso_utc(run.created_at), "started": iso_utc(run.started_at),
            "ended": iso_utc(run.ended_at)}


def add_cde_routes(app: FastAPI, database: Database, runner: Runner) -> None:
    """Register a project's jobs as a CDE virtual cluster under ``/cde/{project id}/api/v1``."""
    router = APIRouter(prefix="/cde/{project_id}/api/v1", tags=["cde"])
    PROJECT = Path(max_length=64, description="The icefloe project serving as the cluster")

    @router.get("/info")
    def info(request: Request, project_id: str = PROJECT) -> dict[str, Any]:
        with database.session() as s:
            project = reachable(s, request, project_id)
            return {"appName": project.name, "appId": project.id,
                    "version": "icefloe", "cde": "1.x (jobs API subset)"}

    @router.post("/jobs/{job_name}/run", status_code=201)
    def run_job(request: Request, body: CdeRunIn, job_name: str = Path(max_length=255),
                project_id: str = PROJECT,
                idempotency_key: str | None = IDEMPOTENCY_KEY) -> Response:
        spark = body.overrides.spark if body.overrides else None
        arguments = shlex.join(spark.args) if spark and spark.args is not None else None
        # CDE's requestID, or the Idempotency-Key header the CML routes take too.
        key = body.requestID or idempotency_key
        settings = from_cde(spark.model_dump(exclude={"args"}, exclude_none=True)) \
            if spark else None
        run, started = request_run(
            database, request, project_id, job_name, by_name=True,
            idempotency_key=key, arguments=arguments, spark=settings or None,
            environment=dict(body.variables) if body.variables else None, number=True)
        if started:
            return JSONResponse({"id": run["number"]}, status_code=201)
        # CDE's answer to a repeated requestID: 409 with the run the first request started
        # (its "id", which the operator reads), in our error shape too.
        exists = ConflictError(f"a run with request id {key!r} exists: job run "
                               f"{run['number']} ({CDE_STATUS.get(run['status'], 'unknown')})")
        return JSONResponse({"id": run["number"], **exists.to_dict()}, status_code=409)

    @router.get("/job-runs/{number}")
    def get_job_run(request: Request, number: int = Path(ge=1, le=2**31),
                    project_id: str = PROJECT) -> dict[str, Any]:
        with database.session() as s:
            reachable(s, request, project_id)
            return _cde_run(s, repo.run_of_number(s, project_id, number))

    @router.post("/job-runs/{number}/kill", status_code=204)
    def kill_job_run(request: Request, number: int = Path(ge=1, le=2**31),
                     project_id: str = PROJECT) -> Response:
        with database.session() as s:
            reachable(s, request, project_id, change=True)
            run = repo.run_of_number(s, project_id, number)
            run_id, status = run.id, run.status
        stopped = runner.stop(run_id, reason=f"killed by {actor(request.scope)}")
        with database.session() as s:
            repo.audit(s, actor(request.scope), "run.stop", f"run/{run_id}",
                       "ok" if stopped else "already ended")
        if not stopped and status in states.TERMINAL:
            raise ConflictError(f"job run {number} already ended "
                                f"({CDE_STATUS.get(status, status)})")
        return Response(status_code=204)

    app.include_router(router)

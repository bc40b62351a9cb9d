"""``icefloe model deploy``, ``deployments``, ``deployment stop``, ``predict``, ``metrics read``.

All through the control plane's API (``--url``/``$ICEFLOE_URL``). The API key and a model's
access key are read from the environment, a file or stdin (:mod:`icefloe.cli.secrets`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from icefloe.cli.output import error, note, print_json, print_rows, steps, success
from icefloe.cli.remote import JSON, KEY, KEY_FILE, URL, connect
from icefloe.cli.secrets import ACCESS_KEY, STDIN, resolve_secret
from icefloe.client import Client
from icefloe.errors import InvalidInputError

if TYPE_CHECKING:
    from icefloe.serving.schema import NewFields

DEPLOY_TIMEOUT = 600.0  # a build self-tests, a deployment waits for its replicas

deployment_app = typer.Typer(help="Model deployments.", no_args_is_help=True)
metrics_app = typer.Typer(help="Prediction metrics (CML names).", no_args_is_help=True)


def _ready_build(client: Client, ref: str) -> dict:
    build = client.build_model(ref)
    if build["status"] != "BUILD_READY":
        error(build["reason"], label="build failed:")
        raise typer.Exit(7)
    return build


def _new_fields(deployment: dict[str, Any], build: dict[str, Any]) -> NewFields | None:
    """The input fields ``build`` adds to what ``deployment`` serves (None if either schema
    is unknown)."""
    from icefloe.serving.schema import InputSchema, new_fields

    old, new = deployment.get("input_schema"), build.get("input_schema")
    if not old or not new or "fields" not in old or "fields" not in new:
        return None
    return new_fields(InputSchema.from_dict(old), InputSchema.from_dict(new))


def deploy(ref: str = typer.Argument(..., metavar="NAME/VERSION|NAME@ALIAS"),
           no_auth: bool = typer.Option(False, "--no-auth",
                                        help="Serve without API keys (access key only)."),
           replicas: int = typer.Option(1, "--replicas", help="Replica processes (1-16)."),
           replace: str | None = typer.Option(
               None, "--replace", metavar="DEPLOYMENT",
               help="Move this deployment to the new build instead (same access key, no "
                    "dropped request; the old build keeps serving if the new one fails)."),
           accept_new_fields: bool = typer.Option(
               False, "--accept-new-fields",
               help="With --replace: move even if the new build requires input fields the "
                    "serving build does not take (refused otherwise, naming them: callers "
                    "do not send them today). New string fields need no acceptance: calls "
                    "without them score them as unknown."),
           url: str | None = URL, api_key: str | None = KEY,
           api_key_file: Path | None = KEY_FILE, as_json: bool = JSON) -> None:
    """Build and deploy a model version; prints the deployment id, access key and endpoint.

    Its steps are shown on stderr as they start; stdout has only the result."""
    if accept_new_fields and not replace:
        raise InvalidInputError("--accept-new-fields is for a redeploy: give --replace "
                                "DEPLOYMENT too")
    added = None
    with connect(url, api_key, api_key_file, timeout=DEPLOY_TIMEOUT) as client, \
            steps("deploy") as step:
        step(f"building {ref} on {client.url}: ONNX model, input schema, self-test "
             "against the recorded Spark scores")
        build = _ready_build(client, ref)
        if replace:
            added = _new_fields(client.get_deployment(replace), build)
            step(f"moving deployment {replace} to build {build['id']}: starting its "
                 "replicas, switching when all are ready")
            dep = client.redeploy(replace, build["id"], accept_new_fields=accept_new_fields)
        else:
            step(f"deploying build {build['id']}: starting {replicas} replica(s), waiting "
                 "until they answer")
            dep = client.deploy(build["id"], auth_enabled=not no_auth, replicas=replicas)
    if as_json:
        print_json(dep)
    elif replace:
        success(f"deployment {dep['id']} now serves {ref} (build {dep['build_id']})")
        if added is not None:
            from icefloe.serving.schema import describe_fields

            if added.defaulted:
                note(f"new input field(s) {describe_fields(added.defaulted)}: calls without "
                     "them score them as the unknown category (tracked as missing_fields)")
            if added.required:
                note(f"callers must now send {describe_fields(added.required)}: calls "
                     "without them are refused (422)")
    else:
        success(f"deployed {ref} as {dep['id']} at {dep['endpoint']}")
        print(f"access key (shown once): {dep['access_key']}")


@deployment_app.command("list")
def deployments(url: str | None = URL, api_key: str | None = KEY,
                api_key_file: Path | None = KEY_FILE, as_json: bool = JSON) -> None:
    """List deployments."""
    with connect(url, api_key, api_key_file) as client:
        rows = client.list_deployments()
    if as_json:
        print_json(rows)
    else:
        for row in rows:
            row["ready"] = f"{sum(r['ready'] for r in row['replica_status'])}/{row['replicas']}"
        print_rows(rows, ["id", "model", "model_version", "status", "ready", "auth_enabled",
                          "reason", "created_at"])


@deployment_app.command("stop")
def deployment_stop(deployment_id: str, url: str | None = URL, api_key: str | None = KEY,
                    api_key_file: Path | None = KEY_FILE, as_json: bool = JSON) -> None:
    """Stop serving a deployment (after a redeploy of it that is under way)."""
    with connect(url, api_key, api_key_file, timeout=DEPLOY_TIMEOUT) as client:
        dep = client.stop_deployment(deployment_id)
    if as_json:
        print_json(dep)
    else:
        success(f"deployment {dep['id']}: {dep['status']}")


def predict(access_key: str | None = typer.Option(
                None, "--access-key", metavar="-|VALUE",
                help="The deployment's access key: '-' reads it from stdin. Default "
                     "$ICEFLOE_ACCESS_KEY. A literal value is visible to other users (ps) "
                     "and is accepted with a warning."),
            access_key_file: Path | None = typer.Option(
                None, "--access-key-file", metavar="PATH",
                help="Read the access key from this file."),
            data: str = typer.Option(..., "--data", help="The record as a JSON object."),
            url: str | None = URL, api_key: str | None = KEY,
            api_key_file: Path | None = KEY_FILE) -> None:
    """Call a deployed model once (CML call_model) and print its answer as JSON."""
    try:
        record = json.loads(data)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"--data is not JSON: {exc.msg}") from exc
    if access_key == STDIN and api_key == STDIN:
        raise InvalidInputError("--access-key - and --api-key -: only one key can be read "
                                "from stdin; give the other by its variable or a file")
    model_key = resolve_secret(ACCESS_KEY, access_key, access_key_file, required=True)
    assert model_key is not None  # required=True
    with connect(url, api_key, api_key_file) as client:
        print_json(client.call_model(model_key, record))  # the client's key is sent


@metrics_app.command("read")
def metrics_read(deployment: str = typer.Option(..., "--deployment"),
                 start: int = typer.Option(0, "--start", help="Start, epoch ms."),
                 end: int | None = typer.Option(None, "--end", help="End, epoch ms."),
                 url: str | None = URL, api_key: str | None = KEY,
                 api_key_file: Path | None = KEY_FILE) -> None:
    """Print read_metrics for a deployment as JSON."""
    with connect(url, api_key, api_key_file) as client:
        print_json(client.read_metrics(deployment, start, end))


def register(app: typer.Typer, model_app: typer.Typer) -> None:
    """Add the serving commands."""
    model_app.command("deploy")(deploy)
    app.add_typer(deployment_app, name="deployment")
    app.command("deployments")(deployments)
    app.command("predict")(predict)
    app.add_typer(metrics_app, name="metrics")

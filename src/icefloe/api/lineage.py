"""Lineage and happenings under /api/v2.

``POST /api/v2/happenings``: a job run (or any editor) tells the control plane what it did;
the server stamps who sent it (never the body's actor) and tells its own subscribers
(lineage, access tracking, OpenLineage). ``GET /api/v2/lineage/{node}``: the lineage graph
around a node, upstream, downstream or both, to a depth.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request

from icefloe import happenings
from icefloe.api.lake import LazyLakehouse
from icefloe.auth.middleware import principal_of
from icefloe.auth.principals import Principal
from icefloe.config import Settings
from icefloe.errors import ForbiddenError, InvalidInputError, NotFoundError
from icefloe.governance import policy
from icefloe.governance.grants import EVERY_NAMESPACE, namespace_access
from icefloe.lineage.graph import DIRECTIONS, MAX_DEPTH
from icefloe.serving.predictions import PredictionLog
from icefloe.store.db import Database

MAX_DATASETS = 1000
DATASET_KINDS = ("table", "file")


def _check_datasets(data: Mapping[str, Any], key: str) -> None:
    """Refuse inputs/outputs that are not a list of datasets with valid names."""
    from icefloe.lakehouse.names import parse_table_name

    found = data.get(key)
    if found is None:
        return
    if not isinstance(found, list) or len(found) > MAX_DATASETS:
        raise InvalidInputError(f"happening {key} must be a list of at most {MAX_DATASETS} "
                                "datasets")
    for i, dataset in enumerate(found):
        where = f"happening {key}[{i}]"
        if not isinstance(dataset, Mapping) or not isinstance(dataset.get("name"), str):
            raise InvalidInputError(f"{where} must be an object with a name")
        kind = dataset.get("kind", "table")
        if kind not in DATASET_KINDS:
            raise InvalidInputError(f"{where}: kind must be table or file, not {kind!r:.50}")
        if kind == "table":
            parse_table_name(dataset["name"])
        elif not 0 < len(dataset["name"]) <= 500:
            raise InvalidInputError(f"{where}: a file name must be 1 to 500 characters")
        for number in ("snapshot_id", "rows"):
            value = dataset.get(number)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise InvalidInputError(f"{where}: {number} must be an integer or null")
        fields = dataset.get("fields") or []
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise InvalidInputError(f"{where}: fields must be a list of column names")


def parse_happening(data: Any, actor: happenings.Actor) -> happenings.Happening:
    """A happening a client sent, checked, with the server's actor (see the module).

    Raises:
        InvalidInputError: Naming what is wrong with the body.
    """
    if not isinstance(data, Mapping):
        raise InvalidInputError("a happening must be a JSON object")
    for key in ("subject", "parent"):
        if data.get(key) is not None and not isinstance(data[key], Mapping):
            raise InvalidInputError(f"happening {key} must be an object")
    for key in ("kind", "state", "run_id", "at"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise InvalidInputError(f"happening {key} must be a string")
    run_id = str(data.get("run_id") or "")
    if len(run_id) > 255 or not run_id.isprintable():
        raise InvalidInputError("happening run_id must be printable and at most 255 "
                                "characters")
    _check_datasets(data, "inputs")
    _check_datasets(data, "outputs")
    if actor.run_id and data.get("kind") == "job.run":
        raise InvalidInputError("a job run may not tell job.run happenings: the runner does")
    try:
        found = happenings.Happening.from_dict(data, actor)
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"invalid happening: {exc}"[:300]) from exc
    if actor.run_id:  # what a job run does belongs to that run, whatever the body says
        from dataclasses import replace

        found = replace(found, parent={"kind": "job.run", "run_id": actor.run_id})
    return found


# What the server records itself: nobody reports these.
SERVER_KINDS = frozenset({"job.run", "build", "deployment", "monitoring.window", "alert"})


def _believable(db: Database, principal: Principal, told: happenings.Happening
                ) -> happenings.Happening:
    """A job run's report, refused unless it is one a run could make: only run tokens
    report, never what the server records itself, only tables its project may read (inputs)
    and write (outputs); its time is the server's.

    Raises:
        ForbiddenError: Not a run token, or a kind only the server tells, or an output its
            project may not write.
        NotFoundError: An input table its project may not read.
    """
    from dataclasses import replace

    from icefloe.governance.grants import check_table

    if principal.run_id is None:
        raise ForbiddenError("only job runs (with their run token) report happenings")
    if told.kind in SERVER_KINDS:
        raise ForbiddenError(f"kind {told.kind!r} is recorded by the control plane itself")
    with db.session() as s:
        for dataset in told.inputs:
            if dataset.kind == "table":
                check_table(s, principal, dataset.name)
        for dataset in told.outputs:
            if dataset.kind == "table":
                check_table(s, principal, dataset.name, write=True)
    return replace(told, at=datetime.now(UTC))


def _claim_model(settings: Settings, db: Database, principal: Principal,
                 told: happenings.Happening) -> None:
    """A model first trained by a job run belongs to the run's project: claimed only when
    the registry says that very run trained the version (a model with a project keeps it).
    """
    from icefloe.catalog.cards import ensure_card
    from icefloe.lineage.assemble import JOB_RUN_TAG
    from icefloe.registry.mlflow_registry import ModelRegistry

    model, version = told.subject.get("model"), told.subject.get("version")
    if not isinstance(model, str) or not isinstance(version, int | str):
        return
    try:
        registry = ModelRegistry(settings)
        mv = registry.client.get_model_version(model, str(version))
        run = registry.client.get_run(mv.run_id or "")
    except Exception:  # noqa: BLE001 - an unverifiable claim is simply not made
        return
    if run.data.tags.get(JOB_RUN_TAG) != principal.run_id:
        return
    with db.session() as s:
        ensure_card(s, model, principal.project_id, principal.user)


def add_lineage_routes(router: APIRouter, db: Database, settings: Settings,
                       lakehouse: LazyLakehouse, predictions: PredictionLog) -> None:
    """Register ``POST /happenings`` and ``GET /lineage/{node}`` on the /api/v2 router."""

    @router.post("/happenings", status_code=202)
    def report_happening(request: Request, body: Annotated[Any, Body()]) -> dict[str, Any]:
        principal = principal_of(request.scope)
        told = parse_happening(body, happenings.actor_of(request.scope))
        if principal is not None and not principal.is_admin:
            told = _believable(db, principal, told)
        happenings.publish(told)
        if (told.kind == "training" and told.state == "COMPLETE" and principal is not None
                and principal.run_id is not None and principal.project_id is not None):
            _claim_model(settings, db, principal, told)
        who = told.actor
        return {"accepted": True, "kind": told.kind, "state": told.state,
                "run_id": told.run_id,
                "actor": {"user": who.user, "key_id": who.key_id, "run_id": who.run_id}}

    @router.get("/lineage/{node:path}")
    def lineage(node: str, request: Request,
                direction: str = Query("both", max_length=16,
                                       description=f"One of {', '.join(DIRECTIONS)}"),
                depth: int | None = Query(None, ge=1, le=MAX_DEPTH)) -> dict[str, Any]:
        from icefloe.lineage.assemble import lineage_graph

        if node.startswith("prediction:"):
            predictions.flush()  # a prediction just answered may still be on its way
        principal = principal_of(request.scope)
        hidden = NotFoundError(f"lineage node {node[:300]!r} does not exist")
        try:
            graph = lineage_graph(db, settings, node, direction=direction, depth=depth,
                                  lakehouse=lakehouse())
        except NotFoundError:
            if principal is None or principal.is_admin:
                raise
            raise hidden from None  # the same answer as for a node it may not see
        if principal is None or principal.is_admin:
            return graph
        with db.session() as s:  # only what the caller's projects reach
            granted = namespace_access(s, principal)
            models = {n["id"].partition(":")[2].rsplit("/", 1)[0] for n in graph["nodes"]
                      if n["kind"] == "model"}
            seen_models = set(policy.visible_models(s, settings, principal, sorted(models)))
        shown = policy.visible_lineage(
            graph, principal.reaches,
            lambda table: EVERY_NAMESPACE in granted or table.split(".", 1)[0] in granted,
            seen_models.__contains__)
        if shown is None:
            raise hidden
        return shown

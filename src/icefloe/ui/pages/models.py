"""Models: versions with their metrics and the trend of each across versions; a version's
lineage chain (snapshot and fingerprint -> training run -> version -> builds -> deployments)
with a link on every node; the command that reproduces its training rows."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from icefloe.ui.calls import ApiError
from icefloe.ui.charts import line_chart
from icefloe.ui.pages.jobs import refused
from icefloe.ui.render import page, paged
from icefloe.ui.site import api

TREND_METRICS = ("accuracy", "auc", "f1", "precision", "recall", "pr_auc")
# The chain's columns, upstream to downstream.
CHAIN = ("airflow", "snapshot", "run", "training", "model", "build", "deployment")


async def models(request: Request) -> Response:
    """Registered models the caller's projects hold."""
    listed = await api(request).get("/api/v2/catalog/models")
    shown, offset, more = paged(listed.get("models", []), request)
    return page(request, "models.html", models=shown, offset=offset, more=more)


async def model(request: Request) -> Response:
    """A model: versions, metric trends, the chosen version's lineage chain."""
    name = request.path_params["name"]
    calls = api(request)
    try:
        entry = await calls.get(f"/api/v2/catalog/models/{quote(name, safe='')}")
    except ApiError as exc:
        return refused(request, exc)
    versions = sorted(entry.get("versions", []), key=lambda v: v["version"])
    trends = [line_chart(metric, [(v["version"], (v.get("metrics") or {}).get(metric))
                                  for v in versions], bounds=(0.0, 1.0), x_is_time=False)
              for metric in TREND_METRICS
              if any(metric in (v.get("metrics") or {}) for v in versions)]
    chosen = _chosen(request, versions)
    chain: list[tuple[str, list[dict[str, Any]]]] = []
    edges: list[dict[str, Any]] = []
    if chosen is not None:
        # Where it came from (three steps up) and what serves it (two steps down); not the
        # predictions further down, which would crowd the chain.
        node = f"/api/v2/lineage/model:{name}/{chosen['version']}"
        up = await calls.get(node, direction="upstream", depth=3)
        down = await calls.get(node, direction="downstream", depth=2)
        nodes = {n["id"]: n for n in [*up["nodes"], *down["nodes"]]}
        chain = lineage_columns(list(nodes.values()))
        edges = [*up.get("edges", []), *down.get("edges", [])]
    newest_first, offset, more = paged(versions[::-1], request)
    return page(request, "model.html", name=name, entry=entry, versions=newest_first,
                offset=offset, more=more,
                trends=trends, chosen=chosen, chain=chain, edges=edges,
                metric_names=_metric_names(versions))


def _chosen(request: Request, versions: list[dict[str, Any]]) -> dict[str, Any] | None:
    wanted = request.query_params.get("version")
    for version in versions:
        if str(version["version"]) == wanted:
            return version
    return versions[-1] if versions else None


def _metric_names(versions: list[dict[str, Any]]) -> list[str]:
    names = {m for v in versions for m in (v.get("metrics") or {})}
    first = [m for m in TREND_METRICS if m in names]
    return first + sorted(names - set(first))[:8]


def lineage_columns(nodes: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Lineage nodes as columns in chain order, each node with the UI link of its page."""
    columns: dict[str, list[dict[str, Any]]] = {kind: [] for kind in CHAIN}
    for node in nodes:
        kind = node.get("kind", "")
        if kind in columns:
            columns[kind].append({**node, "href": node_link(node)})
    return [(kind, sorted(found, key=lambda n: n.get("label") or n["id"]))
            for kind, found in columns.items() if found]


def node_link(node: dict[str, Any]) -> str | None:
    """The UI page of a lineage node, if it has one."""
    kind, key = node["id"].split(":", 1)
    if kind == "snapshot":
        table, _, snapshot = key.rpartition("@")
        return f"/ui/tables/{table}?at={snapshot}"
    if kind == "run":
        return f"/ui/runs/{key}"
    if kind == "model":
        name, _, version = key.rpartition("/")
        return f"/ui/models/{quote(name, safe='')}?version={version}"
    if kind == "deployment":
        return f"/ui/deployments/{key}"
    if kind == "build":
        return f"/ui/builds/{key}"
    return None


async def build(request: Request) -> Response:
    """A build: its model version, checks and the deployments that serve it."""
    calls = api(request)
    build_id = request.path_params["build_id"]
    try:
        found = await calls.get(f"/api/v2/models/builds/{build_id}")
    except ApiError as exc:
        return refused(request, exc)
    deployments = [d for d in (await calls.get("/api/v2/models/deployments"))["deployments"]
                   if d["build_id"] == build_id]
    return page(request, "build.html", build=found, deployments=deployments)


async def lineage(request: Request) -> Response:
    """The lineage graph around any node (``?node=kind:id``), as the caller may see it."""
    node = request.query_params.get("node", "")[:1000]
    depth = request.query_params.get("depth", "2")
    depth = depth if depth in ("1", "2", "3", "4", "5") else "2"
    try:
        graph = await api(request).get(f"/api/v2/lineage/{node}", depth=depth)
    except ApiError as exc:
        return refused(request, exc)
    return page(request, "lineage.html", node=node, depth=int(depth),
                chain=lineage_columns(graph["nodes"]))


ROUTES = [
    Route("/ui/lineage", lineage),
    Route("/ui/models", models),
    Route("/ui/models/{name}", model),
    Route("/ui/builds/{build_id}", build),
]

"""A deployment: replicas and their state; requests, latency and errors over time; accuracy
and label coverage over time; drift per feature against the training reference with its
thresholds; alert rules and their history; redeploy and stop.

Charts read monitoring points (one per figure per sweep), never the prediction log.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from icefloe.monitoring import points
from icefloe.monitoring.windows import PSI_LEVELS, psi_level
from icefloe.ui.calls import ApiError
from icefloe.ui.charts import Chart, line_chart
from icefloe.ui.pages.jobs import refused
from icefloe.ui.render import page, paged
from icefloe.ui.site import api, form, principal, run, ui_of

SERVICE = (("requests", "requests per window", None), ("latency_p99_ms", "latency p99 (ms)",
           None), ("error_rate", "error rate", (0.0, 1.0)))
QUALITY = (("accuracy", "accuracy", (0.0, 1.0)), ("label_coverage", "label coverage",
           (0.0, 1.0)), ("prediction_psi", "prediction drift (PSI)", None))


async def deployments(request: Request) -> Response:
    """Every deployment the caller sees."""
    listed = (await api(request).get("/api/v2/models/deployments"))["deployments"]
    shown, offset, more = paged(listed, request)
    return page(request, "deployments.html", deployments=shown, offset=offset, more=more)


async def deployment(request: Request) -> Response:
    """One deployment's page."""
    dep_id = request.path_params["deployment_id"]
    calls = api(request)
    try:
        dep = await calls.get(f"/api/v2/models/deployments/{dep_id}")
        rules = (await calls.get(f"/api/v2/models/deployments/{dep_id}/rules"))["rules"]
    except ApiError as exc:
        return refused(request, exc)
    history: list[dict[str, Any]] = []
    for rule in rules:
        for event in (await calls.get(f"/api/v2/rules/{rule['id']}/events"))["events"]:
            history.append({**event, "metric": rule["metric"], "feature": rule["feature"]})
    history.sort(key=lambda e: e["at"], reverse=True)
    found = await run(points.series, ui_of(request).db, dep_id)
    jobs_tracked = await run(points.tracked, ui_of(request).db, dep_id)
    builds = [b for b in (await calls.get("/api/v2/models/builds"))["builds"]
              if b["model"] == dep["model"] and b["status"] == "BUILD_READY"]
    return page(request, "deployment.html", dep=dep, rules=rules, history=history[:100],
                service=charts(found, SERVICE, rules),
                quality=tracked_charts(jobs_tracked, rules) + charts(found, QUALITY, rules),
                drift=drift_table(found, rules), builds=builds,
                may_change=principal(request).may("POST"))


def charts(found: dict[tuple[str, str], list[tuple[int, float | None, int]]],
           which: tuple[tuple[str, str, tuple[float, float] | None], ...],
           rules: list[dict[str, Any]]) -> list[Chart]:
    """The charts of some figures, with the thresholds of the rules on them."""
    drawn = []
    for metric, title, bounds in which:
        series = [(t, v) for t, v, _ in found.get((metric, ""), [])]
        lines = [(float(r["threshold"]), f"rule {r['comparison']}") for r in rules
                 if r["metric"] == metric and not r["feature"]]
        drawn.append(line_chart(title, series, lines, bounds))
    return drawn


def tracked_charts(tracked: dict[str, list[tuple[int, float | None]]],
                   rules: list[dict[str, Any]]) -> list[Chart]:
    """Charts of the metrics jobs tracked per window of predictions (the seed's
    ``track_aggregate_metrics``), accuracy first."""
    names = sorted(tracked, key=lambda n: (n != "accuracy", n))[:6]
    return [line_chart(f"{name} (tracked by jobs, per window)", tracked[name],
                       [(float(r["threshold"]), f"rule {r['comparison']}") for r in rules
                        if r["metric"] == name and not r["feature"]],
                       (0.0, 1.0) if name in ("accuracy", "auc", "f1", "precision", "recall")
                       else None) for name in names]


def drift_table(found: dict[tuple[str, str], list[tuple[int, float | None, int]]],
                rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per feature, the newest PSI against the training reference, its level and the rule
    threshold on it, worst first."""
    rows: list[dict[str, Any]] = []
    for (metric, feature), series in found.items():
        if metric != "psi" or not feature or not series:
            continue
        at, value, samples = series[-1]
        threshold = next((r["threshold"] for r in rules if r["metric"] == "psi"
                          and r["feature"] == feature), None)
        rows.append({"feature": feature, "psi": value, "samples": samples, "at": at,
                     "level": psi_level(value) if value is not None else "no data",
                     "threshold": threshold,
                     "trend": [v for _, v, _ in series[-20:] if v is not None]})
    rows.sort(key=lambda r: -(r["psi"] or 0.0))
    return rows


async def redeploy(request: Request) -> Response:
    """Switch the deployment to another build (zero downtime; the API checks the build)."""
    fields = await form(request)
    dep_id = request.path_params["deployment_id"]
    try:
        await api(request).post(f"/api/v2/models/deployments/{dep_id}:redeploy",
                                {"build_id": fields.get("build_id", "")})
    except ApiError as exc:
        return refused(request, exc)
    return RedirectResponse(f"/ui/deployments/{dep_id}", status_code=303)


async def stop(request: Request) -> Response:
    """Stop serving the deployment."""
    await form(request)
    dep_id = request.path_params["deployment_id"]
    try:
        await api(request).post(f"/api/v2/models/deployments/{dep_id}:stop")
    except ApiError as exc:
        return refused(request, exc)
    return RedirectResponse(f"/ui/deployments/{dep_id}", status_code=303)


ROUTES = [
    Route("/ui/deployments", deployments),
    Route("/ui/deployments/{deployment_id}", deployment),
    Route("/ui/deployments/{deployment_id}/redeploy", redeploy, methods=["POST"]),
    Route("/ui/deployments/{deployment_id}/stop", stop, methods=["POST"]),
]
PSI_HELP = ", ".join(f"< {limit} {name}" for limit, name in PSI_LEVELS)

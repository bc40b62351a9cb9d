"""Monitoring points: each sweep's figures of a deployment, kept for charts over time.

A sweep measures a window (an hour, say) of a deployment's predictions; its figures
(requests, latency, error rate, label coverage, accuracy, drift per feature) become one point
each. A chart of accuracy over a week reads a few hundred points, never the prediction log.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import delete, select

from icefloe.store.db import Database
from icefloe.store.orm import AggregateMetric, MonitoringPoint

MAX_POINTS = 500  # per chart: older points are thinned out by the reader


def record(db: Database, result: dict[str, Any]) -> int:
    """Keep the figures of one measured window (as ``monitor_deployment`` returns them).

    Returns:
        The number of points written (figures without a value count: a gap is a fact).
    """
    figures = result.get("figures") or []
    if not figures:
        return 0
    rows = [MonitoringPoint(deployment_id=result["deployment"], at_ms=int(result["end_ms"]),
                            window_spec=str(result["window"])[:16],
                            metric=str(f["metric"])[:64], feature=str(f.get("feature") or "")
                            [:255], value=f.get("value"), samples=int(f.get("samples") or 0),
                            model_version=int(result.get("model_version") or 0))
            for f in figures]
    with db.session() as s:
        s.add_all(rows)
    return len(rows)


def series(db: Database, deployment_id: str, *, since_ms: int = 0,
           limit: int = MAX_POINTS) -> dict[tuple[str, str], list[tuple[int, float | None, int]]]:
    """The newest points of a deployment, by ``(metric, feature)``, oldest first.

    Args:
        db: The platform DB.
        deployment_id: The deployment.
        since_ms: Only points at or after this time.
        limit: At most this many sweeps (the newest).
    """
    with db.session() as s:
        times = list(s.scalars(
            select(MonitoringPoint.at_ms).where(MonitoringPoint.deployment_id == deployment_id,
                                                MonitoringPoint.at_ms >= since_ms)
            .group_by(MonitoringPoint.at_ms).order_by(MonitoringPoint.at_ms.desc())
            .limit(limit)))
        if not times:
            return {}
        rows = s.execute(
            select(MonitoringPoint.metric, MonitoringPoint.feature, MonitoringPoint.at_ms,
                   MonitoringPoint.value, MonitoringPoint.samples)
            .where(MonitoringPoint.deployment_id == deployment_id,
                   MonitoringPoint.at_ms >= min(times))
            .order_by(MonitoringPoint.at_ms, MonitoringPoint.id))
        found: dict[tuple[str, str], list[tuple[int, float | None, int]]] = defaultdict(list)
        for metric, feature, at_ms, value, samples in rows:
            found[(metric, feature)].append((at_ms, value, samples))
        return dict(found)


def tracked(db: Database, deployment_id: str, *, limit: int = MAX_POINTS
            ) -> dict[str, list[tuple[int, float | None]]]:
    """Metrics jobs tracked for windows of the deployment's predictions
    (``track_aggregate_metrics``, e.g. accuracy per 100 predictions), by name, at each
    window's end, oldest first."""
    with db.session() as s:
        rows = list(s.execute(
            select(AggregateMetric.end_timestamp_ms, AggregateMetric.metrics)
            .where(AggregateMetric.deployment_id == deployment_id)
            .order_by(AggregateMetric.end_timestamp_ms.desc()).limit(limit)))
    found: dict[str, list[tuple[int, float | None]]] = defaultdict(list)
    for end_ms, metrics in reversed(rows):
        for name, value in (metrics or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                found[str(name)[:64]].append((int(end_ms), float(value)))
    return dict(found)


def prune(db: Database, before_ms: int) -> int:
    """Forget points older than ``before_ms``; returns how many."""
    with db.session() as s:
        result = s.execute(delete(MonitoringPoint).where(MonitoringPoint.at_ms < before_ms))
        return int(getattr(result, "rowcount", 0) or 0)

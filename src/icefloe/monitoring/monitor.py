"""Monitoring a deployment: export the log, read the window, measure it, keep the result.

The window's rows are read from ``monitoring.predictions`` (columns, with an Iceberg row
filter: never the JSON log), those of the build the deployment serves now; the reference is
that build's ``profile.json``. Every run's figures are appended to ``monitoring.metrics``
(one row per figure: deployment, window_spec, its start and end, metric, feature, value,
samples, status), so a SQL report can follow them over time.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from icefloe.errors import NotFoundError
from icefloe.happenings import Dataset
from icefloe.monitoring import points
from icefloe.monitoring.export import TABLE as PREDICTIONS
from icefloe.monitoring.export import export_predictions
from icefloe.monitoring.profile import PROFILE_FILE, ReferenceProfile
from icefloe.monitoring.windows import MIN_SAMPLES, judged, parse_window, window_figures
from icefloe.store import repo
from icefloe.store.db import Database
from icefloe.store.orm import AggregateMetric, Build, CallFailure

if TYPE_CHECKING:
    import pyarrow as pa

    from icefloe.lakehouse import Lakehouse

METRICS = "monitoring.metrics"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def monitor_deployment(db: Database, lakehouse: Lakehouse, deployment_id: str,
                       window: str = "1h", *, min_samples: int = MIN_SAMPLES,
                       record: bool = True, now_ms: int | None = None) -> dict[str, Any]:
    """The metrics of a deployment's window, each with its samples and status.

    Raises:
        NotFoundError: No such deployment.
        InvalidInputError: A window that is not ``30m``/``1h``/``7d`` or a count.
    """
    return _measure(db, lakehouse, deployment_id, window, min_samples, record, now_ms)[0]


def report_page(db: Database, lakehouse: Lakehouse, deployment_id: str, window: str = "7d",
                *, min_samples: int = MIN_SAMPLES, record: bool = True,
                now_ms: int | None = None) -> tuple[str, dict[str, Any]]:
    """The self-contained HTML report of a deployment's window, and the figures it shows."""
    from icefloe.monitoring.report import over_time, render

    result, rows = _measure(db, lakehouse, deployment_id, window, min_samples, record, now_ms)
    return render(result, over_time(rows, result["start_ms"], result["end_ms"])), result


def report_deployment(db: Database, lakehouse: Lakehouse, deployment_id: str, output: Path,
                      window: str = "7d", *, min_samples: int = MIN_SAMPLES,
                      now_ms: int | None = None) -> dict[str, Any]:
    """Write the self-contained HTML report of a deployment's window to ``output`` (whole
    or not at all); returns the figures it shows."""
    page, result = report_page(db, lakehouse, deployment_id, window, min_samples=min_samples,
                               now_ms=now_ms)
    partial = output.with_name(f".{output.name}.partial")
    partial.write_text(page, encoding="utf-8")
    partial.replace(output)
    return result


def _measure(db: Database, lakehouse: Lakehouse, deployment_id: str, window: str,
             min_samples: int, record: bool, now_ms: int | None
             ) -> tuple[dict[str, Any], pa.Table]:
    span = parse_window(window)
    with db.session() as s:
        dep = repo.get_deployment(s, deployment_id)
        build = s.get(Build, dep.build_id)
        build_path = build.path if build is not None else ""
        model, version, build_id = dep.model_name, dep.model_version, dep.build_id
    export_predictions(db, lakehouse)
    end = int(time.time() * 1000) if now_ms is None else now_ms
    rows = _window_rows(lakehouse, deployment_id, build_id, end, span.span_ms, span.last)
    start = (end - span.span_ms) if span.span_ms is not None else (
        int(min(rows.column("timestamp_ms").to_pylist())) if rows.num_rows else end)
    profile = _profile(build_path)
    errors = _errors(db, deployment_id, start, end)
    figures = [judged(f, min_samples) for f in window_figures(rows, profile, errors)]
    result = {
        "deployment": deployment_id, "model": model, "model_version": version,
        "build": build_id, "window": span.text, "start_ms": start, "end_ms": end,
        "min_samples": min_samples,
        "reference": None if profile is None else {
            "table": profile.table, "snapshot_id": profile.snapshot_id,
            "fingerprint": profile.fingerprint},
        "figures": figures,
        "aggregates": _aggregates(db, deployment_id, start, end),
    }
    if record and figures:
        _record(lakehouse, result, _predictions_read(lakehouse))
        points.record(db, result)
    return result, rows


def _predictions_read(lakehouse: Lakehouse) -> tuple[Dataset, ...]:
    """The snapshot of the prediction table a window was read from (for lineage)."""
    try:
        current = lakehouse.current_snapshot(PREDICTIONS)
    except NotFoundError:
        return ()
    return (Dataset(PREDICTIONS, snapshot_id=current.snapshot_id),) if current else ()


def _window_rows(lakehouse: Lakehouse, deployment_id: str, build_id: str, end: int,
                 span_ms: int | None, last: int | None) -> pa.Table:
    """The window's rows of the build the deployment serves (after a redeploy the old
    build's rows would be measured against the new build's profile)."""
    try:
        table = lakehouse.table(PREDICTIONS)
    except NotFoundError:
        return _empty()
    if not (UUID.fullmatch(deployment_id) and UUID.fullmatch(build_id)):
        raise NotFoundError(f"deployment {deployment_id!r} does not exist")  # ids from the
        # store only: never filter syntax
    condition = (f"deployment = '{deployment_id}' AND build = '{build_id}' AND "
                 f"timestamp_ms <= {int(end)}")
    if span_ms is not None:
        condition += f" AND timestamp_ms >= {int(end - span_ms)}"
    rows: pa.Table = table.scan(row_filter=condition).to_arrow()
    if last is not None and rows.num_rows > last:
        import pyarrow.compute as pc

        order = pc.sort_indices(rows, [("timestamp_ms", "descending")])
        rows = rows.take(order[:last])
    return rows


def _empty() -> pa.Table:
    import pyarrow as pa

    return pa.table({"latency_ms": pa.array([], pa.float64()),
                     "score": pa.array([], pa.float64()),
                     "truth": pa.array([], pa.float64()),
                     "timestamp_ms": pa.array([], pa.int64())})


def _profile(build_path: str) -> ReferenceProfile | None:
    """The reference profile inside the build (None for a build of a version without one)."""
    path = Path(build_path) / PROFILE_FILE if build_path else None
    if path is None or not path.is_file():
        return None
    return ReferenceProfile.from_dict(json.loads(path.read_text()))


def _errors(db: Database, deployment_id: str, start: int, end: int) -> int:
    """Calls of the deployment answered with an error in the minutes of the window."""
    from sqlalchemy import func

    with db.session() as s:
        return int(s.scalar(select(func.coalesce(func.sum(CallFailure.count), 0)).where(
            CallFailure.deployment_id == deployment_id,
            CallFailure.minute_ms >= start - start % 60_000,
            CallFailure.minute_ms <= end)) or 0)


def _aggregates(db: Database, deployment_id: str, start: int, end: int
                ) -> list[dict[str, Any]]:
    """The seed's aggregate metrics (track_aggregate_metrics) overlapping the window."""
    with db.session() as s:
        found = s.scalars(select(AggregateMetric).where(
            AggregateMetric.deployment_id == deployment_id,
            AggregateMetric.end_timestamp_ms >= start,
            AggregateMetric.start_timestamp_ms <= end)
            .order_by(AggregateMetric.start_timestamp_ms, AggregateMetric.id))
        return [{"start_ms": a.start_timestamp_ms, "end_ms": a.end_timestamp_ms,
                 "metrics": a.metrics} for a in found]


def _record(lakehouse: Lakehouse, result: dict[str, Any],
            read: tuple[Dataset, ...] = ()) -> None:
    """Append the figures to ``monitoring.metrics`` (one commit), published as the
    deployment's monitoring window."""
    import pyarrow as pa

    figures = result["figures"]
    n = len(figures)
    computed = int(time.time() * 1000)
    data = pa.table({
        "deployment": pa.array([result["deployment"]] * n, pa.string()),
        "model": pa.array([result["model"]] * n, pa.string()),
        "model_version": pa.array([result["model_version"]] * n, pa.int32()),
        "window_spec": pa.array([result["window"]] * n, pa.string()),  # "window": SQL keyword
        "start_ms": pa.array([result["start_ms"]] * n, pa.int64()),
        "end_ms": pa.array([result["end_ms"]] * n, pa.int64()),
        "computed_at": pa.array([computed * 1000] * n, pa.int64())
        .cast(pa.timestamp("us", tz="UTC")),
        "metric": pa.array([f["metric"] for f in figures], pa.string()),
        "feature": pa.array([f["feature"] for f in figures], pa.string()),
        "value": pa.array([f["value"] for f in figures], pa.float64()),
        "samples": pa.array([f["samples"] for f in figures], pa.int64()),
        "status": pa.array([f["status"] for f in figures], pa.string()),
    })
    lakehouse.write(METRICS, data, "auto", evolve=True, inputs=read,
                    happening="monitoring.window",
                    subject={"deployment_id": result["deployment"], "build_id": result["build"],
                             "model": result["model"], "version": result["model_version"],
                             "window": result["window"], "start_ms": result["start_ms"],
                             "end_ms": result["end_ms"], "via": "monitoring",
                             "metrics": {f["metric"] + (f".{f['feature']}" if f["feature"]
                                                        else ""): f["value"] for f in figures
                                         if isinstance(f["value"], int | float)}})

"""The prediction log: batched writes off the request path, delayed ground truth, reads.

Request handlers put records (and access events of refused model calls) on a queue; one
writer thread inserts them in batches and the log is flushed on shutdown, so answering never
waits for the database and nothing is lost.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from sqlalchemy import insert, select

from icefloe.errors import ConflictError, InvalidInputError, NotFoundError
from icefloe.store import repo
from icefloe.store.db import Database
from icefloe.store.models import AggregateMetric, AuditEvent, Deployment, Prediction

log = logging.getLogger(__name__)
BATCH = 500


class PredictionLog:
    """Batched, thread-safe recording of predictions."""

    def __init__(self, db: Database, flush_interval: float = 0.05) -> None:
        self.db = db
        self.flush_interval = flush_interval
        self._queue: queue.Queue[tuple[type, dict[str, Any]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="icefloe-predictions",
                                        daemon=True)
        self._thread.start()

    def record(self, row: dict[str, Any]) -> None:
        """Queue one prediction (columns of :class:`Prediction`)."""
        self._queue.put((Prediction, row))

    def access(self, actor: str, target: str, outcome: str, detail: str = "") -> None:
        """Queue the access event of a refused model call (successful calls are predictions)."""
        self._queue.put((AuditEvent, {"at": repo.now(), "actor": actor, "action": "model.call",
                                      "target": target, "outcome": outcome,
                                      "detail": detail[:2000]}))

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[tuple[type, dict[str, Any]]] = []
            item = self._queue.get()
            while True:
                if item is None:
                    stopping = True
                    break
                batch.append(item)
                if len(batch) >= BATCH:
                    break
                try:
                    item = self._queue.get(timeout=self.flush_interval)
                except queue.Empty:
                    break
            if batch:
                self._write(batch)
            for _ in range(len(batch) + (1 if stopping else 0)):
                self._queue.task_done()

    def _write(self, batch: list[tuple[type, dict[str, Any]]]) -> None:
        by_table: dict[type, list[dict[str, Any]]] = {}
        for table, row in batch:
            by_table.setdefault(table, []).append(row)
        for attempt in range(5):
            try:
                with self.db.session() as s:
                    for table, rows in by_table.items():
                        s.execute(insert(table), rows)
                return
            except Exception:
                log.exception("writing %d predictions failed (attempt %d)", len(batch),
                              attempt + 1)
                threading.Event().wait(0.2 * (attempt + 1))

    def queued(self) -> int:
        """Records waiting to be written (approximate)."""
        return self._queue.qsize()

    def flush(self) -> None:
        """Block until everything queued so far is written."""
        self._queue.join()

    def close(self) -> None:
        """Write everything queued, then stop the writer."""
        self._queue.put(None)
        self._thread.join(timeout=30)


def track_delayed_metrics(db: Database, prediction_uuid: str,
                          metrics: dict[str, Any]) -> dict[str, Any]:
    """Attach ground truth (or any late metric) to a recorded prediction.

    Raises:
        NotFoundError: No prediction has this uuid.
        ConflictError: A metric of that name was already attached (never silently merged).
    """
    if not isinstance(metrics, dict) or not metrics:
        raise InvalidInputError("metrics must be a non-empty JSON object")
    with db.session() as s:
        row = s.scalar(select(Prediction).where(Prediction.uuid == prediction_uuid)
                       .with_for_update())
        if row is None:
            raise NotFoundError(f"no prediction has uuid {prediction_uuid!r}")
        existing = dict(row.delayed_metrics or {})
        clash = sorted(set(existing) & set(metrics))
        if clash:
            raise ConflictError(f"prediction {prediction_uuid} already has delayed metric(s) "
                                f"{', '.join(clash)}")
        row.delayed_metrics = {**existing, **metrics}
        return {"prediction_uuid": prediction_uuid, "metrics": row.delayed_metrics}


def track_aggregate_metrics(db: Database, metrics: dict[str, Any], start_timestamp_ms: int,
                            end_timestamp_ms: int, model_deployment_crn: str,
                            actor: str = "") -> dict[str, Any]:
    """Store metrics about a window of a deployment's predictions (e.g. accuracy per day).

    Raises:
        InvalidInputError: Empty metrics, or the window ends before it starts.
        NotFoundError: No such deployment.
    """
    if not isinstance(metrics, dict) or not metrics:
        raise InvalidInputError("metrics must be a non-empty JSON object")
    if end_timestamp_ms < start_timestamp_ms:
        raise InvalidInputError("end_timestamp_ms is before start_timestamp_ms")
    with db.session() as s:
        if s.get(Deployment, model_deployment_crn) is None:
            raise NotFoundError(f"deployment {model_deployment_crn!r} does not exist")
        s.add(AggregateMetric(deployment_id=model_deployment_crn, metrics=metrics,
                              start_timestamp_ms=start_timestamp_ms,
                              end_timestamp_ms=end_timestamp_ms, created_by=actor,
                              created_at=repo.now()))
    return {"modelDeploymentCrn": model_deployment_crn, "startTimestampMs": start_timestamp_ms,
            "endTimestampMs": end_timestamp_ms, "metrics": metrics}


def read_metrics(db: Database, deployment_id: str, start_timestamp_ms: int,
                 end_timestamp_ms: int) -> dict[str, Any]:
    """Predictions of a deployment in a time window, with inputs, outputs and late metrics.

    Aggregate metrics whose window overlaps come after them, with ``predictionUuid`` null.
    """
    with db.session() as s:
        rows = s.scalars(select(Prediction).where(
            Prediction.deployment_id == deployment_id,
            Prediction.timestamp_ms >= start_timestamp_ms,
            Prediction.timestamp_ms <= end_timestamp_ms).order_by(Prediction.timestamp_ms))
        out = [{
            "modelDeploymentCrn": r.deployment_id, "predictionUuid": r.uuid,
            "timestampMs": r.timestamp_ms, "modelVersion": r.model_version, "build": r.build_id,
            "caller": r.caller,
            "metrics": {"input": r.inputs, "output": r.outputs, **(r.metrics or {}),
                        **(r.delayed_metrics or {})},
        } for r in rows]
        aggregates = s.scalars(select(AggregateMetric).where(
            AggregateMetric.deployment_id == deployment_id,
            AggregateMetric.end_timestamp_ms >= start_timestamp_ms,
            AggregateMetric.start_timestamp_ms <= end_timestamp_ms)
            .order_by(AggregateMetric.start_timestamp_ms, AggregateMetric.id))
        out += [{"modelDeploymentCrn": a.deployment_id, "predictionUuid": None,
                 "startTimestampMs": a.start_timestamp_ms, "endTimestampMs": a.end_timestamp_ms,
                 "metrics": a.metrics} for a in aggregates]
        return {"metrics": out}

"""The prediction log: batched writes off the request path, delayed ground truth, reads.

Request handlers put records (and audit events that must not wait for the database, such as
refusals) on a queue; one writer thread inserts them in batches and the log is flushed on
shutdown, so answering never waits for the database and nothing is lost.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from icefloe.errors import ConflictError, InvalidInputError, NotFoundError
from icefloe.store import repo
from icefloe.store.db import Database
from icefloe.store.models import AggregateMetric, AuditEvent, Prediction

log = logging.getLogger(__name__)
BATCH = 500
COLUMNS = ("uuid", "deployment_id", "build_id", "model_name", "model_version", "timestamp_ms",
           "caller", "inputs", "outputs", "latency_ms", "metrics")


class PredictionLog:
    """Batched recording of predictions, safe to call from any thread.

    Recording appends to a deque and never wakes the writer: the writer wakes every
    ``flush_interval`` and takes everything at once, so under load it costs the request
    path one append per prediction and a few thread switches per second.
    """

    def __init__(self, db: Database, flush_interval: float = 0.05,
                 spill_dir: Path | None = None,
                 periodic: list[Callable[..., list[dict[str, Any]]]] | None = None) -> None:
        self.db = db
        self.periodic = list(periodic or [])  # more audit rows, asked for on every wake-up
        self.flush_interval = flush_interval
        self.spill_dir = spill_dir
        self._items: deque[tuple[type, Any] | threading.Event] = deque()
        self._unwritten: list[tuple[type, Any]] = []  # kept while the store refuses them
        self._waiting: list[threading.Event] = []  # flushes that wait for _unwritten
        self._retry_at = 0.0
        self._failures = 0
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="icefloe-predictions",
                                        daemon=True)
        self._thread.start()

    def record(self, row: tuple[Any, ...]) -> None:
        """Queue one prediction: the values of :data:`COLUMNS` in order, with ``inputs``,
        ``outputs`` and ``metrics`` as JSON text (replicas send them encoded)."""
        self._items.append((Prediction, row))

    def audit(self, row: dict[str, Any]) -> None:
        """Queue an audit event (``actor``, ``action``, ``target``, ``outcome``, ``detail``;
        ``at`` defaults to now) without waiting for the database."""
        self._items.append((AuditEvent, {"at": row.get("at") or repo.now(),
                                         "actor": row["actor"][:255],
                                         "action": row["action"][:64],
                                         "target": row["target"], "outcome": row["outcome"],
                                         "detail": row.get("detail", "")[:2000]}))

    def _collect_periodic(self, everything: bool = False) -> None:
        for source in self.periodic:
            try:
                rows = source(everything=everything)
            except Exception:
                log.exception("collecting audit rows failed")
                continue
            for row in rows:
                self.audit(row)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            closing = self._closing  # read before draining: nothing can be left behind
            self._collect_periodic(everything=closing)
            while self._items:
                item = self._items.popleft()
                if isinstance(item, threading.Event):  # a flush: write what came before it
                    self._waiting.append(item)
                    self._write_pending(force=closing)
                else:
                    self._unwritten.append(item)
            self._write_pending(force=closing)
            if closing:
                if self._unwritten:
                    self._spill()
                self._release_waiting()
                return

    def _release_waiting(self) -> None:
        for event in self._waiting:
            event.set()
        self._waiting = []

    def _write_pending(self, force: bool = False) -> None:
        """Write what is pending; while the store refuses, keep it and retry with backoff."""
        if self._unwritten and (force or time.monotonic() >= self._retry_at):
            self._write_unwritten()
        if not self._unwritten:
            self._release_waiting()

    def _write_unwritten(self) -> None:
        pending, self._unwritten = self._unwritten, []
        for start in range(0, len(pending), BATCH):
            chunk = pending[start:start + BATCH]
            error = self._write(chunk)
            if error is not None and type(error).__name__ != "OperationalError":
                # Not the store being away: find the rows it refuses, keep the rest.
                refused = [row for row in chunk if self._write([row]) is not None]
                if refused:
                    log.error("the store refused %d prediction log rows (%s); they go to the "
                              "spill file", len(refused), error)
                    self._spill(refused)
                error = None
            if error is not None:
                self._unwritten = pending[start:] + self._unwritten
                self._failures += 1
                self._retry_at = time.monotonic() + min(30.0, 0.2 * 2 ** self._failures)
                log.error("writing %d predictions failed (%s); %d kept, retrying",
                          len(chunk), error, len(self._unwritten))
                return
        self._failures = 0

    def _write(self, batch: list[tuple[type, Any]]) -> Exception | None:
        predictions = [row for table, row in batch if table is Prediction]
        events = [row for table, row in batch if table is AuditEvent]
        try:
            with self.db.engine.begin() as conn:
                if predictions:
                    # The DB driver's own executemany over tuples whose JSON is already text:
                    # the less Python this thread runs, the less it holds the GIL the event
                    # loop answering requests needs.
                    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
                    sql = (f"INSERT INTO predictions ({', '.join(COLUMNS)}) "
                           f"VALUES ({', '.join([mark] * len(COLUMNS))})")
                    cursor = conn.connection.cursor()
                    cursor.executemany(sql, predictions)
                    cursor.close()
                if events:
                    conn.execute(insert(AuditEvent), events)
        except Exception as exc:
            return exc
        return None

    def _spill(self, rows: list[tuple[type, Any]] | None = None) -> None:
        """Append rows the store would not take to a JSON-lines file, so none is lost."""
        rows = self._unwritten if rows is None else rows
        if self.spill_dir is None:
            log.error("%d prediction log rows could not be written and there is no spill "
                      "folder: they are lost", len(rows))
            return
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        path = self.spill_dir / "predictions-unwritten.jsonl"
        with path.open("a") as out:
            for table, row in rows:
                record = (dict(zip(COLUMNS, row, strict=True)) if table is Prediction
                          else {**row, "at": row["at"].isoformat()})
                name = "predictions" if table is Prediction else "audit_events"
                out.write(json.dumps({"table": name, "row": record}) + "\n")
        log.error("%d prediction log rows the store would not take were written to %s",
                  len(rows), path)
        if rows is self._unwritten:
            self._unwritten = []

    def queued(self) -> int:
        """Records waiting to be written."""
        return len(self._items)

    def flush(self, timeout: float = 60.0) -> None:
        """Block until everything recorded so far is written (or ``timeout`` passes while
        the store refuses writes)."""
        if not self._thread.is_alive():
            return
        done = threading.Event()
        self._items.append(done)
        self._wake.set()
        done.wait(timeout)

    def close(self) -> None:
        """Write everything recorded, then stop the writer; what the store still refuses
        goes to ``spill_dir/predictions-unwritten.jsonl``."""
        self._closing = True
        self._wake.set()
        self._thread.join(timeout=60)


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
        repo.get_deployment(s, model_deployment_crn)
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

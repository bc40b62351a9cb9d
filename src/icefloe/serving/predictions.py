"""The prediction log: a crash-safe journal, batched writes off the request path, delayed
ground truth, reads.

Every answered model call is first one line in an append-only **journal**: the gateway
writes it with a single ``os.write`` on an ``O_APPEND`` descriptor right before the answer
is sent, so once a caller has a 200 the operating system holds its predictions even if the
control plane is SIGKILLed a microsecond later. The journal is not fsynced: it survives a
crash of the process, not a power loss or a kernel crash (then the last moments of
predictions may be gone, as with any write the OS had not yet put on disk).

The same line is queued for one writer thread that inserts batches into the store every
``flush_interval``, so answering never waits for the database. The journal is a folder of
segment files: about once a second the writer starts a new segment, writes everything
queued before the switch, commits, and only then deletes the old segment. At start, before
the app serves, whatever segments a crashed process left behind are replayed into the store
(idempotently: the prediction uuid is the primary key) and deleted; a last line torn by a
kill mid-write (its call was never answered) is skipped and counted. Shutdown writes
everything and leaves no segment behind.

Rows the store refuses for good (and whatever the store still refuses at shutdown) go to a
spill file, as do audit events queued here (refusals and the like, which are not journaled).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from icefloe.errors import ConflictError, InvalidInputError, NotFoundError, UnavailableError
from icefloe.serving.journal import (
    JOURNAL_ENV,
    SEGMENT_SUFFIX,
    Replay,
    Segment,
    journal_line,
    open_segment,
    parse_segment,
    rows_of,
)
from icefloe.store import repo
from icefloe.store.db import Database
from icefloe.store.orm import AggregateMetric, AuditEvent, CallFailure, Prediction

log = logging.getLogger(__name__)
BATCH = 500
COLUMNS = ("uuid", "deployment_id", "build_id", "model_name", "model_version", "timestamp_ms",
           "caller", "inputs", "outputs", "latency_ms", "metrics")
class PredictionLog:
    """Journaled, batched recording of predictions, safe to call from any thread.

    Recording writes the journal line and appends it to a deque, and never wakes the
    writer: the writer wakes every ``flush_interval`` and takes everything at once, so under
    load it costs the request path one write and one append per call and a few thread
    switches per second.

    Args:
        db: The platform DB.
        flush_interval: Seconds between the writer's batches.
        spill_dir: Folder of ``predictions-unwritten.jsonl`` (rows the store refuses).
        periodic: More audit rows, asked for on every wake-up (``everything=True`` at close).
        journal_dir: The journal folder (None: no journal, nothing survives a crash). Left
            segments are replayed into the store here, before this returns.
        rotate_every: Seconds between journal segments (when there was anything to write).
        rotate_bytes: Size at which a segment is replaced sooner.
    """

    def __init__(self, db: Database, flush_interval: float = 0.05,
                 spill_dir: Path | None = None,
                 periodic: list[Callable[..., list[dict[str, Any]]]] | None = None,
                 journal_dir: Path | None = None, rotate_every: float = 1.0,
                 rotate_bytes: int = 64 << 20) -> None:
        self.db = db
        self.periodic = list(periodic or [])  # more audit rows, asked for on every wake-up
        self.flush_interval = flush_interval
        self.spill_dir = spill_dir
        self.journal_dir = journal_dir
        self.rotate_every = rotate_every
        self.rotate_bytes = rotate_bytes
        self._items: deque[bytes | tuple[type, Any] | threading.Event | Segment] = deque()
        self._unwritten: list[tuple[type, Any]] = []  # kept while the store refuses them
        self._waiting: list[threading.Event] = []  # flushes that wait for _unwritten
        self._retired: list[Segment] = []  # segments to delete once _unwritten is empty
        self._retry_at = 0.0
        self._failures = 0
        self._call_failures: dict[tuple[str, int, int], int] = {}
        self._failures_lock = threading.Lock()
        self._failures_collected = 0.0
        # Held for a journal write and its queue append, and for a segment switch, so a
        # switch never falls between the two (see _rotate).
        self._lock = threading.Lock()
        self._segment: Segment | None = None
        self._segment_bytes = 0
        self._segment_since = time.monotonic()
        self._closed = False
        self.rotations = 0  # segments started after the first
        self.replay = Replay()
        if journal_dir is not None:
            journal_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(journal_dir, 0o700)
            self.replay = self._replay(journal_dir)
            self._segment = open_segment(journal_dir)
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="icefloe-predictions",
                                        daemon=True)
        self._thread.start()

    @classmethod
    def in_home(cls, db: Database, home: Path, **options: Any) -> PredictionLog:
        """The control plane's log: spill file in ``<home>/logs``, journal in
        ``<home>/logs/journal`` (replayed here if a crash left one).

        ``ICEFLOE_PREDICTION_JOURNAL=off`` in the environment turns the journal off: for
        benchmarks that measure its cost only, since answered predictions may then be lost
        on a crash.
        """
        off = os.environ.get(JOURNAL_ENV, "").strip().lower() in ("off", "0", "false", "no")
        return cls(db, spill_dir=home / "logs",
                   journal_dir=None if off else home / "logs" / "journal", **options)

    # -- recording (any thread) --------------------------------------------------------------

    def record_call(self, line: bytes) -> None:
        """Journal and queue one answered call: a line of :func:`journal_prefix` form.

        Returns only once the line is in the journal (the OS holds it); call it before the
        answer is sent.

        Raises:
            UnavailableError: The journal could not be written (e.g. the disk is full) or
                the log is closed: the call must not be answered as a success.
        """
        with self._lock:
            segment = self._segment
            if segment is not None:
                try:
                    written = os.write(segment.fd, line)
                except OSError as exc:
                    log.error("writing the prediction journal failed: %s", exc)
                    raise UnavailableError("the prediction could not be recorded "
                                           "(journal write failed)") from None
                self._segment_bytes += written
                if written != len(line):  # a short write (disk full): the line is torn
                    log.error("the prediction journal took %d of %d bytes", written,
                              len(line))
                    raise UnavailableError("the prediction could not be recorded "
                                           "(journal write cut short)")
            elif self._closed:
                raise UnavailableError("the prediction log is closed")
            self._items.append(line)

    def record(self, row: tuple[Any, ...]) -> None:
        """Journal and queue one prediction: the values of :data:`COLUMNS` in order, with
        ``inputs``, ``outputs`` and ``metrics`` as JSON text (replicas send them encoded)."""
        self.record_call(journal_line(row))

    def audit(self, row: dict[str, Any]) -> None:
        """Queue an audit event (``actor``, ``action``, ``target``, ``outcome``, ``detail``;
        ``at`` defaults to now) without waiting for the database (not journaled)."""
        self._items.append((AuditEvent, {"at": row.get("at") or repo.now(),
                                         "actor": row["actor"][:255],
                                         "action": row["action"][:64],
                                         "target": row["target"], "outcome": row["outcome"],
                                         "detail": row.get("detail", "")[:2000],
                                         "key_id": row.get("key_id")}))

    def count_failure(self, deployment_id: str, status: int) -> None:
        """Count a call of a deployment answered with an error (written per minute)."""
        key = (deployment_id, int(time.time() // 60) * 60_000, status)
        with self._failures_lock:
            self._call_failures[key] = self._call_failures.get(key, 0) + 1

    def _collect_failures(self, everything: bool) -> None:
        """Queue the counts so far, at most once a second (a minute may get several rows:
        readers sum them), so monitoring sees errors within seconds."""
        now = time.monotonic()
        if not everything and now - self._failures_collected < 1.0:
            return
        self._failures_collected = now
        with self._failures_lock:
            rows = list(self._call_failures.items())
            self._call_failures = {}
        for (deployment_id, minute_ms, status), count in rows:
            self._items.append((CallFailure, {"deployment_id": deployment_id,
                                              "minute_ms": minute_ms, "status": status,
                                              "count": count}))

    def queued(self) -> int:
        """Calls and events waiting to be written."""
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
        """Write everything recorded, then stop the writer and delete the journal; what the
        store still refuses goes to ``spill_dir/predictions-unwritten.jsonl``."""
        self._closing = True
        self._wake.set()
        self._thread.join(timeout=60)
        if self._thread.is_alive():
            log.error("the prediction log writer did not finish within 60 s; the journal "
                      "is kept and will be replayed at the next start")

    # -- the journal -------------------------------------------------------------------------

    def _rotate(self, final: bool = False) -> None:
        """Switch to a new segment (``final``: to none) and queue the old one for deletion.

        The switch happens under the lock that also covers every journal write and its queue
        append, so the old segment's lines are exactly the calls queued before the marker:
        once those are committed, deleting it loses nothing.
        """
        fresh = None
        if not final and self.journal_dir is not None:
            try:
                fresh = open_segment(self.journal_dir)
            except OSError as exc:
                log.error("could not start a new journal segment (%s); keeping the current "
                          "one", exc)
                return
        with self._lock:
            old = self._segment
            self._segment = fresh
            self._segment_bytes = 0
            self._segment_since = time.monotonic()
            if final:
                self._closed = True
            if old is not None:
                self._items.append(old)
        if fresh is not None:
            self.rotations += 1

    def _rotation_due(self) -> bool:
        # Not while the store refuses writes: the old segment could not be deleted anyway.
        return self._segment is not None and self._segment_bytes > 0 and not self._unwritten \
            and (time.monotonic() - self._segment_since >= self.rotate_every
                 or self._segment_bytes >= self.rotate_bytes)

    def _delete_retired(self) -> None:
        for segment in self._retired:
            try:
                segment.path.unlink(missing_ok=True)
            except OSError as exc:
                log.error("could not delete journal segment %s: %s", segment.path, exc)
            os.close(segment.fd)  # the lock goes last: nobody replays a segment being deleted
        self._retired = []

    def _replay(self, folder: Path) -> Replay:
        """Insert the predictions of segments left by a crash that the store lacks; delete
        the segments once written."""
        report = Replay()
        taken: list[Segment] = []
        rows: list[tuple[Any, ...]] = []
        for making in folder.glob(".*.new"):  # made by a process killed before its first use
            with contextlib.suppress(OSError):
                fd = os.open(making, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    making.unlink()
                except BlockingIOError:
                    pass  # being made by a running control plane
                finally:
                    os.close(fd)
        for path in sorted(folder.glob(f"*{SEGMENT_SUFFIX}")):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a running control plane's live segment
                os.close(fd)
                report.busy += 1
                continue
            with open(fd, "rb", closefd=False) as f:
                found, torn = parse_segment(f.read())
            if torn:
                log.warning("journal segment %s: skipped %d torn line(s) (writes cut short by "
                            "a crash; their calls were never answered)", path.name, torn)
            rows += found
            report.torn += torn
            taken.append(Segment(path, fd))
        report.segments, report.rows = len(taken), len(rows)
        if not taken:
            return report
        pending: list[tuple[type, Any]] = [(Prediction, row) for row in rows]
        left, report.inserted = self._store(pending, idempotent=True)
        if left:
            report.kept = len(taken)
            log.error("replaying the prediction journal failed: the store is unavailable; "
                      "%d segment(s) are kept and replayed at the next start", len(taken))
            for segment in taken:
                os.close(segment.fd)
            return report
        self._retired = taken
        self._delete_retired()
        log.warning("replayed the prediction journal left by an earlier run: %d segment(s), "
                    "%d prediction(s), %d of them missing from the store and written now, "
                    "%d torn line(s) skipped", report.segments, report.rows, report.inserted,
                    report.torn)
        return report

    # -- the writer thread -------------------------------------------------------------------

    def _collect_periodic(self, everything: bool = False) -> None:
        self._collect_failures(everything)
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
            try:
                self._collect_periodic(everything=closing)
                if closing or self._rotation_due():
                    self._rotate(final=closing)
                self._drain(closing)
                self._write_pending(force=closing)
                if closing and self._unwritten:
                    self._spill()
                if not self._unwritten:
                    self._delete_retired()
            except Exception:  # keep writing: what is not written yet is in the journal
                log.exception("the prediction log writer failed; retrying")
                if closing:
                    self._release_waiting()
                    return
                time.sleep(1.0)
                continue
            if closing:
                self._release_waiting()
                for segment in self._retired:  # unwritten and unspilled: kept for replay
                    os.close(segment.fd)
                return

    def _drain(self, closing: bool) -> None:
        while self._items:
            item = self._items.popleft()
            if isinstance(item, bytes):
                try:
                    rows = rows_of(item)
                except ValueError as exc:  # only a bug could make one; the journal has it
                    log.error("unreadable prediction record: %s", exc)
                    continue
                self._unwritten.extend((Prediction, row) for row in rows)
            elif isinstance(item, threading.Event):  # a flush: write what came before it
                self._waiting.append(item)
                self._write_pending(force=closing)
            elif isinstance(item, Segment):  # retired: deletable once all before is written
                self._retired.append(item)
            else:
                self._unwritten.append(item)

    def _release_waiting(self) -> None:
        for event in self._waiting:
            event.set()
        self._waiting = []

    def _write_pending(self, force: bool = False) -> None:
        """Write what is pending; while the store refuses, keep it and retry with backoff."""
        if self._unwritten and (force or time.monotonic() >= self._retry_at):
            self._unwritten, _ = self._store(self._unwritten)
            if self._unwritten:
                self._failures += 1
                self._retry_at = time.monotonic() + min(30.0, 0.2 * 2 ** self._failures)
            else:
                self._failures = 0
        if not self._unwritten:
            self._release_waiting()

    def _store(self, pending: list[tuple[type, Any]],
               idempotent: bool = False) -> tuple[list[tuple[type, Any]], int]:
        """Insert rows in batches; rows the store refuses for good go to the spill file.

        Returns:
            The rows left because the store is unavailable (kept, to retry) and the number
            of predictions inserted (with ``idempotent``, those already there are skipped).
        """
        inserted = 0
        for start in range(0, len(pending), BATCH):
            chunk = pending[start:start + BATCH]
            error, count = self._write(chunk, idempotent)
            if error is not None and type(error).__name__ != "OperationalError":
                # Not the store being away: find the rows it refuses, keep the rest.
                refused = []
                for row in chunk:
                    one_error, one = self._write([row], idempotent)
                    if one_error is None:
                        count += one
                    else:
                        refused.append(row)
                if refused:
                    log.error("the store refused %d prediction log rows (%s); they go to the "
                              "spill file", len(refused), error)
                    self._spill(refused)
                error = None
            if error is not None:
                log.error("writing %d predictions failed (%s); %d kept, retrying",
                          len(chunk), error, len(pending) - start)
                return pending[start:], inserted
            inserted += count
        return [], inserted

    def _write(self, batch: list[tuple[type, Any]],
               idempotent: bool = False) -> tuple[Exception | None, int]:
        predictions = [row for table, row in batch if table is Prediction]
        events = [row for table, row in batch if table is AuditEvent]
        failures = [row for table, row in batch if table is CallFailure]
        count = 0
        try:
            with self.db.engine.begin() as conn:
                if predictions:
                    # The DB driver's own executemany over tuples whose JSON is already text:
                    # the less Python this thread runs, the less it holds the GIL the event
                    # loop answering requests needs.
                    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
                    sql = (f"INSERT INTO predictions ({', '.join(COLUMNS)}) "
                           f"VALUES ({', '.join([mark] * len(COLUMNS))})")
                    if idempotent:  # a replay: rows the store already has are skipped
                        sql += " ON CONFLICT (uuid) DO NOTHING"
                    cursor = conn.connection.cursor()
                    cursor.executemany(sql, predictions)
                    count = cursor.rowcount if cursor.rowcount >= 0 else len(predictions)
                    cursor.close()
                if events:
                    conn.execute(insert(AuditEvent), events)
                if failures:
                    conn.execute(insert(CallFailure), failures)
        except Exception as exc:
            return exc, 0
        return None, count

    def _spill(self, rows: list[tuple[type, Any]] | None = None) -> None:
        """Append rows the store would not take to a JSON-lines file, so none is lost."""
        rows = self._unwritten if rows is None else rows
        if self.spill_dir is None:
            log.error("%d prediction log rows could not be written and there is no spill "
                      "folder: they are lost", len(rows))
            return
        try:
            self.spill_dir.mkdir(parents=True, exist_ok=True)
            path = self.spill_dir / "predictions-unwritten.jsonl"
            with path.open("a") as out:
                for table, row in rows:
                    if table is Prediction:
                        record = dict(zip(COLUMNS, row, strict=True))
                    elif table is AuditEvent:
                        record = {**row, "at": row["at"].isoformat()}
                    else:
                        record = dict(row)
                    name = str(getattr(table, "__tablename__", table.__name__))
                    out.write(json.dumps({"table": name, "row": record}) + "\n")
        except OSError as exc:
            log.error("%d prediction log rows could not be written to the spill file (%s); "
                      "the journal keeps them", len(rows), exc)
            return
        log.error("%d prediction log rows the store would not take were written to %s",
                  len(rows), path)
        if rows is self._unwritten:
            self._unwritten = []


MAX_TIMESTAMP_MS = 2**53 - 1  # ms since 1970: beyond any date, and exact in every JSON reader


def check_timestamps(**values: Any) -> None:
    """Refuse timestamps (ms since 1970, by name) that no date has and no column holds."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) \
                or not 0 <= value <= MAX_TIMESTAMP_MS:
            raise InvalidInputError(f"{name} must be an integer from 0 to {MAX_TIMESTAMP_MS} "
                                    "(milliseconds since 1970)")


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
    check_timestamps(start_timestamp_ms=start_timestamp_ms,
                          end_timestamp_ms=end_timestamp_ms)
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

    Raises:
        InvalidInputError: A timestamp outside 0 .. ``MAX_TIMESTAMP_MS``.
    """
    check_timestamps(start_timestamp_ms=start_timestamp_ms,
                          end_timestamp_ms=end_timestamp_ms)
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

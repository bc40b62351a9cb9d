"""The prediction log as an Iceberg table: ``monitoring.predictions``, exported incrementally.

One row per answered prediction: ``uuid``, ``deployment``, ``build``, ``model``,
``model_version``, ``timestamp_ms`` and ``time``, ``latency_ms``, ``caller``, ``score`` (the
positive-class probability), ``prediction``, ``truth`` (the ground truth sent later with
``track_delayed_metrics`` as ``final_label``, or ``truth``/``label``, read as 0/1; null until
it arrives) and one column per input feature under its own name (``input_`` in front when a
feature is named like one of those columns); numbers are doubles, categories strings.

An export is idempotent and needs no bookkeeping of its own: what the table holds is the
state. It adds the log's rows the table does not have (looking back :data:`GRACE_MS` before
the newest exported time, since a journal replayed at start records calls answered just
before a crash later than newer ones), and replaces the rows whose truth arrived since they
were exported, in one commit. A crash before the commit leaves the table as it was; a rerun
finds the same rows missing and adds them once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from icefloe.errors import NotFoundError
from icefloe.store.db import Database
from icefloe.store.orm import Build, Prediction

if TYPE_CHECKING:
    import pyarrow as pa

    from icefloe.lakehouse import Lakehouse

TABLE = "monitoring.predictions"
GRACE_MS = 15 * 60 * 1000
BATCH_ROWS = 50_000
TRUTH_KEYS = ("final_label", "truth", "label")
FIXED = ("uuid", "deployment", "build", "model", "model_version", "timestamp_ms", "time",
         "latency_ms", "caller", "score", "prediction", "truth")
Progress = Callable[[int], None]


@dataclass(frozen=True)
class ExportResult:
    """What one export did."""

    table: str
    added: int
    truth_updated: int
    rows: int
    snapshot_id: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def truth_of(delayed: dict[str, Any] | None) -> float | None:
    """The ground truth in a prediction's delayed metrics as 0.0/1.0, else None."""
    if not delayed:
        return None
    for key in TRUTH_KEYS:
        if key in delayed:
            value = delayed[key]
            if isinstance(value, bool):
                return float(value)
            if isinstance(value, int | float) and value in (0, 1):
                return float(value)
            if isinstance(value, str) and value.strip() in ("0", "1"):
                return float(value.strip())
            return None
    return None


def column_name(feature: str) -> str:
    """The column of an input feature (prefixed when it is named like a fixed column)."""
    return f"input_{feature}" if feature in FIXED else feature


def to_arrow(rows: Iterable[Prediction], kinds: dict[str, dict[str, str]]) -> pa.Table:
    """Prediction rows as the table's columns (``kinds``: build id -> feature -> kind)."""
    import pyarrow as pa

    rows = list(rows)
    features: dict[str, str] = {}
    for by_feature in kinds.values():
        for name, kind in by_feature.items():
            features.setdefault(name, kind)
    columns: dict[str, pa.Array] = {
        "uuid": pa.array([r.uuid for r in rows], pa.string()),
        "deployment": pa.array([r.deployment_id for r in rows], pa.string()),
        "build": pa.array([r.build_id for r in rows], pa.string()),
        "model": pa.array([r.model_name for r in rows], pa.string()),
        "model_version": pa.array([r.model_version for r in rows], pa.int32()),
        "timestamp_ms": pa.array([r.timestamp_ms for r in rows], pa.int64()),
        "time": pa.array([r.timestamp_ms * 1000 for r in rows], pa.int64())
        .cast(pa.timestamp("us", tz="UTC")),
        "latency_ms": pa.array([r.latency_ms for r in rows], pa.float64()),
        "caller": pa.array([r.caller for r in rows], pa.string()),
        "score": pa.array([_number((r.outputs or {}).get("probability")) for r in rows],
                          pa.float64()),
        "prediction": pa.array([_int((r.outputs or {}).get("prediction")) for r in rows],
                               pa.int32()),
        "truth": pa.array([truth_of(r.delayed_metrics) for r in rows], pa.float64()),
    }
    for name, kind in features.items():
        values = [(r.inputs or {}).get(name) for r in rows]
        if kind == "number":
            columns[column_name(name)] = pa.array([_number(v) for v in values], pa.float64())
        else:
            columns[column_name(name)] = pa.array(
                [None if v is None else str(v) for v in values], pa.string())
    return pa.table(columns)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def export_predictions(db: Database, lakehouse: Lakehouse, *,
                       progress: Progress | None = None) -> ExportResult:
    """Bring ``monitoring.predictions`` up to date with the prediction log (see the module).

    Args:
        progress: Called with the number of log rows read so far.
    """
    newest, known, waiting = _table_state(lakehouse)
    since = 0 if newest is None else max(0, newest - GRACE_MS)
    kinds = _feature_kinds(db)
    fresh: list[Prediction] = []
    answered: list[Prediction] = []
    seen = 0
    for batch in _log_rows(db, since, waiting):
        for row in batch:
            if row.uuid in waiting:  # exported without its truth: replaced once it has one
                if truth_of(row.delayed_metrics) is not None:
                    answered.append(row)
            elif row.uuid not in known:
                fresh.append(row)
        seen += len(batch)
        if progress is not None:
            progress(seen)
    if not fresh and not answered:
        return ExportResult(TABLE, 0, 0, _row_count(lakehouse), None)
    data = to_arrow([*fresh, *answered], kinds)
    written = lakehouse.write(TABLE, data, "auto", evolve=True,
                              properties={"icefloe.export": "predictions"},
                              replacing=("uuid", [r.uuid for r in answered]))
    return ExportResult(TABLE, len(fresh), len(answered), written.snapshot.total_rows or 0,
                        written.snapshot.snapshot_id)


def _table_state(lakehouse: Lakehouse) -> tuple[int | None, set[str], set[str]]:
    """The newest exported time, the uuids exported since then minus the grace, and the
    uuids still waiting for their truth."""
    try:
        lakehouse.table(TABLE)
    except NotFoundError:  # no table (or namespace) yet
        return None, set(), set()
    newest_rows = lakehouse.sql(f"SELECT max(timestamp_ms) AS newest FROM {TABLE}")
    newest = newest_rows.column("newest")[0].as_py()
    if newest is None:
        return None, set(), set()
    since = max(0, int(newest) - GRACE_MS)
    known = lakehouse.sql(f"SELECT uuid FROM {TABLE} WHERE timestamp_ms >= {since}")
    waiting = lakehouse.sql(f"SELECT uuid FROM {TABLE} WHERE truth IS NULL")
    return (int(newest), set(known.column("uuid").to_pylist()),
            set(waiting.column("uuid").to_pylist()))


def _row_count(lakehouse: Lakehouse) -> int:
    try:
        current = lakehouse.current_snapshot(TABLE)
    except NotFoundError:  # no table (or namespace) yet
        return 0
    return (current.total_rows or 0) if current is not None else 0


def _log_rows(db: Database, since: int, waiting: set[str]) -> Iterator[list[Prediction]]:
    """The log's rows from ``since`` on, and the older ones of ``waiting`` that have truth
    now, in batches."""
    with db.session() as s:
        query = select(Prediction).where(Prediction.timestamp_ms >= since) \
            .order_by(Prediction.timestamp_ms, Prediction.uuid) \
            .execution_options(yield_per=BATCH_ROWS)
        for part in s.scalars(query).partitions(BATCH_ROWS):
            yield list(part)
            s.expunge_all()
        older = sorted(waiting)
        for start in range(0, len(older), 500):
            chunk = older[start:start + 500]
            found = list(s.scalars(select(Prediction).where(
                Prediction.uuid.in_(chunk), Prediction.timestamp_ms < since)))
            if found:
                yield found
                s.expunge_all()


def _feature_kinds(db: Database) -> dict[str, dict[str, str]]:
    """Each build's input fields and their kinds (from its schema)."""
    with db.session() as s:
        out: dict[str, dict[str, str]] = {}
        for build_id, schema in s.execute(select(Build.id, Build.input_schema)):
            fields = (schema or {}).get("fields", [])
            out[build_id] = {f["name"]: f["kind"] for f in fields}
        return out

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

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import Text, cast, func, select

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


class LogRow(NamedTuple):
    """One prediction as read for the export: plain values, its JSON fields as text."""

    uuid: str
    deployment_id: str
    build_id: str
    model_name: str
    model_version: int
    timestamp_ms: int
    caller: str
    latency_ms: float
    inputs: str | None
    outputs: str | None
    delayed: str | None


def to_arrow(rows: Sequence[Sequence[Any]], kinds: dict[str, dict[str, str]]) -> pa.Table:
    """Prediction rows (in :class:`LogRow`'s order, JSON fields as text, ``{}`` for none)
    as the table's columns (``kinds``: build id -> feature -> kind).

    The JSON fields are parsed by Arrow's JSON reader, all rows at once, against the types
    the table wants; text it cannot read that way (a value of another type than its
    feature's) is parsed row by row, where such a value becomes null.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    features: dict[str, str] = {}
    for by_feature in kinds.values():
        for name, kind in by_feature.items():
            features.setdefault(name, kind)
    # Columns from rows in one pass (zip), by LogRow's field names.
    row: Any = LogRow(*(list(zip(*rows, strict=True)) if rows
                        else [()] * len(LogRow._fields)))
    times = pa.array(row.timestamp_ms, pa.int64())
    outputs = _json_columns(row.outputs,
                            {"probability": pa.float64(), "prediction": pa.float64()})
    delayed = _json_columns(row.delayed, {k: pa.float64() for k in TRUTH_KEYS})
    truth = pa.nulls(len(rows), pa.float64())
    for key in reversed(TRUTH_KEYS):  # the first key present wins, as in truth_of
        truth = pc.if_else(pc.is_null(delayed[key]), truth, delayed[key])
    valid = pc.is_in(truth, value_set=pa.array([0.0, 1.0]))
    columns: dict[str, Any] = {
        "uuid": pa.array(row.uuid, pa.string()),
        "deployment": pa.array(row.deployment_id, pa.string()),
        "build": pa.array(row.build_id, pa.string()),
        "model": pa.array(row.model_name, pa.string()),
        "model_version": pa.array(row.model_version, pa.int32()),
        "timestamp_ms": times,
        "time": pc.multiply(times, 1000).cast(pa.timestamp("us", tz="UTC")),
        "latency_ms": pa.array(row.latency_ms, pa.float64()),
        "caller": pa.array(row.caller, pa.string()),
        "score": outputs["probability"],
        "prediction": outputs["prediction"].cast(pa.int32(), safe=False),
        "truth": pc.if_else(valid, truth, pa.scalar(None, pa.float64())),
    }
    types = {name: pa.float64() if kind == "number" else pa.string()
             for name, kind in features.items()}
    inputs = _json_columns(row.inputs, types)
    for name in features:
        columns[column_name(name)] = inputs[name]
    return pa.table(columns)


def _json_columns(texts: Sequence[str], types: dict[str, pa.DataType]
                  ) -> dict[str, pa.Array]:
    """The fields ``types`` names of JSON objects (one text per row)."""
    import io

    import pyarrow as pa
    import pyarrow.json as pj

    if not texts:
        return {name: pa.array([], kind) for name, kind in types.items()}
    # Arrow's reader takes one object per line; JSON text never holds a raw newline.
    blob = "\n".join(texts).encode()
    try:
        table = pj.read_json(io.BytesIO(blob), parse_options=pj.ParseOptions(
            explicit_schema=pa.schema([pa.field(n, t) for n, t in types.items()]),
            unexpected_field_behavior="ignore"), read_options=pj.ReadOptions(
            block_size=max(1 << 20, len(blob) + 1)))
        return {name: table.column(name).combine_chunks() for name in types}
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        objects = [json.loads(t) for t in texts]
        return {name: pa.array([_typed((o or {}).get(name) if isinstance(o, dict) else None,
                                       kind) for o in objects], kind)
                for name, kind in types.items()}


def _typed(value: Any, kind: pa.DataType) -> Any:
    """A JSON value as the column type wants it, or None."""
    import pyarrow as pa

    if value is None or isinstance(value, bool):
        return float(value) if isinstance(value, bool) and pa.types.is_floating(kind) else None
    if pa.types.is_floating(kind):
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return None
        return None
    return value if isinstance(value, str) else json.dumps(value)


def export_predictions(db: Database, lakehouse: Lakehouse, *,
                       progress: Progress | None = None) -> ExportResult:
    """Bring ``monitoring.predictions`` up to date with the prediction log (see the module).

    Args:
        progress: Called with the number of log rows read so far.
    """
    with _one_export_at_a_time(lakehouse):
        return _export(db, lakehouse, progress)


@contextmanager
def _one_export_at_a_time(lakehouse: Lakehouse) -> Iterator[None]:
    """Exports of one home take turns (the control plane's and the CLI's alike): each one
    reads the table's state and writes what it lacks, so two at once would both add the
    same rows. An exclusive lock on a file in the home's logs."""
    import fcntl

    folder = lakehouse.settings.home / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "export.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _export(db: Database, lakehouse: Lakehouse, progress: Progress | None) -> ExportResult:
    newest, known, waiting = _table_state(lakehouse)
    since = 0 if newest is None else max(0, newest - GRACE_MS)
    kinds = _feature_kinds(db)
    fresh: list[Any] = []  # rows in LogRow's order
    answered: list[Any] = []
    seen = 0
    for batch in _log_rows(db, since, waiting):
        for row in batch:
            uuid = row[0]
            if uuid in waiting:  # exported without its truth: replaced once it has one
                if truth_of(json.loads(row[10])) is not None:
                    answered.append(row)
            elif uuid not in known:
                fresh.append(row)
        seen += len(batch)
        if progress is not None:
            progress(seen)
    if not fresh and not answered:
        return ExportResult(TABLE, 0, 0, _row_count(lakehouse), None)
    data = to_arrow([*fresh, *answered], kinds)
    written = lakehouse.write(TABLE, data, "auto", evolve=True,
                              properties={"icefloe.export": "predictions"},
                              replacing=("uuid", [r[0] for r in answered]),
                              subject={"via": "export", "deployments": sorted(
                                  {r[1] for r in fresh} | {r[1] for r in answered})})
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


LOG_COLUMNS = (Prediction.uuid, Prediction.deployment_id, Prediction.build_id,
               Prediction.model_name, Prediction.model_version, Prediction.timestamp_ms,
               Prediction.caller, Prediction.latency_ms,
               # As text ("{}" for none): Arrow parses all rows at once (see to_arrow).
               *(func.coalesce(func.nullif(cast(column, Text), "null"), "{}")
                 for column in (Prediction.inputs, Prediction.outputs,
                                Prediction.delayed_metrics)))


def _log_rows(db: Database, since: int, waiting: set[str]) -> Iterator[Sequence[Any]]:
    """The log's rows from ``since`` on, and the older ones of ``waiting``, in batches."""
    with db.engine.connect() as connection:
        result = connection.execution_options(yield_per=BATCH_ROWS).execute(
            select(*LOG_COLUMNS).where(Prediction.timestamp_ms >= since)
            .order_by(Prediction.timestamp_ms, Prediction.uuid))
        yield from result.partitions(BATCH_ROWS)  # rows in LogRow's order
        older = sorted(waiting)
        for start in range(0, len(older), 500):
            found = connection.execute(select(*LOG_COLUMNS).where(
                Prediction.uuid.in_(older[start:start + 500]),
                Prediction.timestamp_ms < since)).all()
            if found:
                yield list(found)


def _feature_kinds(db: Database) -> dict[str, dict[str, str]]:
    """Each build's input fields and their kinds (from its schema)."""
    with db.session() as s:
        out: dict[str, dict[str, str]] = {}
        for build_id, schema in s.execute(select(Build.id, Build.input_schema)):
            fields = (schema or {}).get("fields", [])
            out[build_id] = {f["name"]: f["kind"] for f in fields}
        return out

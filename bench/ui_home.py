"""The large home of the web UI benchmark (bench/ui.py): 10,000 job runs, a table with
1,000 snapshots, 100 model versions, 1,000,000 logged predictions with monitoring points,
alerts and audit events, built through the real code paths where they are cheap and by
bulk SQL where the real path would take hours."""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from icefloe.config import Settings, load_settings  # noqa: E402
from icefloe.happenings import Actor  # noqa: E402
from icefloe.home import prepare_home  # noqa: E402
from icefloe.jobs import states  # noqa: E402
from icefloe.store import repo  # noqa: E402
from icefloe.store.db import Database  # noqa: E402
from icefloe.store.orm import (  # noqa: E402
    AggregateMetric,
    AlertEvent,
    AlertRule,
    AuditEvent,
    Build,
    Deployment,
    Run,
)

GOAL_MS = 200.0
TABLE = "bench.events"
MODEL = "bench_loans"
FEATURES = ("f0", "f1", "f2", "f3", "f4")
JOBS = ("TrainModel", "PushModel", "Simulation", "Monitoring")  # a chain, as in the demo
LOG_BYTES = 5 * 1024 * 1024
SWEEPS = 48  # hourly monitoring sweeps: 48 x 11 figures = 528 points
START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Home:
    """What the build made: ids the pages are fetched with."""

    settings: Settings
    db: Database
    key: str = ""
    project_id: str = ""
    job_ids: list[str] = field(default_factory=list)
    log_run_id: str = ""
    snapshot_ids: list[int] = field(default_factory=list)
    experiment_id: str = ""
    build_id: str = ""
    deployment_id: str = ""
    versions: int = 0
    built: dict[str, float] = field(default_factory=dict)


@contextmanager
def step(home: Home, name: str) -> Iterator[None]:
    """Time a build step and print it."""
    print(f"  {name} ...", end="", flush=True)
    started = time.perf_counter()
    yield
    home.built[name] = time.perf_counter() - started
    print(f" {home.built[name]:.1f} s", flush=True)


# -- the data ------------------------------------------------------------------------------

def build_people_and_jobs(home: Home) -> None:
    """An admin key, a project and its job chain (the real repo paths)."""
    from icefloe.auth import keys

    folder = home.settings.home / "projects" / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    with home.db.session() as s:
        _, home.key = keys.create_api_key(s, "bench-admin", "admin")
        project = repo.create_project(s, "bench", str(folder), "UI benchmark project")
        parent = None
        for name in JOBS:
            (folder / f"{name.lower()}.py").write_text("print('hi')\n")
            job = repo.create_job(s, project.id, {
                "name": name, "script": f"{name.lower()}.py", "parent_job_id": parent,
                "schedule": "0 * * * *" if parent is None else ""}, created_by="bench-admin")
            parent = job.id
            home.job_ids.append(job.id)
        home.project_id = project.id


def run_rows(home: Home, count: int, seed: int = 1) -> list[dict[str, Any]]:
    """``count`` finished-looking runs over ~30 days: mostly succeeded, some failed, stopped
    or timed out, a few still active; triggered by cron, parents, retries, hand and Airflow
    (``airflow:dag:run:task:-1`` idempotency keys)."""
    rng = np.random.default_rng(seed)
    statuses = rng.choice([states.SUCCEEDED, states.FAILED, states.STOPPED, states.TIMEDOUT],
                          count, p=[0.86, 0.09, 0.03, 0.02])
    kinds = rng.choice(["schedule", "parent", "retry", "api", "airflow", "cde"], count,
                       p=[0.3, 0.35, 0.05, 0.1, 0.17, 0.03])
    rows = []
    for i in range(count):
        job_index = i % len(JOBS)
        created = START + timedelta(seconds=i * 260)  # newest last
        started = created + timedelta(seconds=float(rng.uniform(0.2, 3)))
        ended: datetime | None = started + timedelta(seconds=float(rng.gamma(2.0, 20.0)))
        status, kind = str(statuses[i]), str(kinds[i])
        if i >= count - 3:  # the newest few are still going
            status, ended = (states.RUNNING, None) if i < count - 1 else (
                states.SCHEDULING, None)
        trigger = "api" if kind == "airflow" else kind
        key = (f"airflow:lending_pipeline:scheduled__{created:%Y-%m-%dT%H:%M:%S}+00:00:"
               f"{JOBS[job_index].lower()}:-1" if kind == "airflow" else None)
        rows.append({
            "id": str(uuid.UUID(int=int(rng.integers(0, 2**62)) << 64 | i)),
            "job_id": home.job_ids[job_index], "project_id": home.project_id,
            "status": status, "trigger": trigger,
            "triggered_by": {"schedule": "cron 0 * * * *", "parent": "run/parent",
                             "retry": "run/previous", "airflow": "airflow",
                             "api": "bench-admin", "cde": "bench-admin"}[kind],
            "run_as": "bench-admin", "parent_run_id": None,
            "attempt": 2 if kind == "retry" else 1, "pid": None, "owner": "",
            "exit_code": None if ended is None else (0 if status == states.SUCCEEDED else 1),
            "reason": "" if status in (states.SUCCEEDED, states.RUNNING, states.SCHEDULING)
            else f"{status.removeprefix('ENGINE_').lower()}: exit code 1",
            "log_path": "", "created_at": created, "started_at": started,
            "ended_at": ended, "idempotency_key": key, "arguments": None,
            "environment": None})
    return rows


def build_runs(home: Home, count: int) -> None:
    """``count`` runs by bulk insert (the runner would take hours)."""
    rows = run_rows(home, count)
    with home.db.engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(insert(Run), rows[start:start + 5000])
    newest_done = [r for r in rows if r["ended_at"] is not None][-1]
    home.log_run_id = newest_done["id"]


def write_big_log(home: Home, runner: Any) -> Path:
    """A ~5 MB log for one run, where the runner keeps it."""
    with home.db.session() as s:
        run = s.get(Run, home.log_run_id)
        assert run is not None
        path = Path(runner.log_path(run))
    path.parent.mkdir(parents=True, exist_ok=True)
    line = "2026-01-01T00:00:00Z INFO epoch {:>7} loss=0.{:06d} auc=0.7{:05d} rows=100000\n"
    with path.open("w") as out:
        written, i = 0, 0
        while written < LOG_BYTES:
            text = line.format(i, (i * 7919) % 10**6, (i * 104729) % 10**5)
            out.write(text)
            written += len(text)
            i += 1
    return path


@contextmanager
def shared_iceberg_metadata() -> Iterator[None]:
    """While building only: PyIceberg deep-copies the whole table metadata (every snapshot)
    about 20 times per commit (``Transaction.table_metadata`` re-applies the updates on each
    read; ``update_table_metadata`` ends in ``model_copy(deep=True)``), so 1,000 appends cost
    O(n^2) copies (~15 min here). The metadata models are frozen, so sharing them instead of
    copying writes the very same table; the real cost of one write is measured apart."""
    from pydantic import BaseModel
    from pyiceberg.table import Transaction
    from pyiceberg.table.metadata import TableMetadataCommonFields

    original: property = Transaction.__dict__["table_metadata"]
    had_copy = "model_copy" in TableMetadataCommonFields.__dict__

    def table_metadata(self: Any) -> Any:
        hit = getattr(self, "_bench_metadata", None)
        if hit is not None and hit[0] is self._updates and hit[1] is self._table.metadata:
            return hit[2]
        assert original.fget is not None
        value = original.fget(self)
        self._bench_metadata = (self._updates, self._table.metadata, value)
        return value

    def shallow(self: Any, *, update: Any = None, deep: bool = False) -> Any:
        return BaseModel.model_copy(self, update=update, deep=False)

    Transaction.table_metadata = property(table_metadata)  # type: ignore[assignment]
    TableMetadataCommonFields.model_copy = shallow  # type: ignore[method-assign]
    try:
        yield
    finally:
        Transaction.table_metadata = original  # type: ignore[assignment]
        if not had_copy:
            del TableMetadataCommonFields.model_copy


def tiny_batch(i: int, rng: np.random.Generator) -> pa.Table:
    """Ten rows."""
    return pa.table({"id": pa.array(np.arange(i * 10, i * 10 + 10), pa.int64()),
                     **{f: pa.array(rng.normal(0, 1, 10)) for f in FEATURES},
                     "label": pa.array(rng.integers(0, 2, 10), pa.int32())})


def build_table(home: Home, snapshots: int) -> None:
    """A table of ``snapshots`` snapshots, each a tiny Arrow append through
    ``Lakehouse.write`` (see :func:`shared_iceberg_metadata`), every tenth written by a job
    run; two tags."""
    from icefloe.lakehouse import Lakehouse

    lake = Lakehouse(home.settings)
    rng = np.random.default_rng(2)
    with shared_iceberg_metadata():
        for i in range(snapshots):
            actor = Actor("etl", run_id=home.log_run_id if i % 10 == 0 else "")
            result = lake.write(TABLE, tiny_batch(i, rng), "create" if i == 0 else "append",
                                actor=actor)
            home.snapshot_ids.append(result.snapshot.snapshot_id)
            if (i + 1) % 100 == 0:
                print(f" {i + 1}", end="", flush=True)
    lake.tag(TABLE, "training-v1", home.snapshot_ids[len(home.snapshot_ids) // 2])
    lake.tag(TABLE, "latest-good")


def real_write_seconds(home: Home, writes: int = 3) -> float:
    """Median seconds of one plain ``Lakehouse.write`` append to the big table (unpatched)."""
    from icefloe.lakehouse import Lakehouse

    lake = Lakehouse(home.settings)
    rng = np.random.default_rng(9)
    times = []
    for i in range(writes):
        started = time.perf_counter()
        lake.write(TABLE, tiny_batch(10_000_000 + i, rng), "append", actor=Actor("etl"))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def build_versions(home: Home, versions: int) -> None:
    """``versions`` icefloe-style versions: a FINISHED training run with icefloe's tags,
    metrics and ``lineage.json``, registered with its lineage tags (icefloe's register)."""
    from mlflow.entities import Metric, Param

    from icefloe.catalog.cards import ensure_card
    from icefloe.registry.lineage import LINEAGE_ARTIFACT, Lineage
    from icefloe.registry.mlflow_registry import ModelRegistry

    registry = ModelRegistry(home.settings)
    client = registry.client
    home.experiment_id = registry.experiment_id("icefloe")
    with home.db.session() as s:
        train_runs = [r.id for r in s.query(Run).filter(Run.job_id == home.job_ids[0])
                      .order_by(Run.created_at.desc()).limit(versions)]
    rng = np.random.default_rng(3)
    for i in range(versions):
        snap = home.snapshot_ids[min(len(home.snapshot_ids) - 1,
                                     (i + 1) * len(home.snapshot_ids) // versions - 1)]
        pipeline = "baseline" if i < versions // 2 else "categorical"
        tags = {"icefloe.table": TABLE, "icefloe.snapshot_id": str(snap),
                "icefloe.pipeline": pipeline, "icefloe.model": MODEL,
                "icefloe.job_run_id": train_runs[i % len(train_runs)]}
        started_ms = int((START + timedelta(hours=i)).timestamp() * 1000)
        run = client.create_run(home.experiment_id, start_time=started_ms, tags=tags,
                                run_name=f"{MODEL}-{pipeline}")
        run_id = run.info.run_id
        auc = float(np.clip(0.70 + i * 0.0008 + rng.normal(0, 0.01), 0, 1))
        metrics = {"auc": auc, "accuracy": auc - 0.05, "f1": auc - 0.1,
                   "precision": auc - 0.08, "recall": auc - 0.12, "pr_auc": auc - 0.3,
                   "train_rows": 8000.0, "test_rows": 2000.0}
        client.log_batch(run_id, metrics=[Metric(k, v, started_ms, 0)
                                          for k, v in metrics.items()],
                         params=[Param("pipeline", pipeline), Param("seed", "7")])
        lineage = Lineage(
            catalog=home.settings.catalog_name, table=TABLE, snapshot_id=snap,
            snapshot_time=(START + timedelta(hours=i)).isoformat(), schema_id=0,
            row_count=(i + 1) * 100, fingerprint=f"{rng.integers(0, 2**63):016x}",
            features=list(FEATURES), numeric_features=list(FEATURES), categorical_features=[],
            label="label in ('1')", label_column="label", positive_values=["1"],
            pipeline=pipeline, nulls="drop", seed=7, test_fraction=0.2, train_rows=8000,
            test_rows=2000, dropped_rows=0, run_id=run_id,
            experiment_id=home.experiment_id, metrics=metrics)
        client.log_text(run_id, lineage.to_json(), LINEAGE_ARTIFACT)
        client.set_terminated(run_id, "FINISHED", end_time=started_ms + 60_000)
        registry.register(f"{run.info.artifact_uri}/model", MODEL, lineage, run_id)
        if (i + 1) % 20 == 0:
            print(f" {i + 1}", end="", flush=True)
    registry.set_alias(f"{MODEL}/{versions}", "champion")
    home.versions = versions
    with home.db.session() as s:
        ensure_card(s, MODEL, home.project_id, "bench-admin")


def build_serving(home: Home, versions: int, predictions: int) -> None:
    """A build and a DEPLOYED deployment of the newest version, ``predictions`` logged
    predictions (the prediction log's own bulk insert), monitoring points (the real
    ``points.record``), tracked aggregate metrics, a FIRING alert rule with its events."""
    from icefloe.monitoring import points
    from icefloe.serving.predictions import COLUMNS

    now = START + timedelta(days=40)
    home.build_id, home.deployment_id = str(uuid.uuid4()), str(uuid.uuid4())
    schema = {"fields": [{"name": f, "kind": "number"} for f in FEATURES]}
    with home.db.session() as s:
        s.add(Build(id=home.build_id, model_name=MODEL, model_version=versions,
                    status="BUILD_READY", reason="", path="", checksum="0" * 64,
                    input_schema=schema, parity=1e-7, created_by="bench-admin",
                    created_at=now, project_id=home.project_id))
        s.flush()
        s.add(Deployment(id=home.deployment_id, build_id=home.build_id, model_name=MODEL,
                         model_version=versions, access_key_hash=uuid.uuid4().hex,
                         auth_enabled=True, replicas=1, status="DEPLOYED", reason="",
                         created_by="bench-admin", created_at=now, updated_at=now,
                         project_id=home.project_id))
    base_ms = int(now.timestamp() * 1000)
    span_ms = SWEEPS * 3_600_000
    rng = np.random.default_rng(4)
    mark = "?"
    sql = (f"INSERT INTO predictions ({', '.join(COLUMNS)}) "
           f"VALUES ({', '.join([mark] * len(COLUMNS))})")
    batch = 100_000
    for start in range(0, predictions, batch):
        n = min(batch, predictions - start)
        values = rng.normal(0, 1, (n, len(FEATURES))).round(4).tolist()
        probs = rng.uniform(0, 1, n).round(4).tolist()
        rows = [(str(uuid.UUID(int=(start + k) | (7 << 76))), home.deployment_id,
                 home.build_id, MODEL, versions, base_ms + (start + k) * span_ms // predictions,
                 "bench-caller",
                 "{" + ", ".join(f'"{f}": {v}' for f, v in zip(FEATURES, values[k],
                                                               strict=True)) + "}",
                 f'{{"prediction": {int(probs[k] > 0.5)}, "probability": {probs[k]}}}',
                 2.0 + probs[k], "{}") for k in range(n)]
        with home.db.engine.begin() as conn:
            cursor = conn.connection.cursor()
            cursor.executemany(sql, rows)
            cursor.close()
        print(f" {(start + n) // 1000}k", end="", flush=True)
    for sweep in range(SWEEPS):
        end_ms = base_ms + (sweep + 1) * 3_600_000
        drift = 0.05 + 0.25 * sweep / SWEEPS
        figures = [{"metric": "requests", "value": predictions / SWEEPS, "samples": 0},
                   {"metric": "latency_p99_ms", "value": 3 + rng.uniform(0, 1), "samples": 0},
                   {"metric": "error_rate", "value": rng.uniform(0, 0.01), "samples": 0},
                   {"metric": "accuracy", "value": 0.75 - drift / 5, "samples": 800},
                   {"metric": "label_coverage", "value": 0.4, "samples": 800},
                   {"metric": "prediction_psi", "value": drift / 2, "samples": 20000}]
        figures += [{"metric": "psi", "feature": f, "value": drift * (1 + j / 5),
                     "samples": 20000} for j, f in enumerate(FEATURES)]
        points.record(home.db, {"deployment": home.deployment_id, "end_ms": end_ms,
                                "window": "1h", "figures": figures,
                                "model_version": versions})
    with home.db.engine.begin() as conn:
        conn.execute(insert(AggregateMetric), [
            {"deployment_id": home.deployment_id, "start_timestamp_ms": base_ms + i * 864_000,
             "end_timestamp_ms": base_ms + (i + 1) * 864_000,
             "metrics": {"accuracy": 0.74 - i / 2000, "auc": 0.79 - i / 3000},
             "created_by": "bench-admin", "created_at": now} for i in range(200)])
    rule_ids = []
    with home.db.session() as s:
        for metric, feature, state in (("psi", "f0", "FIRING"), ("accuracy", "", "OK")):
            rule = AlertRule(id=str(uuid.uuid4()), deployment_id=home.deployment_id,
                             metric=metric, feature=feature,
                             comparison=">" if metric == "psi" else "<",
                             threshold=0.2 if metric == "psi" else 0.6, window="1h",
                             min_samples=100, cooldown_s=3600, channel="webhook",
                             target="http://127.0.0.1:9/hook", secret_sealed="", state=state,
                             state_since=now, last_value=0.29, last_samples=20000,
                             last_evaluated_at=now, created_by="bench-admin", created_at=now)
            s.add(rule)
            rule_ids.append(rule.id)
        s.flush()
        for i in range(60):
            s.add(AlertEvent(rule_id=rule_ids[i % 2], at=now + timedelta(minutes=i),
                             from_state="OK" if i % 4 < 2 else "FIRING",
                             to_state="FIRING" if i % 4 < 2 else "OK", value=0.25,
                             samples=20000, delivered=i % 7 != 0, attempts=1, error=""))


def build_audit(home: Home, count: int) -> None:
    """``count`` audit events by bulk insert."""
    actions = ("run.create", "table.write", "session.open", "deployment.create",
               "model.card.update", "key.create", "sql.run")
    rows = [{"at": START + timedelta(seconds=i * 200), "actor": f"user{i % 12}",
             "action": actions[i % len(actions)], "target": f"project/{home.project_id}",
             "outcome": "ok" if i % 13 else "denied", "detail": "bench", "key_id": None}
            for i in range(count)]
    with home.db.engine.begin() as conn:
        conn.execute(insert(AuditEvent), rows)


# -- the timing --------------------------------------------------------------------------

def build_home(root: Path, args: argparse.Namespace) -> Home:
    """A fresh home in ``root`` with the data set of the arguments."""
    settings = load_settings(env={}, home=root / "home")
    prepare_home(settings)
    home = Home(settings, Database(settings.resolved_platform_db_url))
    print(f"building the home in {root} (runs {args.runs:,}, snapshots {args.snapshots:,}, "
          f"versions {args.versions}, predictions {args.predictions:,}, "
          f"audit {args.audit:,})", flush=True)
    total = time.perf_counter()
    with step(home, "project, jobs, admin key"):
        build_people_and_jobs(home)
    with step(home, f"{args.runs:,} runs (bulk insert)"):
        build_runs(home, args.runs)
    with step(home, f"{args.snapshots:,} snapshots (Lakehouse.write)"):
        build_table(home, args.snapshots)
    with step(home, f"{args.versions} model versions (MLflow + register)"):
        build_versions(home, args.versions)
    with step(home, f"{args.predictions:,} predictions, points, alerts"):
        build_serving(home, args.versions, args.predictions)
    with step(home, f"{args.audit:,} audit events (bulk insert)"):
        build_audit(home, args.audit)
    with step(home, "5 MB run log (runner.log_path)"):
        from icefloe.jobs.runner import Runner

        write_big_log(home, Runner(home.db, settings))
    print(f"  built in {time.perf_counter() - total:.1f} s", flush=True)
    return home

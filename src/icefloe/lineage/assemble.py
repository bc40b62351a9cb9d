"""The lineage graph around a node: the edges recorded as things happened
(``lineage_edges``) plus what the platform keeps anyway.

Kept elsewhere, and read here when asked: the prediction log (a prediction's deployment and
build), deployments (their build), builds (their model version), MLflow (a version's
training run; a training run's table, snapshot and job run, from its tags), Iceberg (a
snapshot's parent, and who wrote it, from its summary properties ``icefloe.run-id``,
``icefloe.user`` and ``icefloe.source``) and job runs (the Airflow task that started a run,
from the idempotency key the Airflow provider sets, its parent run and who started it). So a
model trained, built and deployed before lineage was recorded still has its lineage.

:func:`lineage_graph` answers the graph of a node; :func:`explain_prediction` answers the
chain behind one prediction: deployment, build, model version, training run and snapshot,
and the batches (snapshots, with the job runs, Airflow tasks, users and files that wrote
them) the training snapshot is made of, with the rollbacks on the way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select

from icefloe.errors import IcefloeError, NotFoundError
from icefloe.lineage import nodes
from icefloe.lineage.graph import Edge, Graph, check_depth, check_direction, walk
from icefloe.store.orm import (
    AlertEvent,
    AlertRule,
    Build,
    Deployment,
    Job,
    LineageEdge,
    ModelCard,
    Prediction,
    Run,
    User,
)
from icefloe.timefmt import iso_utc

if TYPE_CHECKING:
    from pyiceberg.table import Table
    from pyiceberg.table.snapshots import Snapshot

    from icefloe.config import Settings
    from icefloe.lakehouse import Lakehouse
    from icefloe.registry.mlflow_registry import ModelRegistry
    from icefloe.store.db import Database

log = logging.getLogger(__name__)

RUN_ID_PROPERTY = "icefloe.run-id"
USER_PROPERTY = "icefloe.user"
SOURCE_PROPERTY = "icefloe.source"
JOB_RUN_TAG = "icefloe.job_run_id"
STARTED_BY_HAND = ("manual", "api", "cde")
MAX_CHILDREN = 200  # derived neighbours of one node (snapshots of a table, runs of a task)


TABLE_READERS = 10_000  # training runs of one table looked at (one search)


class Assembler:
    """Reads a node's neighbours and description from the recorded edges and the stores.

    Args:
        database: The platform DB.
        settings: For the registry (MLflow) and, when ``lakehouse`` is not given, the lake.
        lakehouse: The lakehouse to read snapshot history from.
    """

    def __init__(self, database: Database, settings: Settings,
                 lakehouse: Lakehouse | None = None) -> None:
        self.database = database
        self.settings = settings
        self._lakehouse = lakehouse
        self._tables: dict[str, Table | None] = {}
        self._registry: ModelRegistry | None = None
        self._runs: dict[str, Any] = {}
        self._versions: dict[str, Any] = {}
        self._experiment_ids: list[str] | None = None
        # Per table, once per assembly: what describing its snapshots needs from the whole
        # table, its snapshots' children, and the training runs that read each snapshot.
        self._facts: dict[str, Any] = {}
        self._children: dict[str, dict[int, list[Any]]] = {}
        self._readers: dict[str, dict[str, list[Any]]] = {}

    # -- stores --------------------------------------------------------------------------

    @property
    def lakehouse(self) -> Lakehouse:
        if self._lakehouse is None:
            from icefloe.lakehouse import Lakehouse

            self._lakehouse = Lakehouse(self.settings)
        return self._lakehouse

    @property
    def registry(self) -> ModelRegistry:
        if self._registry is None:
            from icefloe.registry.mlflow_registry import ModelRegistry

            self._registry = ModelRegistry(self.settings)
        return self._registry

    def table(self, name: str) -> Table | None:
        """An Iceberg table (loaded once per assembly), None when there is none."""
        if name not in self._tables:
            try:
                self._tables[name] = self.lakehouse.table(name)
            except IcefloeError:
                self._tables[name] = None
        return self._tables[name]

    def snapshot(self, key: str) -> tuple[Table, Snapshot] | None:
        """The table and snapshot of a snapshot node's id (None when either is gone)."""
        name, snap_id = nodes.snapshot_parts(key)
        table = self.table(name)
        snap = table.snapshot_by_id(snap_id) if table is not None else None
        return (table, snap) if table is not None and snap is not None else None

    def mlflow_run(self, run_id: str) -> Any:
        """An MLflow run (None when MLflow does not know it)."""
        if run_id not in self._runs:
            try:
                self._runs[run_id] = self.registry.client.get_run(run_id)
            except Exception:  # an unknown id, or no MLflow store: no derived lineage
                self._runs[run_id] = None
        return self._runs[run_id]

    def model_version(self, key: str) -> Any:
        """An MLflow model version (None when unknown)."""
        if key not in self._versions:
            name, version = nodes.model_parts(key)
            try:
                self._versions[key] = self.registry.client.get_model_version(name,
                                                                              str(version))
            except Exception:  # unknown model or version
                self._versions[key] = None
        return self._versions[key]

    def _experiments(self) -> list[str]:
        if self._experiment_ids is None:
            try:
                self._experiment_ids = [e.experiment_id for e in
                                        self.registry.client.search_experiments()]
            except Exception:  # no MLflow store
                self._experiment_ids = []
        return self._experiment_ids

    def table_facts(self, name: str, table: Table) -> Any:
        """What describing a table's snapshots needs from the whole table (short ids, tags,
        ancestors), computed once per assembly."""
        if name not in self._facts:
            from icefloe.lakehouse.snapshots import table_facts

            self._facts[name] = table_facts(table)
        return self._facts[name]

    def _snapshot_children(self, name: str, table: Table) -> dict[int, list[Any]]:
        if name not in self._children:
            children: dict[int, list[Any]] = {}
            for snap in table.metadata.snapshots:
                if snap.parent_snapshot_id is not None:
                    children.setdefault(snap.parent_snapshot_id, []).append(snap)
            self._children[name] = children
        return self._children[name]

    def _trainings_of(self, name: str) -> dict[str, list[Any]]:
        """The training runs that read a table, by the snapshot id they read (one search
        per table, not one per snapshot)."""
        if name not in self._readers:
            found: dict[str, list[Any]] = {}
            for run in self._search_runs(f"tags.`icefloe.table` = '{name}'",
                                         limit=TABLE_READERS):
                snap = (run.data.tags or {}).get("icefloe.snapshot_id")
                if snap is not None:
                    found.setdefault(str(snap), []).append(run)
            self._readers[name] = found
        return self._readers[name]

    def _search_runs(self, filter_string: str, limit: int = MAX_CHILDREN) -> list[Any]:
        experiments = self._experiments()
        if not experiments:
            return []
        try:
            return list(self.registry.client.search_runs(experiments, filter_string,
                                                         max_results=limit))
        except Exception:
            log.debug("lineage: MLflow run search %r failed", filter_string, exc_info=True)
            return []

    # -- recorded edges -------------------------------------------------------------------

    def recorded(self, node: str, upstream: bool) -> list[Edge]:
        """Edges recorded into (``upstream``) or out of a node."""
        column = LineageEdge.dst if upstream else LineageEdge.src
        with self.database.session() as s:
            rows = s.scalars(select(LineageEdge).where(column == node)
                             .order_by(LineageEdge.id).limit(MAX_CHILDREN * 5))
            return [Edge(r.src, r.dst, r.relation, r.actor, iso_utc(r.at) or "",
                         dict(r.detail or {})) for r in rows]

    def is_recorded(self, node: str) -> bool:
        """Whether any recorded edge touches the node."""
        with self.database.session() as s:
            return s.scalar(select(LineageEdge.id).where(
                or_(LineageEdge.src == node, LineageEdge.dst == node)).limit(1)) is not None

    # -- neighbours -----------------------------------------------------------------------

    def upstream(self, node: str) -> list[Edge]:
        """Edges into ``node``: recorded ones, then those the stores say. A snapshot's
        summary names its source file by file name, a recorded load by its whole path: a
        recorded file edge stands for both."""
        recorded = self.recorded(node, True)
        files = {e.relation for e in recorded if e.src.startswith("file:")}
        derived = [e for e in self._safely(self._derived_up, node)
                   if not (e.src.startswith("file:") and e.relation in files)]
        return [*recorded, *derived]

    def downstream(self, node: str) -> list[Edge]:
        """Edges out of ``node``: recorded ones, then those the stores say."""
        return [*self.recorded(node, False), *self._safely(self._derived_down, node)]

    def _safely(self, derive: Any, node: str) -> list[Edge]:
        try:
            return list(derive(nodes.parse(node)))
        except IcefloeError:
            return []

    def _derived_up(self, node: nodes.Node) -> Iterator[Edge]:
        kind, key, here = node.kind, node.key, str(node)
        if kind == "prediction":
            with self.database.session() as s:
                p = s.get(Prediction, key)
                if p is not None:
                    at = iso_utc(p.timestamp_ms) or ""
                    yield Edge(nodes.build(p.build_id), here, "scored", "", at)
                    yield Edge(nodes.deployment(p.deployment_id), here, "answered", p.caller, at)
        elif kind == "deployment":
            with self.database.session() as s:
                d = s.get(Deployment, key)
                if d is not None:
                    yield Edge(nodes.build(d.build_id), here, "deployed", d.created_by,
                               iso_utc(d.updated_at) or "", {"current": True})
        elif kind == "build":
            with self.database.session() as s:
                b = s.get(Build, key)
                if b is not None:
                    yield Edge(nodes.model(b.model_name, b.model_version), here, "built",
                               b.created_by, iso_utc(b.created_at) or "")
        elif kind == "model":
            mv = self.model_version(key)
            if mv is not None and mv.run_id:
                yield Edge(nodes.training(mv.run_id), here, "registered", "",
                           iso_utc(mv.creation_timestamp) or "")
        elif kind == "training":
            yield from self._training_up(key, here)
        elif kind == "snapshot":
            yield from self._snapshot_up(key, here)
        elif kind == "run":
            yield from self._run_up(key, here)
        elif kind in ("alert", "window"):
            yield from self._monitoring_up(kind, key, here)

    def _training_up(self, key: str, here: str) -> Iterator[Edge]:
        run = self.mlflow_run(key)
        if run is None:
            return
        tags = run.data.tags or {}
        at = iso_utc(run.info.start_time) or ""
        if tags.get("icefloe.table") and str(tags.get("icefloe.snapshot_id", "")).lstrip(
                "-").isdigit():
            yield Edge(nodes.snapshot(tags["icefloe.table"], int(tags["icefloe.snapshot_id"])),
                       here, "read by", "", at)
        if tags.get(JOB_RUN_TAG):
            yield Edge(nodes.run(tags[JOB_RUN_TAG]), here, "ran", "", at)

    def _snapshot_up(self, key: str, here: str) -> Iterator[Edge]:
        name, _ = nodes.snapshot_parts(key)
        found = self.snapshot(key)
        if found is None:
            return
        _, snap = found
        at = iso_utc(snap.timestamp_ms) or ""
        yield Edge(nodes.table(name), here, "has snapshot", "", at)
        if snap.parent_snapshot_id is not None:
            yield Edge(nodes.snapshot(name, snap.parent_snapshot_id), here, "parent of", "", at)
        props = snap.summary.additional_properties if snap.summary is not None else {}
        user = props.get(USER_PROPERTY, "")
        if props.get(RUN_ID_PROPERTY):
            yield Edge(nodes.run(props[RUN_ID_PROPERTY]), here, "wrote", user, at)
        elif user:
            yield Edge(nodes.user(user), here, "wrote", user, at)
        if props.get(SOURCE_PROPERTY):
            yield Edge(nodes.file(props[SOURCE_PROPERTY]), here, "loaded into", user, at)

    def _run_up(self, key: str, here: str) -> Iterator[Edge]:
        with self.database.session() as s:
            run = s.get(Run, key)
            if run is None:
                return
            at = iso_utc(run.created_at) or ""
            task = nodes.airflow_of_key(run.idempotency_key)
            if task is not None:
                yield Edge(task, here, "started", run.triggered_by, at)
            if run.parent_run_id:
                yield Edge(nodes.run(run.parent_run_id), here, "triggered", "", at)
            if run.trigger in STARTED_BY_HAND and (run.run_as or run.triggered_by):
                who = run.run_as or run.triggered_by
                yield Edge(nodes.user(who), here, "started", who, at)

    def _monitoring_up(self, kind: str, key: str, here: str) -> Iterator[Edge]:
        if kind == "window":
            deployment_id = key.rpartition("/")[0]
            yield Edge(nodes.deployment(deployment_id), here, "monitored")
            return
        rule_id, _, event_id = key.rpartition("/")
        with self.database.session() as s:
            event = s.get(AlertEvent, int(event_id))
            rule = s.get(AlertRule, rule_id)
            if event is not None and rule is not None and event.rule_id == rule.id:
                yield Edge(nodes.deployment(rule.deployment_id), here, "raised", "",
                           iso_utc(event.at) or "")

    def _derived_down(self, node: nodes.Node) -> Iterator[Edge]:
        kind, key, here = node.kind, node.key, str(node)
        if kind == "deployment":
            with self.database.session() as s:
                found = s.execute(select(AlertEvent, AlertRule)
                                  .join(AlertRule, AlertRule.id == AlertEvent.rule_id)
                                  .where(AlertRule.deployment_id == key)
                                  .order_by(AlertEvent.id.desc()).limit(MAX_CHILDREN)).all()
                for event, rule in found:
                    yield Edge(here, nodes.alert(rule.id, event.id), "raised", "",
                               iso_utc(event.at) or "")
        elif kind == "build":
            with self.database.session() as s:
                for d in s.scalars(select(Deployment).where(Deployment.build_id == key)):
                    yield Edge(here, nodes.deployment(d.id), "deployed", d.created_by,
                               iso_utc(d.updated_at) or "", {"current": True})
        elif kind == "model":
            name, version = nodes.model_parts(key)
            with self.database.session() as s:
                for b in s.scalars(select(Build).where(Build.model_name == name,
                                                       Build.model_version == version)):
                    yield Edge(here, nodes.build(b.id), "built", b.created_by,
                               iso_utc(b.created_at) or "")
        elif kind == "training":
            found_versions: Any
            try:
                found_versions = self.registry.client.search_model_versions(
                    f"run_id = '{key}'")  # key: a validated id (no quote)
            except Exception:
                found_versions = []
            for mv in found_versions:
                yield Edge(here, nodes.model(mv.name, mv.version), "registered", "",
                           iso_utc(mv.creation_timestamp) or "")
        elif kind == "snapshot":
            yield from self._snapshot_down(key, here)
        elif kind == "table":
            table = self.table(key)
            if table is not None:
                for snap in sorted(table.metadata.snapshots,
                                   key=lambda x: x.timestamp_ms)[-MAX_CHILDREN:]:
                    yield Edge(here, nodes.snapshot(key, snap.snapshot_id), "has snapshot", "",
                               iso_utc(snap.timestamp_ms) or "")
        elif kind == "run":
            with self.database.session() as s:
                for child in s.scalars(select(Run).where(Run.parent_run_id == key)
                                       .limit(MAX_CHILDREN)):
                    yield Edge(here, nodes.run(child.id), "triggered", "",
                               iso_utc(child.created_at) or "")
            for run in self._search_runs(f"tags.`{JOB_RUN_TAG}` = '{key}'"):
                yield Edge(here, nodes.training(run.info.run_id), "ran", "",
                           iso_utc(run.info.start_time) or "")
        elif kind == "airflow":
            dag_id, dag_run_id, task_id = key.split("/")
            prefix = f"airflow:{dag_id}:{dag_run_id}:{task_id}:"
            with self.database.session() as s:
                for run in s.scalars(select(Run).where(
                        Run.idempotency_key.startswith(prefix, autoescape=True))
                        .limit(MAX_CHILDREN)):
                    if nodes.airflow_of_key(run.idempotency_key) == here:
                        yield Edge(here, nodes.run(run.id), "started", run.triggered_by,
                                   iso_utc(run.created_at) or "")

    def _snapshot_down(self, key: str, here: str) -> Iterator[Edge]:
        name, snap_id = nodes.snapshot_parts(key)
        table = self.table(name)
        if table is None:
            return
        for snap in self._snapshot_children(name, table).get(snap_id, []):
            yield Edge(here, nodes.snapshot(name, snap.snapshot_id), "parent of", "",
                       iso_utc(snap.timestamp_ms) or "")
        if not name.replace(".", "").replace("_", "").isalnum():
            return
        for run in self._trainings_of(name).get(str(snap_id), [])[:MAX_CHILDREN]:
            yield Edge(here, nodes.training(run.info.run_id), "read by", "",
                       iso_utc(run.info.start_time) or "")

    # -- descriptions ---------------------------------------------------------------------

    def describe(self, node: str) -> dict[str, Any] | None:
        """A node's label and attributes from the stores; None when no store knows it."""
        try:
            parsed = nodes.parse(node)
            return self._describe(parsed)
        except IcefloeError:
            return None
        except Exception:  # a store that cannot answer: the node is shown as is
            log.debug("lineage: describing %s failed", node, exc_info=True)
            return None

    @staticmethod
    def _deployment_project(s: Any, deployment_id: str) -> str | None:
        return s.scalar(select(Deployment.project_id).where(Deployment.id == deployment_id))

    def _training_project(self, tags: dict[str, str]) -> str | None:
        """The project of a training run: its job run's, else its model's (the catalog
        card's, else the default project's)."""
        with self.database.session() as s:
            job_run = tags.get(JOB_RUN_TAG)
            if job_run:
                found = s.scalar(select(Run.project_id).where(Run.id == job_run))
                if found:
                    return str(found)
            model = tags.get("icefloe.model") or ""
            card = s.scalar(select(ModelCard.project_id).where(ModelCard.name == model))
            if card:
                return str(card)
            from icefloe.governance.membership import default_project_id

            return default_project_id(s) or None

    def _describe(self, node: nodes.Node) -> dict[str, Any] | None:
        kind, key = node.kind, node.key
        describe = getattr(self, f"_describe_{kind}", None)
        return describe(key) if describe is not None else None

    def _describe_prediction(self, key: str) -> dict[str, Any] | None:
        with self.database.session() as s:
            p = s.get(Prediction, key)
            if p is None:
                return None
            return {"label": f"prediction {key[:8]} ({p.model_name}/{p.model_version})",
                    "project_id": self._deployment_project(s, p.deployment_id),
                    "time": iso_utc(p.timestamp_ms), "deployment": p.deployment_id,
                    "build": p.build_id, "model": p.model_name,
                    "model_version": p.model_version}

    def _describe_deployment(self, key: str) -> dict[str, Any] | None:
        with self.database.session() as s:
            d = s.get(Deployment, key)
            if d is None:
                return None
            return {"label": f"deployment {key[:8]} ({d.model_name}/{d.model_version}, "
                             f"{d.status})", "status": d.status, "build": d.build_id,
                    "model": d.model_name, "model_version": d.model_version,
                    "project_id": d.project_id, "created_by": d.created_by}

    def _describe_build(self, key: str) -> dict[str, Any] | None:
        with self.database.session() as s:
            b = s.get(Build, key)
            if b is None:
                return None
            return {"label": f"build {key[:8]} ({b.model_name}/{b.model_version}, {b.status})",
                    "status": b.status, "model": b.model_name, "model_version": b.model_version,
                    "parity": b.parity, "project_id": b.project_id,
                    "created_at": iso_utc(b.created_at)}

    def _describe_model(self, key: str) -> dict[str, Any] | None:
        mv = self.model_version(key)
        if mv is None:
            return None
        tags = mv.tags or {}
        return {"label": f"model {key}", "status": mv.status, "training_run": mv.run_id,
                "table": tags.get("icefloe.table"), "snapshot_id": tags.get(
                    "icefloe.snapshot_id"), "pipeline": tags.get("icefloe.pipeline"),
                "aliases": list(getattr(mv, "aliases", []) or []),
                "created_at": iso_utc(mv.creation_timestamp)}

    def _describe_training(self, key: str) -> dict[str, Any] | None:
        run = self.mlflow_run(key)
        if run is None:
            return None
        tags, metrics = run.data.tags or {}, run.data.metrics or {}
        name = run.info.run_name or key[:8]
        return {"label": f"training {name} ({run.info.status})", "status": run.info.status,
                "project_id": self._training_project(tags),
                "pipeline": tags.get("icefloe.pipeline"), "model": tags.get("icefloe.model"),
                "auc": metrics.get("auc"), "error": tags.get("icefloe.error"),
                "job_run": tags.get(JOB_RUN_TAG), "started_at": iso_utc(run.info.start_time)}

    def _describe_snapshot(self, key: str) -> dict[str, Any] | None:
        found = self.snapshot(key)
        if found is None:
            return None
        from icefloe.lakehouse.snapshots import snapshot_info

        table, snap = found
        info = snapshot_info(table, snap, self.table_facts(nodes.snapshot_parts(key)[0], table))
        name, _ = nodes.snapshot_parts(key)
        props = snap.summary.additional_properties if snap.summary is not None else {}
        added = f", +{info.added_rows:,} rows" if info.added_rows else ""
        return {"label": f"{name} @ {info.short_id} ({info.operation}{added}"
                         f"{', current' if info.current else ''})",
                "table": name, "snapshot_id": info.snapshot_id, "time": info.time,
                "operation": info.operation, "added_rows": info.added_rows,
                "total_rows": info.total_rows, "current": info.current,
                "in_current_history": info.in_current_lineage, "tags": info.tags,
                "written_by_run": props.get(RUN_ID_PROPERTY),
                "written_by_user": props.get(USER_PROPERTY),
                "source": props.get(SOURCE_PROPERTY)}

    def _describe_table(self, key: str) -> dict[str, Any] | None:
        table = self.table(key)
        if table is None:
            return None
        current = table.current_snapshot()
        return {"label": f"table {key}", "snapshots": len(table.metadata.snapshots),
                "current_snapshot_id": current.snapshot_id if current else None}

    def _describe_run(self, key: str) -> dict[str, Any] | None:
        with self.database.session() as s:
            found = s.execute(select(Run, Job.name).join(Job, Job.id == Run.job_id)
                              .where(Run.id == key)).first()
            if found is None:
                return None
            run, job = found
            return {"label": f"run {key[:8]} ({job}, {run.status})", "job": job,
                    "job_id": run.job_id, "project_id": run.project_id, "status": run.status,
                    "trigger": run.trigger, "run_as": run.run_as,
                    "airflow_task": nodes.airflow_of_key(run.idempotency_key),
                    "created_at": iso_utc(run.created_at), "reason": run.reason or None}

    def _describe_user(self, key: str) -> dict[str, Any] | None:
        with self.database.session() as s:
            found = s.scalar(select(User).where(User.name == key))
            return {"label": f"user {key}", "role": found.role} if found is not None else None

    def _describe_alert(self, key: str) -> dict[str, Any] | None:
        rule_id, _, event_id = key.rpartition("/")
        with self.database.session() as s:
            event = s.get(AlertEvent, int(event_id))
            rule = s.get(AlertRule, rule_id)
            if event is None or rule is None or event.rule_id != rule.id:
                return None
            what = f"{rule.metric}{f' {rule.feature}' if rule.feature else ''}"
            return {"label": f"alert {what} {event.from_state} -> {event.to_state}",
                    "project_id": self._deployment_project(s, rule.deployment_id),
                    "metric": rule.metric, "feature": rule.feature, "value": event.value,
                    "from": event.from_state, "to": event.to_state, "at": iso_utc(event.at)}

    def _describe_window(self, key: str) -> dict[str, Any] | None:
        deployment_id, _, span = key.rpartition("/")
        start, _, end = span.partition("-")
        with self.database.session() as s:
            project_id = self._deployment_project(s, deployment_id)
        return {"label": f"window {iso_utc(int(start))} .. {iso_utc(int(end))}",
                "project_id": project_id,
                "deployment": deployment_id, "start": iso_utc(int(start)),
                "end": iso_utc(int(end))} if self.is_recorded(f"window:{key}") else None

    def _describe_airflow(self, key: str) -> dict[str, Any] | None:
        dag_id, dag_run_id, task_id = key.split("/")
        return {"label": f"Airflow {dag_id} / {task_id} ({dag_run_id})", "dag_id": dag_id,
                "dag_run_id": dag_run_id, "task_id": task_id}

    def _describe_file(self, key: str) -> dict[str, Any] | None:
        return {"label": f"file {key.rsplit('/', 1)[-1]}", "path": key}

    # -- the graph ------------------------------------------------------------------------

    def known(self, node: str) -> bool:
        """Whether anything (a store or a recorded edge) knows the node."""
        parsed = nodes.parse(node)
        if parsed.kind in ("airflow", "file"):  # described from their id alone
            return self.is_recorded(node) or (
                parsed.kind == "airflow" and any(self._safely(self._derived_down, node)))
        return self.describe(node) is not None or self.is_recorded(node)

    def graph(self, node: str, direction: str = "both", depth: int | None = None) -> Graph:
        """The graph around ``node``, every node described.

        Raises:
            InvalidInputError: A malformed node, direction or depth.
            NotFoundError: Nothing knows the node.
        """
        nodes.parse(node)
        check_direction(direction)
        check_depth(depth)
        if not self.known(node):
            kind, _, key = node.partition(":")
            raise NotFoundError(f"lineage node {node} is not known: no {kind} {key!r} is "
                                "kept and no recorded lineage names it")
        graph = walk(node, self.upstream, self.downstream, direction, depth)
        for each in list(graph.nodes):
            graph.add_node(each, **(self.describe(each) or _undescribed(each)))
        return graph


def _undescribed(node: str) -> dict[str, Any]:
    """The attributes of a node no store describes: its kind and id as its label; ``missing``
    for kinds a store keeps (a dropped table's snapshot, a deleted run)."""
    kind, _, key = node.partition(":")
    attrs: dict[str, Any] = {"label": f"{kind} {key}"}
    if kind not in ("user", "file", "airflow", "window"):
        attrs["missing"] = True
    return attrs


def lineage_graph(database: Database, settings: Settings, node: str, *,
                  direction: str = "both", depth: int | None = None,
                  lakehouse: Lakehouse | None = None) -> dict[str, Any]:
    """The lineage graph around ``node`` as ``{"root", "nodes", "edges"}``.

    Args:
        database: The platform DB.
        settings: Where MLflow and the lakehouse are.
        node: ``kind:id`` (see :mod:`icefloe.lineage.nodes`).
        direction: ``upstream`` (where it came from), ``downstream`` (what came of it) or
            ``both``.
        depth: At most this many edges away (default :data:`icefloe.lineage.graph.MAX_DEPTH`).
        lakehouse: The lakehouse (one from the settings if omitted).

    Raises:
        InvalidInputError: A malformed node, direction or depth.
        NotFoundError: Nothing knows the node.
    """
    assembler = Assembler(database, settings, lakehouse)
    return assembler.graph(node, direction, depth).to_dict(node)


def explain_prediction(database: Database, settings: Settings, uuid: str, *,
                       lakehouse: Lakehouse | None = None) -> dict[str, Any]:
    """The chain behind one prediction (see :func:`icefloe.lineage.explain.explain`).

    Raises:
        NotFoundError: No such prediction.
    """
    from icefloe.lineage.explain import explain

    return explain(Assembler(database, settings, lakehouse), uuid)

"""Catalog entries: every registered model with its card, its versions and what they learned
from, where each version is deployed and how that deployment is doing, and its last alerts.

Models and versions come from the MLflow registry, cards, deployments and alerts from the
platform DB, health from the supervisor when the caller runs one (the control plane); a
command on a home has none, and reports each deployment's recorded status instead. What
does not change once written (a version's lineage, a table's schema at one metadata file) is
kept in memory, so a search reads only what is new.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from icefloe.catalog import cards as card_store
from icefloe.catalog.search import Column, ModelDoc, TableDoc, Usage
from icefloe.errors import IcefloeError, NotFoundError
from icefloe.registry.lineage import LINEAGE_ARTIFACT, Lineage
from icefloe.registry.refs import validate_model_name
from icefloe.store.orm import AlertEvent, AlertRule, Deployment, ModelCard
from icefloe.timefmt import iso_utc

if TYPE_CHECKING:
    from icefloe.lakehouse import Lakehouse
    from icefloe.registry.mlflow_registry import ModelRegistry
    from icefloe.serving.supervisor import Supervisor
    from icefloe.store.db import Database

RECENT_EVENTS = 10
_CACHE_SIZE = 4096
Visible = Callable[[str], bool]  # a card's project id -> may the caller see the model


class _Memo:
    """A bounded in-process cache of values that never change for their key."""

    def __init__(self) -> None:
        self._data: dict[Any, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._data:
                return self._data[key]
        value = make()
        with self._lock:
            if len(self._data) >= _CACHE_SIZE:
                self._data.clear()
            self._data[key] = value
        return value


_lineages = _Memo()
_schemas = _Memo()


# -- registry reads -------------------------------------------------------------------------

def registered_models(registry: ModelRegistry) -> list[tuple[str, dict[str, int]]]:
    """Every registered model's name and aliases (alias -> version), by name."""
    out: list[tuple[str, dict[str, int]]] = []
    token: str | None = None
    while True:
        page = registry.client.search_registered_models(max_results=1000, page_token=token)
        for rm in page:
            aliases = {str(k): int(v) for k, v in (getattr(rm, "aliases", {}) or {}).items()}
            out.append((rm.name, aliases))
        token = getattr(page, "token", None)
        if not token:
            return sorted(out)


def check_registered(registry: ModelRegistry, name: str) -> str:
    """``name`` if it is a registered model.

    Raises:
        NotFoundError: Naming the model (a name icefloe could not register is not either).
    """
    try:
        validate_model_name(name)
        registry.resolve_model(name)
    except IcefloeError:
        raise NotFoundError(f"model {name[:200]!r} is not registered") from None
    return name


def model_versions(registry: ModelRegistry, name: str) -> list[dict[str, Any]]:
    """A model's versions, oldest first ([] for a model icefloe cannot search by name)."""
    try:
        return registry.versions(name)
    except IcefloeError:
        return []


def version_lineage(registry: ModelRegistry, run_id: str | None) -> Lineage | None:
    """What a version's training run learned from (None: not trained by icefloe)."""
    if not run_id:
        return None

    def load() -> Lineage | None:
        import mlflow

        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=LINEAGE_ARTIFACT, dst_path=tmp)
                return Lineage.from_dict(json.loads(Path(path).read_text()))
            except Exception:  # noqa: BLE001 - no lineage: registered by other means
                return None

    # A run's lineage.json is written once, with the run.
    found: Lineage | None = _lineages.get((registry.uri, run_id), load)
    return found


def usages(registry: ModelRegistry, names: Iterable[str]) -> list[Usage]:
    """The table and columns every version of these models learned from."""
    out: list[Usage] = []
    for name in names:
        for version in model_versions(registry, name):
            lineage = version_lineage(registry, version["run_id"])
            if lineage is not None:
                out.append(Usage(name, version["version"], lineage.table,
                                 tuple(lineage.features), lineage.label_column))
    return out


# -- deployments and alerts -----------------------------------------------------------------

def health(status: str, wanted: int, ready: int | None) -> str:
    """How a deployment is doing: ``healthy`` (every replica ready), ``degraded`` (some),
    ``down`` (none) for a DEPLOYED one whose replicas were counted; without a count (no
    supervisor in this process) or when not DEPLOYED, its status in lower case."""
    if status != "DEPLOYED" or ready is None:
        return status.lower()
    if ready >= wanted:
        return "healthy"
    return "degraded" if ready > 0 else "down"


def deployment_view(dep: Deployment, supervisor: Supervisor | None) -> dict[str, Any]:
    """A deployment as the catalog shows it (never its key)."""
    ready = (sum(1 for r in supervisor.replicas(dep.id) if r.get("ready"))
             if supervisor is not None else None)
    return {"id": dep.id, "version": dep.model_version, "build_id": dep.build_id,
            "project_id": dep.project_id, "status": dep.status, "reason": dep.reason,
            "replicas": dep.replicas, "ready_replicas": ready,
            "health": health(dep.status, dep.replicas, ready),
            "updated_at": iso_utc(dep.updated_at)}


def _deployments(s: Session, names: list[str], sees: Visible | None = None
                 ) -> dict[str, list[Deployment]]:
    """Deployments that are not stopped (of projects ``sees`` allows), by model, newest
    first."""
    rows = s.scalars(select(Deployment)
                     .where(Deployment.model_name.in_(names), Deployment.status != "STOPPED")
                     .order_by(Deployment.created_at.desc(), Deployment.id))
    out: dict[str, list[Deployment]] = {}
    for dep in rows:
        if sees is None or sees(dep.project_id or ""):
            out.setdefault(dep.model_name, []).append(dep)
    return out


def _alerts(s: Session, names: list[str], recent: int = RECENT_EVENTS,
            sees: Visible | None = None) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per model: its FIRING rules on served deployments and its last rule state changes."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {
        n: {"firing": [], "recent": []} for n in names}
    rules = s.execute(select(AlertRule, Deployment.model_name, Deployment.status,
                             Deployment.project_id)
                      .join(Deployment, Deployment.id == AlertRule.deployment_id)
                      .where(Deployment.model_name.in_(names), AlertRule.state == "FIRING")
                      .order_by(AlertRule.state_since.desc(), AlertRule.id))
    for rule, model, status, project_id in rules:
        if sees is not None and not sees(project_id or ""):
            continue
        if status == "DEPLOYED":  # a stopped deployment's rules are no longer evaluated
            out[model]["firing"].append(
                {"rule": rule.id, "deployment": rule.deployment_id, "metric": rule.metric,
                 "feature": rule.feature, "comparison": rule.comparison,
                 "threshold": rule.threshold, "value": rule.last_value,
                 "since": iso_utc(rule.state_since)})
    for name in names if recent > 0 else ():
        events = s.execute(select(AlertEvent, AlertRule)
                           .join(AlertRule, AlertRule.id == AlertEvent.rule_id)
                           .join(Deployment, Deployment.id == AlertRule.deployment_id)
                           .where(Deployment.model_name == name,
                                  Deployment.project_id.in_(_seen_projects(s, sees)))
                           .order_by(AlertEvent.id.desc()).limit(recent))
        out[name]["recent"] = [
            {"id": e.id, "rule": r.id, "deployment": r.deployment_id, "metric": r.metric,
             "feature": r.feature, "at": iso_utc(e.at), "from": e.from_state,
             "to": e.to_state, "value": e.value, "samples": e.samples,
             "delivered": e.delivered} for e, r in events]
    return out


# -- what the routes and commands answer ------------------------------------------------------

def visible_names(db: Database, registry: ModelRegistry, visible: Visible | None = None
                  ) -> list[tuple[str, dict[str, int]]]:
    """Registered models (with their aliases) the caller may see, by name."""
    models = registered_models(registry)
    if visible is None:
        return models
    with db.session() as s:
        projects = {c.name: c.project_id for c in card_store.cards(s).values()}
    return [(n, a) for n, a in models if visible(projects.get(n, ""))]


def _seen_projects(s: Session, sees: Visible | None) -> list[str | None]:
    """The projects (ids) ``sees`` allows, for a query (None allows every one)."""
    from icefloe.store.orm import Project

    ids: list[str | None] = [p for p in s.scalars(select(Project.id))]
    return [p for p in ids if sees is None or sees(p or "")] + ([None] if sees is None else [])


def summaries(db: Database, registry: ModelRegistry, models: list[tuple[str, dict[str, int]]],
              supervisor: Supervisor | None = None, sees: Visible | None = None
              ) -> list[dict[str, Any]]:
    """A line per model: its card, latest version, where it is deployed, firing alerts."""
    names = [n for n, _ in models]
    with db.session() as s:
        found = card_store.cards(s, names)
        deployed = _deployments(s, names, sees)
        alerts = _alerts(s, names, recent=0, sees=sees)
        out = []
        for name, aliases in models:
            versions = [v["version"] for v in model_versions(registry, name)]
            out.append({**card_store.card_json(name, found.get(name)),
                        "latest_version": max(versions) if versions else None,
                        "version_count": len(versions), "aliases": aliases,
                        "deployed": [deployment_view(d, supervisor)
                                     for d in deployed.get(name, [])],
                        "firing_alerts": len(alerts[name]["firing"])})
    return out


def entry(db: Database, registry: ModelRegistry, name: str,
          supervisor: Supervisor | None = None, sees: Visible | None = None
          ) -> dict[str, Any]:
    """Everything the catalog knows of one model.

    Returns:
        The card's fields; ``aliases``; ``versions`` (oldest first), each with its lineage
        (``table``, ``snapshot_id``, ``features``, ``label_column``, ``row_count``,
        ``metrics``; None where a version has no lineage) and the ``deployments`` serving it
        (status, replicas, ``ready_replicas``, ``health``); and ``alerts``: ``firing`` rules
        and the ``recent`` state changes of its deployments' rules, newest first.

    Raises:
        NotFoundError: The model is not registered, named.
    """
    check_registered(registry, name)
    versions = model_versions(registry, name)
    with db.session() as s:
        card = card_store.get_card(s, name)
        deployed = _deployments(s, [name], sees).get(name, [])
        views = [deployment_view(d, supervisor) for d in deployed]
        alerts = _alerts(s, [name], sees=sees)[name]
        card_data = card_store.card_json(name, card)
    aliases: dict[str, int] = {}
    out_versions = []
    for v in versions:
        lineage = version_lineage(registry, v["run_id"])
        for alias in v["aliases"]:
            aliases[alias] = v["version"]
        out_versions.append({
            "version": v["version"], "aliases": v["aliases"], "status": v["status"],
            "created_at": iso_utc(v["created"]), "run_id": v["run_id"],
            "pipeline": v["pipeline"], "table": v["table"], "snapshot_id": v["snapshot_id"],
            "fingerprint": v.get("fingerprint"),
            "features": list(lineage.features) if lineage else None,
            "label_column": lineage.label_column if lineage else None,
            "row_count": lineage.row_count if lineage else None,
            "metrics": dict(lineage.metrics) if lineage else {},
            "deployments": [d for d in views if d["version"] == v["version"]]})
    return {**card_data, "aliases": aliases,
            "latest_version": versions[-1]["version"] if versions else None,
            "versions": out_versions, "alerts": alerts}


def model_docs(db: Database, names: Iterable[str]) -> list[ModelDoc]:
    """What search reads of these models (blank for a model without a card)."""
    wanted = list(names)
    with db.session() as s:
        found: dict[str, ModelCard] = card_store.cards(s, wanted)
        return [ModelDoc(n, found[n].description, tuple(found[n].tags or ()),
                         found[n].use_case, found[n].risk_level) if n in found
                else ModelDoc(n) for n in wanted]


def table_docs(lakehouse: Lakehouse) -> list[TableDoc]:
    """Every table of the lakehouse with the columns of its current schema."""
    from icefloe.lakehouse.catalog import list_table_names, load_table, table_locations

    catalog = lakehouse.catalog
    names = list_table_names(catalog)
    out: list[TableDoc] = []
    for name, location in sorted(table_locations(catalog, names).items(),
                                 key=lambda item: str(item[0])):
        def columns(name: Any = name) -> tuple[Column, ...] | None:
            try:
                table = load_table(catalog, name)
            except NotFoundError:  # dropped since it was listed
                return None
            return tuple(Column(f.name, str(f.field_type)) for f in table.schema().fields)

        # A metadata file is never rewritten: its schema is the table's while it is current.
        found = _schemas.get(location, columns)
        if found is not None:
            out.append(TableDoc(str(name), found))
    return out


def search_catalog(db: Database, registry: ModelRegistry, lakehouse: Lakehouse, query: str,
                   kind: str | None = None, limit: int = 50, *,
                   visible: Visible | None = None,
                   table_visible: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """Search models, tables and columns (:func:`icefloe.catalog.search.search`).

    Args:
        visible: Which models the caller may see, by their card's project (None: all);
            the others are neither hits nor users of a column.
        table_visible: Which tables the caller may see, by name (None: all).

    Returns:
        ``{"query", "kind", "results"}``.
    """
    from icefloe.catalog.search import check_kind, check_limit, check_query, search

    query, kind, limit = check_query(query), check_kind(kind), check_limit(limit)
    names = [n for n, _ in visible_names(db, registry, visible)]
    docs = model_docs(db, names) if kind in (None, "model") else []
    uses = usages(registry, names) if kind in (None, "column") else []
    tables = table_docs(lakehouse) if kind in (None, "table", "column") else []
    if table_visible is not None:
        tables = [t for t in tables if table_visible(t.name)]
        uses = [u for u in uses if table_visible(u.table)]
    return {"query": query, "kind": kind,
            "results": search(query, docs, tables, uses, kind=kind, limit=limit)}

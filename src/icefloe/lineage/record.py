"""Recording lineage as things happen: happenings (:mod:`icefloe.happenings`) become rows of
``lineage_edges``.

:func:`edges_of` (pure) says which edges one happening makes; :func:`subscriber` is the
factory the happenings registry names, writing them to the platform DB. An edge that is
recorded already is not added again (a repeated COMPLETE, a START then its COMPLETE): it only
takes the new state into its detail, so a failed training or job run shows as failed.

What each kind of happening records (edges point the way data flows):

- ``table.write``: each input (a snapshot read, a file loaded) -> each output snapshot
  (``input of`` / ``loaded into``); the writer (``run:`` of the job run, else ``user:``) ->
  each output (``wrote``); a prediction export's deployments -> the output (``exported to``);
  the model version of a batch scoring -> the output (``scored into``).
- ``sql.report``: each input snapshot -> the output snapshot or file (``queried into``), and
  the writer as for a write.
- ``table.rollback``: the snapshot rolled back from -> the one made current (``rollback``,
  with the actor).
- ``job.run``: the Airflow task -> the run (``started``), a parent run -> its child
  (``triggered``), the user -> a run they started by hand (``started``).
- ``training``: the input snapshot -> the training run (``read by``), the job run ->
  training (``ran``), training -> the model version it registered (``registered``).
- ``build``: model version -> build (``built``); ``deployment``: build -> deployment
  (``deployed``).
- ``monitoring.window``: deployment -> window (``monitored``), the predictions snapshot read
  -> window (``read by``), window -> the metrics snapshot written (``recorded in``).
- ``alert``: window (else deployment) -> alert (``raised``).
- ``table.read`` makes no edge: a read is access (see :mod:`icefloe.governance.access`),
  not lineage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, or_, select

from icefloe.errors import InvalidInputError
from icefloe.lineage import nodes
from icefloe.lineage.graph import Edge

if TYPE_CHECKING:
    from icefloe.config import Settings
    from icefloe.happenings import Actor, Dataset, Happening
    from icefloe.store.db import Database

log = logging.getLogger(__name__)
MAX_DETAIL_TEXT = 500


def actor_name(actor: Actor) -> str:
    """How an edge names who made it happen: ``user`` or ``user (run/<id>)``."""
    return f"{actor.user} (run/{actor.run_id})" if actor.run_id else actor.user


def dataset_node(dataset: Dataset) -> str:
    """The node of a dataset: a snapshot, a table with no snapshot, or a file."""
    if dataset.kind == "file":
        return nodes.file(dataset.name)
    if dataset.snapshot_id is not None:
        return nodes.snapshot(dataset.name, int(dataset.snapshot_id))
    return nodes.table(dataset.name)


def writer_node(happening: Happening) -> str:
    """Who wrote: the job run acting (or the run the happening belongs to), else the user."""
    run_id = happening.actor.run_id or _parent_run(happening.parent)
    return nodes.run(run_id) if run_id else nodes.user(happening.actor.user)


def _parent_run(parent: Mapping[str, Any] | None) -> str:
    if isinstance(parent, Mapping) and parent.get("kind") == "job.run" and parent.get("run_id"):
        return str(parent["run_id"])
    return ""


def parent_node(parent: Mapping[str, Any] | None) -> str | None:
    """The node of a happening's parent: an Airflow task or a job run (None for none)."""
    if not isinstance(parent, Mapping):
        return None
    if parent.get("kind") == "airflow":
        return nodes.airflow(str(parent.get("dag_id", "")), str(parent.get("run_id", "")),
                             str(parent.get("task_id", "")))
    if parent.get("kind") == "job.run" and parent.get("run_id"):
        return nodes.run(str(parent["run_id"]))
    return None


def _parent(parent: Mapping[str, Any] | None) -> str:
    found = parent_node(parent)
    if found is None:
        raise ValueError("no parent node")
    return found


def _short(value: Any) -> Any:
    """A detail value small enough to keep (long texts cut, containers left out)."""
    if isinstance(value, str):
        return value[:MAX_DETAIL_TEXT]
    if value is None or isinstance(value, bool | int | float):
        return value
    return None


def _detail(happening: Happening, **extra: Any) -> dict[str, Any]:
    out = {"state": happening.state, "happening": happening.kind, "run_id": happening.run_id}
    for name, value in extra.items():
        kept = _short(value)
        if kept is not None:
            out[name] = kept
    return out


# Each maker answers (src, dst, relation, extra detail) tuples; nodes are checked by
# edges_of, which leaves out any edge whose nodes are not valid.
Made = Iterable[tuple[Callable[[], str], Callable[[], str], str, Mapping[str, Any]]]


def _node(make: Callable[..., str], *args: Any) -> Callable[[], str]:
    return lambda: make(*args)


def _writes(h: Happening, relation_in: str) -> Made:
    subject = h.subject
    for output in h.outputs:
        out = _node(dataset_node, output)
        rows = {"rows": output.rows}
        for source in h.inputs:
            relation = "loaded into" if source.kind == "file" and relation_in == "input of" \
                else relation_in
            yield _node(dataset_node, source), out, relation, rows
        yield _node(writer_node, h), out, "wrote", {"via": subject.get("via"), **rows}
        deployments = subject.get("deployments")
        for dep in deployments if isinstance(deployments, list | tuple) else ():
            yield _node(nodes.deployment, str(dep)), out, "exported to", {}
        if subject.get("model") and subject.get("version") and h.kind == "table.write":
            yield _node(nodes.model, str(subject["model"]), subject["version"]), out, \
                "scored into", {}


def _rollback(h: Happening) -> Made:
    for source in h.inputs:
        for target in h.outputs:
            yield (_node(dataset_node, source), _node(dataset_node, target), "rollback",
                   {"schema_changed": h.subject.get("schema_changed")})


def _job_run(h: Happening) -> Made:
    run = _node(nodes.run, h.run_id)
    extra = {"job": h.subject.get("job"), "status": h.subject.get("status")}
    parent = h.parent if isinstance(h.parent, Mapping) else None
    if parent is not None and parent.get("kind") == "airflow":
        yield _node(_parent, parent), run, "started", extra
    elif parent is not None and parent.get("kind") == "job.run":
        yield _node(_parent, parent), run, "triggered", extra
    if h.subject.get("trigger") in ("manual", "api", "cde") and h.actor.user:
        yield _node(nodes.user, h.actor.user), run, "started", extra


def _training(h: Happening) -> Made:
    train = _node(nodes.training, h.run_id)
    extra = {"pipeline": h.subject.get("pipeline"), "error": h.subject.get("error")}
    for source in h.inputs:
        yield _node(dataset_node, source), train, "read by", extra
    if _parent_run(h.parent):
        yield _node(_parent, h.parent), train, "ran", extra
    model, version = h.subject.get("model"), h.subject.get("version")
    if h.state == "COMPLETE" and model and version:
        yield train, _node(nodes.model, str(model), version), "registered", extra


def _build(h: Happening) -> Made:
    model, version, build_id = (h.subject.get(k) for k in ("model", "version", "build_id"))
    if model and version and build_id:
        yield (_node(nodes.model, str(model), version), _node(nodes.build, str(build_id)),
               "built", {"status": h.subject.get("status"), "parity": h.subject.get("parity"),
                         "error": h.subject.get("error")})


def _deployment(h: Happening) -> Made:
    build_id, dep_id = h.subject.get("build_id"), h.subject.get("deployment_id")
    if build_id and dep_id:
        yield (_node(nodes.build, str(build_id)), _node(nodes.deployment, str(dep_id)),
               "deployed", {"action": h.subject.get("action"), "error": h.subject.get("error")})


def _window_of(h: Happening) -> Callable[[], str] | None:
    s = h.subject
    if s.get("deployment_id") and s.get("start_ms") is not None and s.get("end_ms") is not None:
        return _node(nodes.window, str(s["deployment_id"]), s["start_ms"], s["end_ms"])
    return None


def _monitoring(h: Happening) -> Made:
    window = _window_of(h)
    if window is None:
        return
    yield _node(nodes.deployment, str(h.subject["deployment_id"])), window, "monitored", {}
    for source in h.inputs:
        yield _node(dataset_node, source), window, "read by", {}
    for output in h.outputs:
        yield window, _node(dataset_node, output), "recorded in", {}


def _alert(h: Happening) -> Made:
    s = h.subject
    if not (s.get("rule_id") and s.get("event_id") is not None and s.get("deployment_id")):
        return
    alert = _node(nodes.alert, str(s["rule_id"]), s["event_id"])
    extra = {"metric": s.get("metric"), "from": s.get("from"), "to": s.get("to"),
             "value": s.get("value")}
    window = _window_of(h)
    deployment = _node(nodes.deployment, str(s["deployment_id"]))
    if window is not None:
        yield deployment, window, "monitored", {}
        yield window, alert, "raised", extra
    else:
        yield deployment, alert, "raised", extra


_MAKERS: dict[str, Callable[[Happening], Made]] = {
    "table.write": lambda h: _writes(h, "input of") if h.state == "COMPLETE" else (),
    "sql.report": lambda h: _writes(h, "queried into") if h.state == "COMPLETE" else (),
    "table.rollback": lambda h: _rollback(h) if h.state == "COMPLETE" else (),
    "job.run": _job_run,
    "training": _training,
    "build": _build,
    "deployment": _deployment,
    "monitoring.window": _monitoring,
    "alert": _alert,
}


def edges_of(happening: Happening) -> list[Edge]:
    """The lineage edges one happening makes (pure). An edge whose node cannot be made
    from what the happening says (a malformed name from a job run) is left out."""
    maker = _MAKERS.get(happening.kind)
    if maker is None:
        return []
    actor = actor_name(happening.actor)
    at = happening.at.isoformat()
    out: list[Edge] = []
    for src, dst, relation, extra in maker(happening):
        try:
            edge = Edge(src(), dst(), relation, actor, at, _detail(happening, **extra))
        except (InvalidInputError, TypeError, ValueError) as exc:
            log.info("lineage: %s %s leaves out a %r edge (%s)", happening.kind,
                     happening.state, relation, exc)
            continue
        if edge.src != edge.dst:
            out.append(edge)
    return out


def store_edges(database: Database, edges: list[Edge]) -> int:
    """Write edges to ``lineage_edges``; one already there (same src, dst and relation)
    only takes the new detail values (e.g. the state). Returns how many were added."""
    if not edges:
        return 0
    from datetime import datetime

    from icefloe.store.orm import LineageEdge

    wanted = {e.key: e for e in edges}
    with database.session() as s:
        found = s.scalars(select(LineageEdge).where(or_(*(
            and_(LineageEdge.src == src, LineageEdge.dst == dst, LineageEdge.relation == rel)
            for src, dst, rel in wanted))))
        known = {(row.src, row.dst, row.relation): row for row in found}
        added = 0
        for key, edge in wanted.items():
            row = known.get(key)
            if row is not None:
                merged = {**(row.detail or {}), **dict(edge.detail)}
                if merged != row.detail:
                    row.detail = merged
                continue
            s.add(LineageEdge(at=datetime.fromisoformat(edge.at), src=edge.src, dst=edge.dst,
                              relation=edge.relation, actor=edge.actor[:255],
                              detail=dict(edge.detail)))
            added += 1
        return added


def subscriber(settings: Settings,
               database: Database | None) -> Callable[[Happening], None] | None:
    """The happenings subscriber that records lineage edges in the platform DB.

    Args:
        settings: Unused (lineage is always recorded where there is a platform DB).
        database: The platform DB; None (no DB at hand): no subscriber.
    """
    del settings
    if database is None:
        return None

    def record_lineage(happening: Happening) -> None:
        store_edges(database, edges_of(happening))

    return record_lineage

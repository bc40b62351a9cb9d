"""The chain behind one prediction: which deployment, build, model version, training run and
snapshot produced it, the batches that snapshot is made of (with the job runs, Airflow
tasks, users and files that wrote them) and the rollbacks on the way."""

from __future__ import annotations

from typing import Any

from icefloe.errors import NotFoundError
from icefloe.lineage import nodes
from icefloe.lineage.assemble import Assembler
from icefloe.store.orm import Prediction
from icefloe.timefmt import iso_utc


def _ancestry(assembler: Assembler, table: str, snapshot_id: int) -> list[int]:
    """A snapshot and its ancestors (by parent), newest first."""
    found = assembler.table(table)
    chain: list[int] = []
    current: int | None = snapshot_id
    while found is not None and current is not None and current not in chain:
        chain.append(current)
        snap = found.snapshot_by_id(current)
        current = snap.parent_snapshot_id if snap is not None else None
    return chain


def _batch(assembler: Assembler, table: str, snapshot_id: int) -> dict[str, Any]:
    """One snapshot of a training snapshot's history, with who and what wrote it."""
    node = nodes.snapshot(table, snapshot_id)
    info = assembler.describe(node) or {}
    writers = assembler.upstream(node)
    runs = sorted({e.src for e in writers if e.src.startswith("run:") and e.relation == "wrote"})
    airflow = sorted({e.src for r in runs for e in assembler.upstream(r)
                      if e.src.startswith("airflow:")})
    return {"node": node, "snapshot_id": snapshot_id, "time": info.get("time"),
            "operation": info.get("operation"), "added_rows": info.get("added_rows"),
            "total_rows": info.get("total_rows"), "runs": runs, "airflow": airflow,
            "users": sorted({e.src for e in writers if e.src.startswith("user:")}),
            "inputs": sorted({e.src for e in writers
                              if e.relation in ("input of", "loaded into", "queried into")})}


def explain(assembler: Assembler, uuid: str) -> dict[str, Any]:
    """The chain behind one prediction, for people and for the demo.

    Returns:
        ``prediction``, ``time``, ``deployment``, ``build``, ``model``, ``model_version``,
        ``training_run``, ``training_snapshot`` (``table``, ``snapshot_id``), ``batches``
        (the training snapshot and its ancestors, newest first, each with the job runs,
        Airflow tasks, users and inputs that wrote it) and ``rollbacks`` (recorded rollbacks
        to a snapshot of that history: from, to, who, when).

    Raises:
        NotFoundError: No such prediction.
    """
    node = nodes.prediction(uuid)
    with assembler.database.session() as s:
        p = s.get(Prediction, uuid)
        if p is None:
            raise NotFoundError(f"prediction {uuid} does not exist")
        out: dict[str, Any] = {"prediction": uuid, "node": node,
                               "time": iso_utc(p.timestamp_ms), "deployment": p.deployment_id,
                               "build": p.build_id, "model": p.model_name,
                               "model_version": p.model_version}
    mv = assembler.model_version(f"{p.model_name}/{p.model_version}")
    tags = (mv.tags or {}) if mv is not None else {}
    out["training_run"] = mv.run_id if mv is not None else None
    table, snap = str(tags.get("icefloe.table") or ""), str(tags.get("icefloe.snapshot_id") or "")
    trained_on = table and snap.lstrip("-").isdigit()
    out["training_snapshot"] = {"table": table, "snapshot_id": int(snap)} if trained_on else None
    out["batches"], out["rollbacks"] = [], []
    if trained_on:
        chain = _ancestry(assembler, table, int(snap))
        out["batches"] = [_batch(assembler, table, i) for i in chain]
        history = {nodes.snapshot(table, i) for i in chain}
        out["rollbacks"] = [{"from": e.src, "to": e.dst, "actor": e.actor, "at": e.at}
                            for h in sorted(history) for e in assembler.recorded(h, True)
                            if e.relation == "rollback"]
    return out

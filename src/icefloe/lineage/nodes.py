"""Lineage node ids (pure): ``kind:id`` strings, parsed, validated and formatted.

========== ==================================== =========================================
kind       id                                   what it is
========== ==================================== =========================================
file       a path or URI                        a source batch (a file loaded into a table)
snapshot   ``<ns.table>@<snapshot id>``         one Iceberg snapshot of a table
table      ``<ns.table>``                       a table (all of its snapshots)
run        ``<job run id>``                     one run of a platform job
airflow    ``<dag_id>/<dag_run_id>/<task_id>``  the Airflow task that started a job run
user       ``<name>``                           a person (or a key's user)
training   ``<mlflow run id>``                  a training run
model      ``<name>/<version>``                 a registered model version
build      ``<id>``                             a serving build of a model version
deployment ``<id>``                             a deployment (a build behind an access key)
window     ``<deployment>/<start ms>-<end ms>`` a monitoring window of a deployment
alert      ``<rule id>/<event id>``             a change of state of an alert rule
prediction ``<uuid>``                           one answered prediction
========== ==================================== =========================================
"""

from __future__ import annotations

import re
from typing import NamedTuple

from icefloe.errors import InvalidInputError

MAX_NODE = 512  # what lineage_edges.src/dst hold
KINDS = ("file", "snapshot", "table", "run", "airflow", "user", "training", "model", "build",
         "deployment", "window", "alert", "prediction")

_TABLE = r"[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*"
_ID = r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,254}"
_AIRFLOW_PART = r"[^/\x00-\x1f]{1,250}"
_SHAPES: dict[str, tuple[re.Pattern[str], str]] = {
    "file": (re.compile(r"[^\x00-\x1f]{1,500}"), "a path or URI"),
    "snapshot": (re.compile(rf"{_TABLE}@-?\d{{1,20}}"), "namespace.table@SNAPSHOT_ID"),
    "table": (re.compile(_TABLE), "namespace.table"),
    "run": (re.compile(_ID), "a job run id"),
    "airflow": (re.compile(rf"{_AIRFLOW_PART}/{_AIRFLOW_PART}/{_AIRFLOW_PART}"),
                "DAG_ID/DAG_RUN_ID/TASK_ID"),
    "user": (re.compile(r"[^\x00-\x1f]{1,255}"), "a user name"),
    "training": (re.compile(_ID), "an MLflow run id"),
    "model": (re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}/\d{1,9}"), "NAME/VERSION"),
    "build": (re.compile(_ID), "a build id"),
    "deployment": (re.compile(_ID), "a deployment id"),
    "window": (re.compile(rf"{_ID}/\d{{1,15}}-\d{{1,15}}"), "DEPLOYMENT/START_MS-END_MS"),
    "alert": (re.compile(rf"{_ID}/\d{{1,19}}"), "RULE_ID/EVENT_ID"),
    "prediction": (re.compile(r"[0-9A-Za-z][0-9A-Za-z\-]{0,63}"), "a prediction uuid"),
}


class Node(NamedTuple):
    """A parsed node id."""

    kind: str
    key: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.key}"


def parse(text: str) -> Node:
    """Parse and validate a node id ``kind:id``.

    Raises:
        InvalidInputError: Naming the node and what its id should look like.
    """
    if not isinstance(text, str) or not text:
        raise InvalidInputError("lineage node is empty: use KIND:ID, e.g. "
                                "snapshot:lending.loans@123 or prediction:<uuid>")
    shown = text[:120] + ("..." if len(text) > 120 else "")
    if len(text) > MAX_NODE:
        raise InvalidInputError(f"lineage node {shown!r} is over {MAX_NODE} characters")
    if not text.isprintable():
        raise InvalidInputError(f"lineage node {shown!r} holds characters that are not "
                                "printable")
    kind, sep, key = text.partition(":")
    if not sep or kind not in _SHAPES:
        raise InvalidInputError(f"lineage node {shown!r} has no known kind: use KIND:ID with "
                                f"KIND one of {', '.join(KINDS)}")
    shape, expected = _SHAPES[kind]
    if not shape.fullmatch(key):
        raise InvalidInputError(f"lineage node {shown!r} is not a valid {kind} node: "
                                f"expected {kind}:{expected}")
    return Node(kind, key)


def is_node(text: str) -> bool:
    """Whether ``text`` is a valid node id."""
    try:
        parse(text)
    except InvalidInputError:
        return False
    return True


def looks_like_node(text: str) -> bool:
    """Whether ``text`` starts with a known kind and a colon (valid or not): what the CLI
    uses to tell a node from a model reference (``NAME/VERSION`` holds no colon)."""
    kind, sep, _ = text.partition(":")
    return bool(sep) and kind in _SHAPES


def _checked(kind: str, key: str) -> str:
    return str(parse(f"{kind}:{key}"))


def file(path: str) -> str:
    """A source batch: a file path or URI."""
    return _checked("file", path)


def snapshot(table: str, snapshot_id: int) -> str:
    """One snapshot of ``namespace.table``."""
    return _checked("snapshot", f"{table}@{int(snapshot_id)}")


def table(name: str) -> str:
    """A table."""
    return _checked("table", name)


def run(run_id: str) -> str:
    """A job run."""
    return _checked("run", run_id)


def airflow(dag_id: str, dag_run_id: str, task_id: str) -> str:
    """The Airflow task that started a job run."""
    return _checked("airflow", f"{dag_id}/{dag_run_id}/{task_id}")


def user(name: str) -> str:
    """A user."""
    return _checked("user", name)


def training(mlflow_run_id: str) -> str:
    """A training run (its MLflow run id)."""
    return _checked("training", mlflow_run_id)


def model(name: str, version: int | str) -> str:
    """A registered model version."""
    return _checked("model", f"{name}/{int(version)}")


def build(build_id: str) -> str:
    """A serving build."""
    return _checked("build", build_id)


def deployment(deployment_id: str) -> str:
    """A deployment."""
    return _checked("deployment", deployment_id)


def window(deployment_id: str, start_ms: int, end_ms: int) -> str:
    """A monitoring window of a deployment."""
    return _checked("window", f"{deployment_id}/{int(start_ms)}-{int(end_ms)}")


def alert(rule_id: str, event_id: int | str) -> str:
    """A change of state of an alert rule."""
    return _checked("alert", f"{rule_id}/{int(event_id)}")


def prediction(uuid: str) -> str:
    """An answered prediction."""
    return _checked("prediction", uuid)


def snapshot_parts(key: str) -> tuple[str, int]:
    """``(table, snapshot id)`` of a snapshot node's id."""
    name, _, snap = key.rpartition("@")
    return name, int(snap)


def model_parts(key: str) -> tuple[str, int]:
    """``(name, version)`` of a model node's id."""
    name, _, version = key.rpartition("/")
    return name, int(version)


def airflow_parts(idempotency_key: str | None) -> tuple[str, str, str, int] | None:
    """``(dag_id, dag_run_id, task_id, map_index)`` of a job run's idempotency key as the
    Airflow provider sets it: ``airflow:<dag_id>:<dag_run_id>:<task_id>:<map index>`` (then
    ``#<generation>`` for a retry's next run). Run ids hold colons
    (``manual__2026-11-27T10:00:00+00:00``); DAG and task ids do not. None for any other
    key (a hashed one included)."""
    if not idempotency_key or not idempotency_key.startswith("airflow:"):
        return None
    body = re.sub(r"#\d+$", "", idempotency_key.removeprefix("airflow:"))
    dag_id, sep, rest = body.partition(":")
    if not sep or dag_id == "sha256":
        return None
    parts = rest.rsplit(":", 2)
    if len(parts) != 3 or not re.fullmatch(r"-?\d+", parts[2]):
        return None
    dag_run_id, task_id = parts[0], parts[1]
    if not (dag_id and dag_run_id and task_id):
        return None
    return dag_id, dag_run_id, task_id, int(parts[2])


def airflow_of_key(idempotency_key: str | None) -> str | None:
    """The Airflow task node of a job run's idempotency key (see :func:`airflow_parts`),
    or None."""
    parts = airflow_parts(idempotency_key)
    if parts is None:
        return None
    try:
        return airflow(*parts[:3])
    except InvalidInputError:
        return None

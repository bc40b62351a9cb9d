"""A happening as an OpenLineage RunEvent (pure).

Naming (see the README's OpenLineage section):

- jobs live in the namespace of the ``openlineage_namespace`` setting and are named after
  what ran: ``<project>.<job>`` (a job run), ``training.<model>``, ``build.<model>``,
  ``deploy.<model>``, ``sql.<output table>``, ``table.<table>`` (a write),
  ``rollback.<table>``, ``monitor.<model>``, ``alert.<rule>``;
- tables are datasets in the namespace ``iceberg://<catalog_name>`` named
  ``<namespace>.<table>``, their snapshot id as the dataset ``version`` facet; files are in
  ``file`` (a local path) or ``<scheme>://<authority>`` (a URI); model versions and builds
  are datasets too (``models://<namespace>`` ``<model>/<version>``, ``builds://<namespace>``
  ``<build id>``), so that the graph runs table -> training -> model -> build -> deployment;
- run ids: a happening's run id that is a UUID (job runs, builds) or 32 hex digits (MLflow
  runs) is used as it is; any other is ``uuid5(RUN_NAMESPACE, "<kind>:<run id>")``, and so
  is one equal to its parent's (a write that reuses its job run's id must not pose as it);
- an Airflow task as parent (``{"kind": "airflow", "dag_id", "run_id", "task_id"}``) is the
  run ``uuid5(RUN_NAMESPACE, "airflow:<dag_id>:<run_id>:<task_id>")`` (``:<map_index>``
  added for a mapped task instance) of the job
  ``airflow``/``<dag_id>.<task_id>``, its root the DAG run
  ``uuid5(RUN_NAMESPACE, "airflow:<dag_id>:<run_id>")`` of the job ``airflow``/``<dag_id>``
  (or the Airflow OpenLineage provider's own run id when the parent carries it as
  ``ol_run_id``).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from icefloe.happenings import Dataset, Happening
from icefloe.openlineage.facets import EVENT_SCHEMA_URL, facet, producer, version

# uuid5(NAMESPACE_URL, "https://github.com/icefloe/icefloe/openlineage"): fixed forever, so
# that anyone can recompute a run id from the ids icefloe was given.
RUN_NAMESPACE = uuid.UUID("ed52b11e-3c90-597d-b35c-d601d5b6bb37")
AIRFLOW_NAMESPACE = "airflow"
# Kinds that are told as OpenLineage runs, with the JobTypeJobFacet's jobType of each.
# Reads are not: access tracking keeps them, and a run that reads lists them as inputs.
JOB_TYPES = {"job.run": "JOB", "training": "TRAINING", "build": "BUILD",
             "deployment": "DEPLOYMENT", "sql.report": "QUERY", "table.write": "WRITE",
             "table.rollback": "ROLLBACK", "monitoring.window": "MONITORING",
             "alert": "ALERT"}
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")


def _none(_: str) -> str | None:
    return None


@dataclass(frozen=True)
class Naming:
    """What naming needs beyond the happening.

    Attributes:
        namespace: The job namespace of icefloe's jobs.
        catalog: The Iceberg catalog's name (the table datasets' namespace).
        project_name: A project's name from its id (None: unknown).
        job_of_run: ``<project>.<job>`` of a job run id (None: unknown).
    """

    namespace: str = "icefloe"
    catalog: str = "icefloe"
    project_name: Callable[[str], str | None] = field(default=_none)
    job_of_run: Callable[[str], str | None] = field(default=_none)


def _as_uuid(text: str) -> str | None:
    if _HEX32.match(text):
        return str(uuid.UUID(hex=text))
    try:
        return str(uuid.UUID(text)) if len(text) == 36 else None
    except ValueError:
        return None


def run_id_of(kind: str, run_id: str, *, parent_run_id: str | None = None) -> str:
    """The OpenLineage runId of a happening's run (stable: the same for START and COMPLETE)."""
    own = _as_uuid(run_id)
    if own is not None and run_id != parent_run_id:
        return own
    return str(uuid.uuid5(RUN_NAMESPACE, f"{kind}:{run_id}"))


def airflow_task_run_id(dag_id: str, run_id: str, task_id: str,
                        map_index: int | str | None = None) -> str:
    """The runId icefloe gives an Airflow task run (``:`` never occurs in DAG or task ids);
    a mapped task instance (``map_index`` other than -1) adds ``:<map_index>``."""
    key = f"airflow:{dag_id}:{run_id}:{task_id}"
    if map_index not in (None, "", -1, "-1"):
        key += f":{map_index}"
    return str(uuid.uuid5(RUN_NAMESPACE, key))


def airflow_dag_run_id(dag_id: str, run_id: str) -> str:
    """The runId icefloe gives an Airflow DAG run (the root of its tasks' runs)."""
    return str(uuid.uuid5(RUN_NAMESPACE, f"airflow:{dag_id}:{run_id}"))


def _text(subject: Mapping[str, Any], *names: str) -> str | None:
    """The first of these subject values that is set, as text."""
    for name in names:
        value = subject.get(name)
        if value is not None and value != "":
            return str(value)
    return None


def _job_run_name(subject: Mapping[str, Any], run_id: str, naming: Naming) -> str:
    project = _text(subject, "project")
    if project is None and (project_id := _text(subject, "project_id")):
        project = naming.project_name(project_id) or project_id
    job = _text(subject, "job", "job_name")
    if project and job:
        return f"{project}.{job}"
    return naming.job_of_run(run_id) or (job or f"job.{run_id}")


def job_name(h: Happening, naming: Naming) -> str:
    """The OpenLineage job name of a happening (see the module doc)."""
    s = h.subject
    first_out = h.outputs[0].name if h.outputs else None
    first_in = h.inputs[0].name if h.inputs else None
    if h.kind == "job.run":
        return _job_run_name(s, h.run_id, naming)
    names: dict[str, tuple[str, str | None]] = {
        "training": ("training", _text(s, "model", "model_name", "experiment")),
        "build": ("build", _text(s, "model", "model_name", "build_id")),
        "deployment": ("deploy", _text(s, "model", "model_name", "name", "deployment_id")),
        "sql.report": ("sql", first_out or _text(s, "name", "report")),
        "table.write": ("table", first_out or _text(s, "table")),
        "table.rollback": ("rollback", first_out or _text(s, "table") or first_in),
        "monitoring.window": ("monitor", _text(s, "model", "deployment", "deployment_id")),
        "alert": ("alert", _text(s, "rule", "rule_name", "rule_id")),
    }
    prefix, name = names.get(h.kind, (h.kind, None))
    return f"{prefix}.{name or 'unnamed'}"


def _dataset_id(d: Dataset, naming: Naming) -> tuple[str, str]:
    if d.kind == "table":
        return f"iceberg://{naming.catalog}", d.name
    if d.kind == "file":
        parts = urlsplit(d.name)
        if parts.scheme in ("", "file") or len(parts.scheme) == 1:  # a path (or C:\...)
            return "file", parts.path if parts.scheme == "file" else d.name
        return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/") or "/"
    return f"{d.kind}://{naming.namespace}", d.name


def dataset(d: Dataset, naming: Naming, *, output: bool) -> dict[str, Any]:
    """One input or output dataset with its facets (version = the snapshot id)."""
    namespace, name = _dataset_id(d, naming)
    facets: dict[str, Any] = {}
    if d.snapshot_id is not None:
        facets["version"] = facet("version", datasetVersion=str(d.snapshot_id))
    if d.fields:
        facets["schema"] = facet("schema", fields=[{"name": f} for f in d.fields])
    if d.kind == "table":
        facets["catalog"] = facet("catalog", framework="iceberg", type="sql",
                                  name=naming.catalog, source="icefloe")
    out: dict[str, Any] = {"namespace": namespace, "name": name, "facets": facets}
    if d.rows is not None:
        key = "outputStatistics" if output else "inputStatistics"
        out["outputFacets" if output else "inputFacets"] = {key: facet(key, rowCount=d.rows)}
    return out


def _model_datasets(h: Happening) -> tuple[list[Dataset], list[Dataset]]:
    """Model versions and builds as datasets, so the graph runs on to the deployment."""
    s = h.subject
    model, ver = _text(s, "model", "model_name"), _text(s, "version", "model_version")
    build = _text(s, "build_id")
    model_ds = [Dataset(name=f"{model}/{ver}", kind="models")] if model and ver else []
    build_ds = [Dataset(name=build, kind="builds")] if build else []
    if h.kind == "training":
        return [], model_ds
    if h.kind == "build":
        return model_ds, build_ds
    if h.kind == "deployment":
        return build_ds, []
    return [], []


def _datasets(h: Happening, naming: Naming) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    extra_in, extra_out = _model_datasets(h) if h.state != "FAIL" else ([], [])

    def unique(items: list[Dataset], output: bool) -> list[dict[str, Any]]:
        seen: set[tuple[str, str]] = set()
        out = []
        for d in items:
            ident = _dataset_id(d, naming)
            if ident not in seen:
                seen.add(ident)
                out.append(dataset(d, naming, output=output))
        return out

    return unique([*h.inputs, *extra_in], False), unique([*h.outputs, *extra_out], True)


def _parent(h: Happening, naming: Naming) -> dict[str, Any] | None:
    p = h.parent
    if not p:
        return None
    kind = str(p.get("kind") or "")
    if kind == "airflow":
        dag, run, task = (str(p.get(k) or "") for k in ("dag_id", "run_id", "task_id"))
        if not (dag and run and task):
            return None
        own = _as_uuid(str(p.get("ol_run_id") or ""))
        task_run = own or airflow_task_run_id(dag, run, task, p.get("map_index"))
        return facet("parent",
                     run={"runId": task_run},
                     job={"namespace": AIRFLOW_NAMESPACE, "name": f"{dag}.{task}"},
                     root={"run": {"runId": airflow_dag_run_id(dag, run)},
                           "job": {"namespace": AIRFLOW_NAMESPACE, "name": dag}})
    run_id = str(p.get("run_id") or "")
    if not run_id:
        return None
    if kind == "job.run":
        name = _job_run_name(p, run_id, naming)
    else:
        name = _text(p, "job") or f"{kind or 'run'}.{run_id}"
    return facet("parent", run={"runId": run_id_of(kind or "run", run_id)},
                 job={"namespace": str(p.get("namespace") or naming.namespace), "name": name})


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def _numbers(values: Any) -> dict[str, float | int] | None:
    """The finite numbers of a mapping (JSON has no NaN; a confusion matrix is not one)."""
    if not isinstance(values, Mapping):
        return None
    out = {str(k): n for k, v in values.items() if (n := _number(v)) is not None}
    return out or None


def _instant(subject: Mapping[str, Any], iso: str, epoch_ms: str) -> str | None:
    """A time given as ISO 8601 text or as epoch milliseconds, as ISO 8601 (UTC)."""
    if (text := _text(subject, iso)) is not None:
        return text
    ms = _number(subject.get(epoch_ms))
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat() if ms is not None else None


def _params(values: Any) -> dict[str, Any] | None:
    if not isinstance(values, Mapping):
        return None
    out: dict[str, Any] = {}
    for key, value in values.items():
        plain = value is None or isinstance(value, str | bool) or _number(value) is not None
        out[str(key)] = value if plain else str(value)
    return out or None


def _ml_facets(h: Happening) -> dict[str, Any]:
    s, out = h.subject, {}
    model = _text(s, "model", "model_name")
    ver = _text(s, "version", "model_version")
    if model and h.kind in ("training", "build", "deployment", "monitoring.window", "alert"):
        out["icefloe_model"] = facet("icefloe_model", name=model, version=ver,
                                     uri=f"models:/{model}/{ver}" if ver else None)
    if h.kind == "training":
        mlflow_run = _text(s, "mlflow_run_id") or (h.run_id if _HEX32.match(h.run_id) else None)
        features = s.get("features")
        out["icefloe_training"] = facet(
            "icefloe_training", mlflowRunId=mlflow_run, experiment=_text(s, "experiment"),
            pipeline=_text(s, "pipeline"), label=_text(s, "label"),
            features=[str(f) for f in features] if isinstance(features, list | tuple) else None,
            hyperparameters=_params(s.get("params")), metrics=_numbers(s.get("metrics")))
    elif h.kind == "build":
        out["icefloe_build"] = facet(
            "icefloe_build", buildId=_text(s, "build_id") or h.run_id,
            format=_text(s, "format"), parity=_number(s.get("parity")),
            parityLimit=_number(s.get("parity_limit")), checksum=_text(s, "checksum"))
    elif h.kind == "deployment":
        replicas = s.get("replicas")
        out["icefloe_deployment"] = facet(
            "icefloe_deployment", deploymentId=_text(s, "deployment_id") or h.run_id,
            name=_text(s, "name"), buildId=_text(s, "build_id"),
            previousBuildId=_text(s, "previous_build_id"), action=_text(s, "action"),
            replicas=replicas if isinstance(replicas, int) and not isinstance(replicas, bool)
            and replicas >= 0 else None)
    elif h.kind in ("monitoring.window", "alert"):
        metric, value = _text(s, "metric"), _number(s.get("value"))
        measured = {metric + (f".{s['feature']}" if s.get("feature") else ""): value} \
            if metric and value is not None else None
        out["icefloe_monitoring"] = facet(
            "icefloe_monitoring", deploymentId=_text(s, "deployment_id"),
            rule=_text(s, "rule", "rule_name", "rule_id"),
            state=_text(s, "alert_state", "state", "to"),
            windowStart=_instant(s, "window_start", "start_ms"),
            windowEnd=_instant(s, "window_end", "end_ms"),
            metrics=_numbers(s.get("metrics")) or measured)
    return out


def _run_facets(h: Happening, naming: Naming) -> dict[str, Any]:
    facets: dict[str, Any] = {
        "processing_engine": facet("processing_engine", version=version(), name="icefloe",
                                   openlineageAdapterVersion=version()),
        "icefloe_actor": facet("icefloe_actor", user=h.actor.user,
                               jobRunId=h.actor.run_id or None),
    }
    if (parent := _parent(h, naming)) is not None:
        facets["parent"] = parent
    error = _text(h.subject, "error", "reason")
    if h.state == "FAIL" or (h.state == "ABORT" and error):
        facets["errorMessage"] = facet("errorMessage", message=error or "failed",
                                       programmingLanguage="PYTHON")
    facets.update(_ml_facets(h))
    return facets


def _job_facets(h: Happening) -> dict[str, Any]:
    facets = {"jobType": facet("jobType", processingType="BATCH", integration="ICEFLOE",
                               jobType=JOB_TYPES[h.kind])}
    if h.kind == "sql.report" and (query := _text(h.subject, "sql", "query")):
        facets["sql"] = facet("sql", query=query, dialect="duckdb")
    return facets


def to_run_event(h: Happening, naming: Naming) -> dict[str, Any] | None:
    """The RunEvent telling this happening (None for a kind that is not told, e.g. a read).

    Args:
        h: What happened.
        naming: Namespaces and the names of projects and job runs.

    Returns:
        A JSON-able dict valid against the OpenLineage 2-0-2 RunEvent schema, or None.
    """
    if h.kind not in JOB_TYPES:
        return None
    at = h.at if h.at.tzinfo is not None else h.at.replace(tzinfo=UTC)
    parent_run = str(h.parent.get("run_id")) if h.parent and h.parent.get("run_id") else None
    inputs, outputs = _datasets(h, naming)
    return {
        "eventType": h.state,
        "eventTime": at.isoformat(),
        "producer": producer(),
        "schemaURL": EVENT_SCHEMA_URL,
        "run": {"runId": run_id_of(h.kind, h.run_id, parent_run_id=parent_run),
                "facets": _run_facets(h, naming)},
        "job": {"namespace": naming.namespace, "name": job_name(h, naming),
                "facets": _job_facets(h)},
        "inputs": inputs,
        "outputs": outputs,
    }

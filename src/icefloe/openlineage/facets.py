"""OpenLineage facets: the spec's standard ones icefloe fills, and icefloe's own.

Every facet carries ``_producer`` (icefloe, at its version) and ``_schemaURL``: for a
standard facet the versioned spec URL of the OpenLineage release icefloe validates against
(1.52.0: event schema 2-0-2), for one of ours the ``$id`` of its JSON schema, shipped in
``icefloe/openlineage/schemas/`` and pinned to the release that introduced it (a changed
schema gets a new ``$id``, as the spec asks of custom facets).

icefloe's facets follow the spec's custom facet naming (``{prefix}{Name}{Entity}Facet``,
key ``{prefix}_{name}``): all are run facets.

| key | schema | on |
|---|---|---|
| ``icefloe_model`` | IcefloeModelRunFacet | training, build, deployment, monitoring |
| ``icefloe_training`` | IcefloeTrainingRunFacet | training |
| ``icefloe_build`` | IcefloeBuildRunFacet | build |
| ``icefloe_deployment`` | IcefloeDeploymentRunFacet | deployment |
| ``icefloe_monitoring`` | IcefloeMonitoringRunFacet | monitoring windows, alerts |
| ``icefloe_actor`` | IcefloeActorRunFacet | every event |
"""

from __future__ import annotations

import json
from functools import cache
from importlib import metadata, resources
from typing import Any

PROJECT_URL = "https://github.com/icefloe/icefloe"
SPEC_VERSION = "2-0-2"
SPEC_URL = f"https://openlineage.io/spec/{SPEC_VERSION}/OpenLineage.json"
EVENT_SCHEMA_URL = f"{SPEC_URL}#/$defs/RunEvent"
_FACETS = "https://openlineage.io/spec/facets"

# Standard facet key -> its versioned schema (those of OpenLineage 1.52.0).
STANDARD: dict[str, str] = {
    "version": "1-0-1/DatasetVersionDatasetFacet",
    "schema": "1-2-0/SchemaDatasetFacet",
    "catalog": "1-1-0/CatalogDatasetFacet",
    "inputStatistics": "1-0-0/InputStatisticsInputDatasetFacet",
    "outputStatistics": "1-0-2/OutputStatisticsOutputDatasetFacet",
    "errorMessage": "1-0-1/ErrorMessageRunFacet",
    "parent": "1-2-0/ParentRunFacet",
    "processing_engine": "1-1-1/ProcessingEngineRunFacet",
    "jobType": "2-0-4/JobTypeJobFacet",
    "sql": "1-1-0/SQLJobFacet",
}

# icefloe's facet key -> the name of its schema (file ``schemas/<name>.json``).
CUSTOM: dict[str, str] = {
    "icefloe_model": "IcefloeModelRunFacet",
    "icefloe_training": "IcefloeTrainingRunFacet",
    "icefloe_build": "IcefloeBuildRunFacet",
    "icefloe_deployment": "IcefloeDeploymentRunFacet",
    "icefloe_monitoring": "IcefloeMonitoringRunFacet",
    "icefloe_actor": "IcefloeActorRunFacet",
}


@cache
def version() -> str:
    """icefloe's installed version ("0.0.0" when not installed as a distribution)."""
    try:
        return metadata.version("icefloe")
    except metadata.PackageNotFoundError:
        return "0.0.0"


@cache
def producer() -> str:
    """The ``producer`` of every event and facet: icefloe's source at its release tag."""
    return f"{PROJECT_URL}/tree/v{version()}"


@cache
def custom_schema(key: str) -> dict[str, Any]:
    """The JSON schema of one of icefloe's facets, as shipped in the package.

    Raises:
        KeyError: Not one of :data:`CUSTOM`.
    """
    name = CUSTOM[key]
    text = resources.files("icefloe.openlineage").joinpath("schemas", f"{name}.json")
    schema: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return schema


def schema_url(key: str) -> str:
    """The ``_schemaURL`` of a facet: a JSON pointer to its definition.

    Raises:
        KeyError: Neither a standard facet icefloe fills nor one of its own.
    """
    if key in STANDARD:
        path = STANDARD[key]
        return f"{_FACETS}/{path}.json#/$defs/{path.rpartition('/')[2]}"
    return f"{custom_schema(key)['$id']}#/$defs/{CUSTOM[key]}"


def facet(key: str, **fields: Any) -> dict[str, Any]:
    """One facet: the base fields, then the given ones (those that are None left out)."""
    out: dict[str, Any] = {"_producer": producer(), "_schemaURL": schema_url(key)}
    out.update({name: value for name, value in fields.items() if value is not None})
    return out

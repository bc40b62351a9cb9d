"""Offline validation of OpenLineage events against the spec's JSON schemas and ours.

The spec (``OpenLineage.json`` and ``facets/*.json`` of an OpenLineage release, Apache-2.0)
is not in any package: it is looked for in ``$ICEFLOE_OPENLINEAGE_SPEC``, then
``tests/data/openlineage/``, then ``openlineage/`` in the ``shared/`` folder beside the
repository. Every event is validated as a whole against ``OpenLineage.json``, and each of
its facets against the schema its ``_schemaURL`` points to (the spec's facet files, or the
schemas icefloe ships for its own facets): an unknown ``_schemaURL`` is an error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from icefloe.openlineage import facets

ROOT = Path(__file__).resolve().parents[1]
PLACES = (ROOT / "tests" / "data" / "openlineage", ROOT.parent / "shared" / "openlineage")


def spec_dir() -> Path | None:
    """The folder holding ``OpenLineage.json`` and ``facets/`` (None: nowhere)."""
    given = os.environ.get("ICEFLOE_OPENLINEAGE_SPEC")
    for place in ([Path(given)] if given else []) + list(PLACES):
        if (place / "OpenLineage.json").is_file() and (place / "facets").is_dir():
            return place
    return None


def _resource(contents: dict[str, Any]) -> tuple[str, Resource]:
    return contents["$id"], Resource.from_contents(contents)


@cache
def registry() -> Registry:
    """Every schema an event may point to: the spec's and icefloe's own (no network)."""
    folder = spec_dir()
    if folder is None:
        raise FileNotFoundError("the OpenLineage spec is not here (see tests/openlineage_spec)")
    schemas = [json.loads((folder / "OpenLineage.json").read_text())]
    schemas += [json.loads(p.read_text()) for p in sorted((folder / "facets").glob("*.json"))]
    schemas += [facets.custom_schema(key) for key in facets.CUSTOM]
    return Registry().with_resources(_resource(s) for s in schemas)


def _facets(event: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from event["run"].get("facets", {}).items()
    yield from event["job"].get("facets", {}).items()
    for d in [*event.get("inputs", []), *event.get("outputs", [])]:
        for group in ("facets", "inputFacets", "outputFacets"):
            yield from d.get(group, {}).items()


def validate(event: dict[str, Any]) -> None:
    """Raise if the event or any of its facets is not valid (jsonschema's error says where)."""
    checker = FormatChecker()  # checks "uuid" (date-time and uri need extras: see below)
    core = registry().contents(facets.SPEC_URL)
    Draft202012Validator(core, registry=registry(), format_checker=checker).validate(event)
    assert datetime.fromisoformat(event["eventTime"]).tzinfo is not None, event["eventTime"]
    assert event["producer"].startswith("https://"), event["producer"]
    for key, facet in _facets(event):
        url = facet["_schemaURL"]
        schema = {"$ref": url}
        Draft202012Validator(schema, registry=registry(), format_checker=checker).validate(facet)
        # The facet's key is the one its schema file defines it under.
        document = registry().contents(url.partition("#")[0])
        assert key in document.get("properties", {}), (key, url)

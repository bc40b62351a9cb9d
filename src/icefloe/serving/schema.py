"""The input schema of a build and validation of prediction requests (pure).

A request is validated completely before it is scored: every problem names the field, and
nothing invalid is ever scored or recorded.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from icefloe.errors import InvalidInputError

MAX_BODY_BYTES = 5 * 1024 * 1024


class RequestTooLarge(InvalidInputError):
    """A request body over the size limit."""

    http_status = 413


@dataclass(frozen=True)
class FieldSpec:
    """One input field: ``number`` or ``string`` (with the categories seen in training)."""

    name: str
    kind: str
    levels: tuple[str, ...] = ()
    nullable: bool = False

    @cached_property
    def level_set(self) -> frozenset[str]:
        """The training categories, for membership tests."""
        return frozenset(self.levels)


@dataclass(frozen=True)
class InputSchema:
    """What a model accepts."""

    fields: tuple[FieldSpec, ...]
    allow_unknown_fields: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSchema:
        """Rebuild from :meth:`to_dict`."""
        return cls(tuple(FieldSpec(f["name"], f["kind"], tuple(f.get("levels", ())),
                                   bool(f.get("nullable", False))) for f in data["fields"]),
                   bool(data.get("allow_unknown_fields", False)), dict(data.get("extra", {})))

    @property
    def names(self) -> tuple[str, ...]:
        """Field names in model order."""
        return tuple(f.name for f in self.fields)


def _no_constants(value: str) -> float:
    raise InvalidInputError(f"{value} is not a valid number in JSON")


def parse_body(raw: bytes) -> Any:
    """Parse a JSON body, refusing bodies over 5 MB and NaN/Infinity literals."""
    if len(raw) > MAX_BODY_BYTES:
        raise RequestTooLarge(f"request body is {len(raw):,} bytes; the limit is 5 MB")
    try:
        return json.loads(raw, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"malformed JSON: {exc.msg} at line {exc.lineno} "
                                f"column {exc.colno}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInputError("request body is not UTF-8 JSON") from exc


def validate_record(schema: InputSchema, record: Any, where: str = "request") -> dict[str, Any]:
    """Check one record against the schema and return the values in model order.

    Raises:
        InvalidInputError: Naming the field: missing, unknown, wrong type, NaN/Infinity.
    """
    if not isinstance(record, dict):
        raise InvalidInputError(f"{where} must be a JSON object of field values")
    if not schema.allow_unknown_fields:
        unknown = sorted(set(record) - set(schema.names))
        if unknown:
            raise InvalidInputError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}")
    out: dict[str, Any] = {}
    for spec in schema.fields:
        if spec.name not in record:
            raise InvalidInputError(f"{where}: missing field {spec.name!r}")
        value = record[spec.name]
        if value is None:
            if not spec.nullable:
                raise InvalidInputError(f"{where}: field {spec.name!r} may not be null")
        elif spec.kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInputError(
                    f"{where}: field {spec.name!r} must be a number, got "
                    f"{type(value).__name__} {value!r}"[:200])
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidInputError(f"{where}: field {spec.name!r} must be finite")
        elif not isinstance(value, str):
            raise InvalidInputError(
                f"{where}: field {spec.name!r} must be a string, got {type(value).__name__}")
        out[spec.name] = value
    return out

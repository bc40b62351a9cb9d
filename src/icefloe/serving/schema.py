"""The input schema of a build and validation of prediction requests (pure).

A request is validated completely before it is scored: every problem names the field, and
nothing invalid is ever scored or recorded.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from icefloe.errors import InvalidInputError

MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 64  # JSON nesting accepted in a request body (a model call needs 4)
FLOAT_MAX = sys.float_info.max
FLOAT32_MAX = 3.4028234663852886e38  # models take float32 inputs: beyond it is infinity


class RequestTooLarge(InvalidInputError):
    """A request body over the size limit."""

    http_status = 413


@dataclass(frozen=True)
class FieldSpec:
    """One input field: ``number`` or ``string`` (with the categories seen in training).

    An ``optional`` field has a declared default: a call may leave it out, and it is then
    scored as missing (a string as the unknown category, like a null) and named in the
    tracked metric ``missing_fields``. Builds declare every string field optional; numbers
    never are (no value stands for a number nobody sent).
    """

    name: str
    kind: str
    levels: tuple[str, ...] = ()
    nullable: bool = False
    optional: bool = False

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
                                   bool(f.get("nullable", False)),
                                   bool(f.get("optional", False))) for f in data["fields"]),
                   bool(data.get("allow_unknown_fields", False)), dict(data.get("extra", {})))

    @property
    def names(self) -> tuple[str, ...]:
        """Field names in model order."""
        return tuple(f.name for f in self.fields)

    @cached_property
    def optional_names(self) -> tuple[str, ...]:
        """Names of the fields a call may leave out (declared defaults), in model order."""
        return tuple(f.name for f in self.fields if f.optional)

    def example_request(self) -> dict[str, Any]:
        """A record this schema accepts, to show callers the shape: ``0.0`` for a number,
        the first training category (else ``""``) for a string, in model order."""
        return {f.name: 0.0 if f.kind == "number" else (f.levels[0] if f.levels else "")
                for f in self.fields}


def example_request(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """The example record of a schema as stored with a build (None before it has one)."""
    if not stored or "fields" not in stored:
        return None
    return InputSchema.from_dict(stored).example_request()


def _no_constants(value: str) -> float:
    raise InvalidInputError(f"{value} is not a valid number in JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def size_text(n: int) -> str:
    """A byte count as people say it: ``5 MB``, ``1.5 MB``, ``300 bytes``."""
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):g} MB"
    return f"{n:,} bytes"


def parse_body(raw: bytes, limit: int = MAX_BODY_BYTES, *, strict: bool = False) -> Any:
    """Parse a JSON body, refusing what JSON allows but the platform cannot take.

    Refused with :class:`RequestTooLarge` (413): a body over ``limit`` bytes. Refused with
    :class:`InvalidInputError` (422), naming the problem: malformed JSON or not UTF-8,
    NaN/Infinity literals, numbers of more digits than Python converts, nesting deeper than
    :data:`MAX_DEPTH`, and strings or field names holding a lone surrogate (``"\\ud800"``),
    which no store or hash can encode. ``strict`` (REST bodies) also refuses NUL characters,
    integers too large for a float and numbers that overflow to infinity anywhere in the
    document; model calls check their numbers field by field in :func:`validate_record`.

    The walk over the parsed document is skipped when the bytes show it cannot find
    anything (few brackets, no ``\\u`` escape), so a plain model call pays for one parse.
    """
    if len(raw) > limit:
        raise RequestTooLarge(f"request body is {len(raw):,} bytes; the limit is "
                              f"{size_text(limit)}")
    try:
        doc = _DECODER.decode(raw.decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"malformed JSON: {exc.msg} at line {exc.lineno} "
                                f"column {exc.colno}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInputError("request body is not UTF-8 JSON") from exc
    except RecursionError:
        raise InvalidInputError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # an integer of more digits than int() converts
        raise InvalidInputError(_long_number(raw)) from exc
    # Strict UTF-8 refused surrogates as bytes: only a \\u escape can make one now.
    strings = strict or b"\\u" in raw
    if strings or raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:
        check_document(doc, strings=strings, strict=strict)
    return doc


def _long_number(raw: bytes) -> str:
    limit = sys.get_int_max_str_digits() or 4300
    found = re.search(rb"[0-9]{%d,}" % (limit + 1), raw)
    where = f" (at byte {found.start()})" if found else ""
    return f"a number in the JSON has more than {limit} digits{where}"


def _path(parts: tuple[str | int, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out[:200] or "the body"


def _bad_text(text: str, nul: bool) -> str | None:
    """What makes ``text`` unstorable, or None: a lone surrogate, which no UTF-8 encoder
    takes (``"a lone surrogate (U+D800 at character 3)"``), or (``nul``) a NUL character,
    which Postgres text refuses."""
    if nul and "\x00" in text:
        return f"a NUL character (at character {text.index(chr(0))})"
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"a lone surrogate (U+{ord(text[exc.start]):04X} at character {exc.start})"
    return None


def check_document(doc: Any, *, depth: int = MAX_DEPTH, strings: bool = True,
                   strict: bool = True) -> None:
    """Refuse a parsed JSON document nested deeper than ``depth`` or holding (``strings``)
    a lone surrogate in a string or field name; ``strict`` (REST bodies, bound for the
    store) also refuses NUL characters, integers too large for a float and numbers that
    overflowed to infinity. The message names the field (``a.b[2].c``). Iterative, so a
    document of any depth is checked without recursion; with neither ``strings`` nor
    ``strict`` it visits containers only.
    """
    strings = strings or strict
    if type(doc) is not dict and type(doc) is not list:
        _check_scalar(doc, (), strings, strict)
        return
    if not strings:  # depth alone: containers by level, the path is found on failure only
        levels: list[tuple[Any, int]] = [(doc, 1)]
        while levels:
            container, level = levels.pop()
            if level > depth:
                break  # too deep: walk again below, with paths, to name where
            inner = level + 1
            for value in container.values() if type(container) is dict else container:
                kind = type(value)
                if kind is dict or kind is list:
                    levels.append((value, inner))
        else:
            return
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(doc, ())]
    while stack:
        container, parts = stack.pop()
        if len(parts) >= depth:
            raise InvalidInputError(f"JSON nested deeper than {depth} levels at "
                                    f"{_path(parts)}")
        items = container.items() if type(container) is dict else enumerate(container)
        for key, value in items:
            if strings and type(key) is str:
                where = _bad_text(key, strict)
                if where is not None:
                    raise InvalidInputError(f"a field name in {_path(parts)} is not valid: it "
                                            f"holds {where}: {ascii(key)[:60]}")
            kind = type(value)
            if kind is dict or kind is list:
                stack.append((value, (*parts, key)))
            elif strings:
                _check_scalar(value, (*parts, key), strings, strict)


def _check_scalar(value: Any, parts: tuple[str | int, ...], strings: bool,
                  strict: bool) -> None:
    kind = type(value)
    if kind is str:
        where = _bad_text(value, strict) if strings else None
        if where is not None:  # the value is not repeated: it may be a key
            raise InvalidInputError(f"field {_path(parts)!r} is not valid: it holds {where}")
    elif strict and kind is float and not math.isfinite(value):
        raise InvalidInputError(f"field {_path(parts)!r}: number out of range (it overflows "
                                "a floating-point number)")
    elif strict and kind is int and not -FLOAT_MAX <= value <= FLOAT_MAX:
        raise InvalidInputError(f"field {_path(parts)!r}: integer of {len(str(value))} digits "
                                "is too large for a floating-point number")


def validate_record(schema: InputSchema, record: Any, where: str = "request") -> dict[str, Any]:
    """Check one record against the schema and return the values in model order (None for
    an optional field the record leaves out).

    Raises:
        InvalidInputError: Naming the field: missing (and not optional), unknown, wrong
            type, NaN/Infinity, a number beyond the float32 range the model takes (integers
            of any size).
    """
    if not isinstance(record, dict):
        raise InvalidInputError(f"{where} must be a JSON object of field values")
    if not schema.allow_unknown_fields:
        unknown = sorted(set(record) - set(schema.names))
        if unknown:
            names = ", ".join(repr(name[:100]) for name in unknown[:20])
            raise InvalidInputError(f"{where}: unknown field(s) {names}"
                                    + (f" and {len(unknown) - 20} more" if len(unknown) > 20
                                       else ""))
    out: dict[str, Any] = {}
    for spec in schema.fields:
        if spec.name not in record:
            if spec.optional:  # its declared default: scored as missing (unknown category)
                out[spec.name] = None
                continue
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
            if not -FLOAT32_MAX <= value <= FLOAT32_MAX:  # exact for ints of any size
                raise InvalidInputError(
                    f"{where}: field {spec.name!r} is out of range: numbers must be between "
                    "-3.4e38 and 3.4e38 (the model takes 32-bit floats)")
        elif not isinstance(value, str):
            raise InvalidInputError(
                f"{where}: field {spec.name!r} must be a string, got {type(value).__name__}")
        out[spec.name] = value
    return out


@dataclass(frozen=True)
class NewFields:
    """How a build's input fields differ from the build it would replace, seen from the
    deployment's callers: fields they do not send today (new), fields they send that it
    would refuse (removed), fields whose kind changed."""

    required: tuple[FieldSpec, ...] = ()
    defaulted: tuple[FieldSpec, ...] = ()
    removed: tuple[FieldSpec, ...] = ()
    changed: tuple[FieldSpec, ...] = ()  # as the new build declares them

    @property
    def breaks_callers(self) -> bool:
        """Whether calls shaped for the serving build would be refused (422) by the new one."""
        return bool(self.required or self.removed or self.changed)

    def breaking(self) -> str:
        """What breaks callers, for an error message ("" when nothing does)."""
        parts = [f"requires new field(s) {describe_fields(self.required)}"] if self.required \
            else []
        if self.removed:
            parts.append(f"refuses field(s) callers send today {describe_fields(self.removed)}")
        if self.changed:
            parts.append(f"changes the kind of {describe_fields(self.changed)}")
        return "; ".join(parts)


def new_fields(serving: InputSchema, candidate: InputSchema) -> NewFields:
    """How ``candidate``'s input fields differ from ``serving``'s, in model order.

    ``required`` new fields have no declared default (numbers, and strings of builds made
    before defaults were declared): a call without them is refused, so every caller of today
    would be. ``defaulted`` ones are optional: a call without them is scored with the default
    (a string as the unknown category) and counted in ``missing_fields``. ``removed`` fields
    are sent by today's callers but refused as unknown by ``candidate`` (unless it allows
    unknown fields); ``changed`` ones switch between number and string.
    """
    known = {f.name: f for f in serving.fields}
    wanted = set(candidate.names)
    added = [f for f in candidate.fields if f.name not in known]
    return NewFields(
        required=tuple(f for f in added if not f.optional),
        defaulted=tuple(f for f in added if f.optional),
        removed=() if candidate.allow_unknown_fields else tuple(
            f for f in serving.fields if f.name not in wanted),
        changed=tuple(f for f in candidate.fields
                      if f.name in known and known[f.name].kind != f.kind))


def describe_fields(fields: tuple[FieldSpec, ...], limit: int = 20) -> str:
    """``'bureau_score' (number), 'channel' (string)``: names and kinds, at most ``limit``."""
    shown = ", ".join(f"{f.name[:100]!r} ({f.kind})" for f in fields[:limit])
    return shown + (f" and {len(fields) - limit} more" if len(fields) > limit else "")

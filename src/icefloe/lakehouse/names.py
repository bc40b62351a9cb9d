"""Validation of user-given names: namespaces, tables, tags.

Names end up in file paths (the warehouse layout), SQL text (DuckDB views) and URLs, so only
plain identifiers are accepted: a letter or underscore, then letters, digits or underscores.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from icefloe.errors import InvalidNameError

MAX_NAME_LENGTH = 255
_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


class TableName(NamedTuple):
    """A validated ``namespace.table`` identifier."""

    namespace: str
    table: str

    def __str__(self) -> str:
        return f"{self.namespace}.{self.table}"


def _check_length(kind: str, name: str) -> None:
    if not name:
        raise InvalidNameError(f"{kind} name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(
            f"{kind} name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
        )


def validate_namespace(name: str) -> str:
    """Return ``name`` if it is a valid namespace, else raise InvalidNameError naming it."""
    _check_length("namespace", name)
    if not _PART.fullmatch(name):
        raise InvalidNameError(
            f"invalid namespace name {name!r}: use letters, digits and underscores, "
            "starting with a letter or underscore"
        )
    return name


def parse_table_name(name: str) -> TableName:
    """Parse ``namespace.table`` and validate both parts.

    Raises:
        InvalidNameError: The name is empty, too long, has no namespace or bad characters.
    """
    _check_length("table", name)
    parts = name.split(".")
    if len(parts) != 2 or not all(parts):
        raise InvalidNameError(
            f"invalid table name {name!r}: expected namespace.table, e.g. lending.loans"
        )
    for part in parts:
        if not _PART.fullmatch(part):
            raise InvalidNameError(
                f"invalid table name {name!r}: {part!r} may only hold letters, digits and "
                "underscores, starting with a letter or underscore"
            )
    return TableName(parts[0], parts[1])


def validate_tag(name: str) -> str:
    """Return ``name`` if it is a valid tag name; ``main`` is reserved for the current branch."""
    _check_length("tag", name)
    if not _TAG.fullmatch(name) or ".." in name:
        raise InvalidNameError(
            f"invalid tag name {name!r}: use letters, digits, '_', '-' and '.'"
        )
    if name == "main":
        raise InvalidNameError("tag name 'main' is reserved for the table's current branch")
    return name

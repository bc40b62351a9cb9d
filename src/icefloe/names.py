"""Names of projects, jobs and users (pure): what a person can type and read back."""

from __future__ import annotations

import re
from typing import Any

from icefloe.errors import InvalidInputError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.\-]{0,254}")


def valid_name(kind: str, value: Any) -> str:
    """``value`` if it is a valid name of a ``kind`` (project, job, user), else 422."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidInputError(
            f"invalid {kind} name {str(value)[:100]!r}: 1-255 letters, digits, spaces, '_', "
            "'-' or '.', starting with a letter or digit"
        )
    return value

"""Rows as plain JSON-safe data, for the CLI's --json output and files written as JSON."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pyarrow is imported by whoever hands us a table
    import pyarrow as pa


def jsonable(value: Any) -> Any:
    """Make a value JSON-safe: NaN/inf -> null, decimals -> str, times -> ISO text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def arrow_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows of an Arrow table as JSON-safe dicts."""
    return [jsonable(row) for row in table.to_pylist()]

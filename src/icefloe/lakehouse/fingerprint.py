"""A content fingerprint of a set of rows: same rows (in any order) -> same fingerprint.

Used by lineage to prove that reproduced training data is exactly what a model learned
from. The scheme is our own and fixed (``fp1``), so it does not change with library versions:
every value is mapped to 64 bits (its bit pattern, or a BLAKE2b digest for strings and
decimals), mixed with splitmix64, combined per row, and the row hashes are summed modulo
2**64 so that row order does not matter while duplicates still count.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

VERSION = "fp1"
_NULL = np.uint64(0x9E3779B97F4A7C15)
_ROW_PRIME = np.uint64(0x100000001B3)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, vectorised over uint64."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _digest64(value: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(value, digest_size=8).digest(), "little")


def _column_hash(column: pa.ChunkedArray) -> np.ndarray:
    """One uint64 per value; nulls hash to a fixed sentinel."""
    col = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    t = col.type
    if pa.types.is_dictionary(t):
        col = col.dictionary_decode()
        t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or (
        pa.types.is_large_binary(t) or pa.types.is_decimal(t)
    ):
        if pa.types.is_decimal(t):
            col = pc.cast(col, pa.string())
        encoded = pc.dictionary_encode(col)
        uniques = encoded.dictionary.to_pylist()
        table = np.array(
            [_digest64(u.encode() if isinstance(u, str) else bytes(u)) for u in uniques] or [0],
            dtype=np.uint64,
        )
        idx = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        values = table[idx]
    else:
        if pa.types.is_boolean(t):
            col = pc.cast(col, pa.int8())
        elif pa.types.is_temporal(t):
            col = col.view(pa.int64() if t.bit_width == 64 else pa.int32())
        elif not (pa.types.is_integer(t) or pa.types.is_floating(t)):
            return _column_hash(pa.chunked_array([pc.cast(col, pa.string())]))
        if pa.types.is_floating(col.type):
            arr = col.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64)
            arr = np.where(np.isnan(arr), np.nan, arr).view(np.uint64)  # one NaN bit pattern
        else:
            arr = col.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64).view(np.uint64)
        values = _mix(arr)
    if col.null_count:
        mask = col.is_null().to_numpy(zero_copy_only=False)
        values = np.where(mask, _NULL, values)
    return values


def fingerprint(table: pa.Table) -> str:
    """Fingerprint of the rows and column names/types of ``table``, independent of row order."""
    schema_text = ";".join(f"{f.name}:{f.type}" for f in table.schema)
    rows = np.zeros(table.num_rows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in table.columns:
            rows = _mix(rows * _ROW_PRIME + _column_hash(column))
        total = int(rows.sum(dtype=np.uint64)) if table.num_rows else 0
    digest = hashlib.sha256(f"{VERSION}|{schema_text}|{table.num_rows}|{total}".encode())
    return f"{VERSION}:{digest.hexdigest()}"

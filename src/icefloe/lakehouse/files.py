"""Reading user files (CSV, Parquet) into Arrow, with errors that name the file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from icefloe.errors import FileProblemError
from icefloe.records import arrow_rows

SUPPORTED_SUFFIXES = (".csv", ".parquet", ".pq")

ProgressCallback = Callable[[int, int], None]


def file_format(path: Path, *, allow_json: bool = False) -> str:
    """``csv``, ``parquet`` (or ``json`` where allowed) from the file name, or FileProblemError."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if allow_json and suffix == ".json":
        return "json"
    allowed = ".csv, .parquet or .json" if allow_json else ".csv or .parquet"
    raise FileProblemError(
        f"file {path} has an unsupported extension {suffix or '(none)'}; use {allowed}"
    )


def write_file(table: pa.Table, path: str | Path, *, allow_json: bool = False) -> Path:
    """Write rows as Parquet, CSV (or a JSON list of objects), chosen by the extension."""
    p = Path(path)
    fmt = file_format(p, allow_json=allow_json)
    p.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        pq.write_table(table, p, compression="zstd")
    elif fmt == "csv":
        pacsv.write_csv(table, p)
    else:
        p.write_text(json.dumps(arrow_rows(table), indent=2) + "\n")
    return p


def read_file(path: str | Path, progress: ProgressCallback | None = None) -> pa.Table:
    """Read a CSV or Parquet file into Arrow.

    Args:
        path: The file; the format comes from its extension.
        progress: Called with (bytes_done, bytes_total) as the file is read.

    Raises:
        FileProblemError: The file is missing, unreadable, empty or not valid for its format.
    """
    p = Path(path)
    fmt = file_format(p)
    if not p.is_file():
        raise FileProblemError(f"file {p} does not exist")
    total = p.stat().st_size
    try:
        if fmt == "parquet":
            pf = pq.ParquetFile(p)
            batches = []
            for i in range(pf.num_row_groups):
                batches.append(pf.read_row_group(i))
                if progress:
                    progress(total * (i + 1) // max(pf.num_row_groups, 1), total)
            table = pa.concat_tables(batches) if batches else pf.schema_arrow.empty_table()
        else:
            with p.open("rb") as fh:
                # Arrow reads through the Python file, so its position tracks the progress.
                reader = pacsv.open_csv(fh)
                chunks = []
                for batch in reader:
                    chunks.append(batch)
                    if progress:
                        progress(min(fh.tell(), total), total)
                table = pa.Table.from_batches(chunks, schema=reader.schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FileProblemError(f"cannot parse {fmt} file {p}: {detail}") from exc
    if progress:
        progress(total, total)
    if table.num_columns == 0:
        raise FileProblemError(f"file {p} has no columns")
    return table

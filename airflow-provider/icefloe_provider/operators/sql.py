"""Run SQL on the icefloe lakehouse from Airflow (the CDW operator's role)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from icefloe_provider.compat import BaseOperator
from icefloe_provider.hooks.icefloe import IcefloeHook

MAX_XCOM_ROWS = 1000


class IcefloeSqlOperator(BaseOperator):
    """Run a query on the lakehouse through the API (the sandbox of ``icefloe sql``).

    Args:
        sql: The query (SELECT or EXPLAIN over ``namespace.table`` names; templated).
        at: Pin tables to snapshots: ``{"namespace.table": SNAPSHOT_ID or TAG}``.
        output_table: Write the whole result to this Iceberg table in one commit.
        mode: ``overwrite`` or ``append`` the output table (made if missing).
        max_rows: Rows returned to XCom (at most 1,000; the output table gets them all).
        csv_path: Also write the returned rows to this CSV file (templated).
        icefloe_conn_id: The ``icefloe`` connection.

    Returns (XCom): ``{"columns", "rows", "row_count", "truncated", "output"}``, where
    ``output`` names the table and the snapshot the result was written to.
    """

    template_fields: Sequence[str] = ("sql", "at", "output_table", "csv_path")
    template_ext: Sequence[str] = (".sql",)
    ui_color = "#e8f6f3"

    def __init__(self, *, sql: str, at: dict[str, int | str] | None = None,
                 output_table: str | None = None, mode: str = "overwrite",
                 max_rows: int = 100, csv_path: str | None = None,
                 icefloe_conn_id: str = IcefloeHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0 <= max_rows <= MAX_XCOM_ROWS:
            raise ValueError(f"max_rows must be between 0 and {MAX_XCOM_ROWS}, got {max_rows}")
        self.sql = sql
        self.at = at
        self.output_table = output_table
        self.mode = mode
        self.max_rows = max_rows
        self.csv_path = csv_path
        self.icefloe_conn_id = icefloe_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        """Run the query; log what it wrote and how many rows it found."""
        result = IcefloeHook(self.icefloe_conn_id).sql(
            self.sql, at=self.at, output_table=self.output_table, mode=self.mode,
            max_rows=self.max_rows)
        output = result.get("output")
        if output:
            self.log.info("wrote %s rows to %s (snapshot %s)", output["rows"], output["table"],
                          output["snapshot_id"])
        self.log.info("%s rows%s", result["row_count"],
                      f", the first {len(result['rows'])} returned" if result["truncated"]
                      else "")
        for row in result["rows"][:20]:
            self.log.info("%s", row)
        if self.csv_path:
            path = Path(self.csv_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, [c["name"] for c in result["columns"]])
                writer.writeheader()
                writer.writerows(result["rows"])
            self.log.info("wrote %s rows to %s", len(result["rows"]), path)
        return dict(result)

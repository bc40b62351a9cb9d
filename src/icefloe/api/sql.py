"""SQL over the lakehouse through the API (the CDW step of a pipeline).

The same sandbox as ``icefloe sql``: only SELECT/EXPLAIN, DuckDB reads only the files of the
snapshots it is given. A query may be pinned to snapshots (``at``), may write its result to
an Iceberg table in one commit (``output_table``, its namespace made if missing), and
answers at most ``max_rows`` rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from icefloe import happenings
from icefloe.api.lake import LazyLakehouse
from icefloe.auth.middleware import actor, principal_of
from icefloe.records import arrow_rows
from icefloe.store import repo
from icefloe.store.db import Database

if TYPE_CHECKING:
    from icefloe.lakehouse.names import TableName

MAX_SQL = 100_000
MAX_ROWS = 10_000

Ref = Annotated[int | Annotated[str, Field(max_length=255)], Field()]


class SqlIn(BaseModel):
    """A query, its pins, where to keep its result and how many rows to answer."""

    sql: Annotated[str, Field(min_length=1, max_length=MAX_SQL)]
    at: Annotated[dict[Annotated[str, Field(max_length=255)], Ref] | None,
                  Field(max_length=100)] = Field(
        None, description="Pin tables to snapshots: {\"namespace.table\": SNAPSHOT_ID or TAG}")
    output_table: Annotated[str | None, Field(max_length=255)] = Field(
        None, description="Write the whole result to this table (namespace.table)")
    mode: Literal["overwrite", "append"] = "overwrite"
    max_rows: Annotated[int, Field(ge=0, le=MAX_ROWS)] = Field(
        100, description="Rows to answer (the output table gets them all)")


def _readable(db: Database, request: Request, body: SqlIn
              ) -> Callable[[TableName], bool] | None:
    """Which tables the caller's query may read (None: all): those of namespaces granted to
    its projects; the others are left out of the sandbox, so a query naming one fails as if
    it did not exist. An output table needs a key that writes and a ``write`` grant (403)."""
    from icefloe.auth.principals import WRITE_ROLES
    from icefloe.errors import ForbiddenError
    from icefloe.governance.grants import EVERY_NAMESPACE, check_table, namespace_access

    principal = principal_of(request.scope)
    if principal is None or principal.is_admin:
        return None
    with db.session() as s:
        if body.output_table:
            if principal.role not in WRITE_ROLES:
                raise ForbiddenError(f"this key's role ({principal.role}) only reads; it may "
                                     "not write output_table")
            check_table(s, principal, body.output_table, write=True)
        granted = namespace_access(s, principal)
    if EVERY_NAMESPACE in granted:
        return None
    return lambda name: name.namespace in granted


def add_sql_routes(router: APIRouter, db: Database, lakehouse: LazyLakehouse) -> None:
    """Register ``POST /api/v2/sql`` on the /api/v2 router."""

    @router.post("/sql")
    def run_sql(body: SqlIn, request: Request) -> dict[str, Any]:
        from icefloe.lakehouse.names import parse_table_name

        target = parse_table_name(body.output_table) if body.output_table else None
        visible = _readable(db, request, body)
        lh = lakehouse()
        result, read = lh.sql_read(body.sql, dict(body.at or {}), visible=visible)
        who = happenings.actor_of(request.scope)
        report = {"sql": body.sql[:10_000], "via": "api"}
        output = None
        detail = f"{result.num_rows} rows"
        if body.output_table is not None and target is not None:
            from icefloe.lakehouse.tables import table_exists

            lh.create_namespace(target.namespace)  # a report's namespace: made on first use
            exists = table_exists(lh.catalog, target)
            written = lh.write(body.output_table, result,
                               mode=body.mode if exists else "create", inputs=read, actor=who,
                               happening="sql.report", subject=report)
            output = {"table": body.output_table, "mode": body.mode, "created": not exists,
                      "rows": written.rows,
                      "snapshot_id": written.snapshot.snapshot_id}
            detail += f" to {body.output_table} (snapshot {written.snapshot.snapshot_id})"
        else:
            happenings.emit(lambda: happenings.Happening(
                "table.read", actor=who, inputs=read, subject=report))
        shown = result.slice(0, body.max_rows)
        with db.session() as s:
            repo.audit(s, actor(request.scope), "sql.run", body.output_table or "sql", "ok",
                       detail)
        return {"columns": [{"name": f.name, "type": str(f.type)} for f in result.schema],
                "rows": arrow_rows(shown), "row_count": result.num_rows,
                "truncated": shown.num_rows < result.num_rows, "output": output}

"""The lakehouse's tables under /api/v2/tables: list, describe, history, schema (and how it
changed between two snapshots), rollback with a dry run.

The rules are those of SQL through the API: a caller sees the tables of the namespaces
granted to its projects (admins and a ``*`` grant: all of them); any other table answers
exactly what a table that does not exist answers (404), so names do not leak. A rollback
needs a key that writes and a ``write`` grant; it is the call ``icefloe table rollback``
makes (so happenings and lineage record it alike), audited as ``table.rollback``.

Nothing heavy is imported up front (the app stays light to import): PyIceberg comes with
the lakehouse, on the first call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from icefloe import happenings
from icefloe.api.lake import LazyLakehouse
from icefloe.api.projects import PAGE_SIZE, PAGE_TOKEN
from icefloe.auth.middleware import actor, principal_of
from icefloe.errors import ForbiddenError, InvalidNameError, NoSuchTableError, NotFoundError
from icefloe.paging import check_page_size, offset_of, token_for
from icefloe.store import repo
from icefloe.store.db import Database
from icefloe.timefmt import iso_utc

if TYPE_CHECKING:
    from pyiceberg.table import Table
    from pyiceberg.table.snapshots import Snapshot

    from icefloe.lakehouse.names import TableName

MAX_REF = 255
REF_HELP = "a snapshot id, a unique prefix of one (6+ digits) or a tag"


def _id_as_text(value: object) -> object:
    """A snapshot id given as a JSON number becomes its digits: a reference is text (a tag
    or a prefix), and one type gives one plain error message (``to: ...``)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


# A snapshot id (number or text), a unique id prefix or a tag.
Ref = Annotated[str, Field(min_length=1, max_length=MAX_REF), BeforeValidator(_id_as_text),
                WithJsonSchema({"anyOf": [{"type": "integer"},
                                          {"type": "string", "minLength": 1,
                                           "maxLength": MAX_REF}]})]


class RollbackIn(BaseModel):
    """Which snapshot to make current, and whether only to say what that would change."""

    model_config = ConfigDict(extra="forbid")  # a misspelt dry_run must not roll back

    to: Ref = Field(..., description=f"The snapshot to make current: {REF_HELP}")
    keep_schema: bool = Field(
        False, description="Move only the snapshot; by default the snapshot's own schema "
                           "becomes the current schema again")
    dry_run: bool = Field(False, description="Say what would change; change nothing")


def _parse(name: str, field: str = "name") -> TableName:
    """``namespace.table``, else 422 naming the field."""
    from icefloe.lakehouse.names import parse_table_name

    try:
        return parse_table_name(name)
    except InvalidNameError as exc:
        raise InvalidNameError(f"{field}: {exc.message}") from None


def _missing(name: TableName) -> NoSuchTableError:
    """The one answer for a table that does not exist and for one the caller may not read."""
    return NoSuchTableError(f"table {name} does not exist")


def _visible_namespaces(db: Database, request: Request) -> set[str] | None:
    """The namespaces whose tables the caller sees (None: every namespace)."""
    from icefloe.governance.grants import EVERY_NAMESPACE, namespace_access

    principal = principal_of(request.scope)
    if principal is None or principal.is_admin:
        return None
    with db.session() as s:
        granted = namespace_access(s, principal)
    return None if EVERY_NAMESPACE in granted else set(granted)


def _fields_at(table: Table, snap: Snapshot | None) -> tuple[int, list[dict[str, object]]]:
    """The schema a snapshot was written with (the current one for no snapshot, or for one
    that records none): its id and fields."""
    from icefloe.lakehouse.schema import schema_fields

    schema = table.schemas().get(snap.schema_id) if snap and snap.schema_id is not None \
        else None
    if schema is None:  # (not `or`: a schema with no fields is falsy)
        schema = table.schema()
    return schema.schema_id, schema_fields(schema)


def _summary(name: TableName, table: Table) -> dict[str, Any]:
    """A table as the list shows it."""
    current = table.current_snapshot()
    props = current.summary.additional_properties if current and current.summary else {}
    return {"name": str(name), "namespace": name.namespace,
            "current_snapshot_id": current.snapshot_id if current else None,
            "rows": int(props.get("total-records", 0)),
            "snapshots": len(table.metadata.snapshots),
            "last_updated": iso_utc(table.metadata.last_updated_ms)}


def add_table_routes(router: APIRouter, db: Database, lakehouse: LazyLakehouse) -> None:
    """Register the /api/v2/tables routes."""

    def open_table(request: Request, name: str, *, write: bool = False
                   ) -> tuple[TableName, Table]:
        """The table, if the caller may read it (and write it, with ``write``).

        Raises:
            InvalidNameError: Not ``namespace.table`` (422 naming ``name``).
            NoSuchTableError: Missing, or not readable by the caller: the same answer.
            ForbiddenError: Readable, but the caller may not write it.
        """
        from icefloe.auth.principals import WRITE_ROLES
        from icefloe.errors import NoSuchNamespaceError
        from icefloe.governance.grants import check_table

        tname = _parse(name)
        principal = principal_of(request.scope)
        with db.session() as s:
            try:  # reading first: a table the caller cannot read is missing, not forbidden
                check_table(s, principal, str(tname))
            except NotFoundError:
                raise _missing(tname) from None
            if write:
                if principal is not None and principal.role not in WRITE_ROLES:
                    raise ForbiddenError(f"this key's role ({principal.role}) only reads")
                check_table(s, principal, str(tname), write=True)
        try:
            return tname, lakehouse().table(str(tname))
        except (NoSuchTableError, NoSuchNamespaceError):
            raise _missing(tname) from None

    @router.get("/tables")
    def list_tables(request: Request,
                    namespace: str | None = Query(None, max_length=255,
                                                  description="Only this namespace"),
                    page_size: int = PAGE_SIZE,
                    page_token: str | None = PAGE_TOKEN) -> dict[str, Any]:
        """Tables of the namespaces granted to the caller's projects, by name; each with its
        current snapshot, snapshot count and last change."""
        from icefloe.errors import NoSuchNamespaceError
        from icefloe.lakehouse.catalog import list_table_names, load_table
        from icefloe.lakehouse.names import validate_namespace

        check_page_size(page_size)
        offset = offset_of(page_token)
        namespace = namespace or None  # ?namespace= (empty) lists every namespace
        if namespace is not None:
            try:
                validate_namespace(namespace)
            except InvalidNameError as exc:
                raise InvalidNameError(f"namespace: {exc.message}") from None
        visible = _visible_namespaces(db, request)
        catalog = lakehouse().catalog
        names: list[TableName] = []
        # A namespace not granted lists as empty as one that does not exist.
        if visible is None or namespace is None or namespace in visible:
            try:
                names = list_table_names(catalog, namespace)
            except NoSuchNamespaceError:
                names = []
            if visible is not None:
                names = [n for n in names if n.namespace in visible]
        page = names[offset:offset + page_size]
        tables = []
        for name in page:  # only this page's metadata is read
            try:
                tables.append(_summary(name, load_table(catalog, name)))
            except (NoSuchTableError, NoSuchNamespaceError):
                continue  # dropped since it was listed
        more = len(names) > offset + page_size
        return {"tables": tables, "next_page_token": token_for(offset + page_size) if more
                else ""}

    @router.get("/tables/{name}")
    def get_table(name: str, request: Request) -> dict[str, Any]:
        """A table: its current snapshot, current schema, tags and snapshot count."""
        from icefloe.lakehouse.schema import schema_fields
        from icefloe.lakehouse.snapshots import list_tags, snapshot_info

        tname, table = open_table(request, name)
        current = table.current_snapshot()
        schema = table.schema()
        return {"name": str(tname), "namespace": tname.namespace,
                "current_snapshot": snapshot_info(table, current).to_dict() if current
                else None,
                "schema_id": schema.schema_id, "fields": schema_fields(schema),
                "tags": list_tags(table), "snapshots": len(table.metadata.snapshots),
                "last_updated": iso_utc(table.metadata.last_updated_ms)}

    @router.get("/tables/{name}/snapshots")
    def table_snapshots(name: str, request: Request, page_size: int = PAGE_SIZE,
                        page_token: str | None = PAGE_TOKEN) -> dict[str, Any]:
        """The table's history, newest first (rolled-back snapshots included), each with
        who wrote it (``user``, ``run_id``: None where the snapshot does not say)."""
        from icefloe.lakehouse.snapshots import describe, oldest_first
        from icefloe.lakehouse.tables import writer_of

        check_page_size(page_size)
        offset = offset_of(page_token)
        tname, table = open_table(request, name)
        snaps = oldest_first(table)[::-1]
        page = snaps[offset:offset + page_size]
        rows = [{**info.to_dict(), **writer_of(snap)}
                for snap, info in zip(page, describe(table, page), strict=True)]
        more = len(snaps) > offset + page_size
        return {"table": str(tname), "snapshots": rows,
                "next_page_token": token_for(offset + page_size) if more else ""}

    @router.get("/tables/{name}/schema")
    def table_schema(name: str, request: Request,
                     snapshot: str | None = Query(
                         None, min_length=1, max_length=MAX_REF,
                         description=f"The snapshot whose schema to show ({REF_HELP}); "
                                     "default the current one"),
                     compare: str | None = Query(
                         None, min_length=1, max_length=MAX_REF,
                         description=f"Also say how the schema differs in this snapshot "
                                     f"({REF_HELP})")) -> dict[str, Any]:
        """The schema a snapshot was written with; with ``compare``, how the fields differ
        from that snapshot's to the other's (``diff``: added, removed, changed)."""
        from icefloe.lakehouse.schema import schema_diff
        from icefloe.lakehouse.snapshots import find_snapshot

        tname, table = open_table(request, name)
        snap = find_snapshot(table, snapshot) if snapshot is not None \
            else table.current_snapshot()
        schema_id, fields = _fields_at(table, snap)
        out: dict[str, Any] = {"table": str(tname),
                               "snapshot_id": snap.snapshot_id if snap else None,
                               "schema_id": schema_id, "fields": fields}
        if compare is not None:
            other = find_snapshot(table, compare)
            out["diff"] = {"from": snap.snapshot_id if snap else None,
                           "to": other.snapshot_id,
                           **schema_diff(fields, _fields_at(table, other)[1])}
        return out

    @router.post("/tables/{name}:rollback", operation_id="rollback_table")
    def rollback_table(name: str, body: RollbackIn, request: Request) -> dict[str, Any]:
        """Make a snapshot current again (and the schema it was written with, unless
        ``keep_schema``); history is kept. With ``dry_run``: what would change, and
        nothing changes. Needs a key that writes and a ``write`` grant on the namespace."""
        from icefloe.lakehouse.snapshots import describe, plan_rollback

        tname, table = open_table(request, name, write=True)
        if body.dry_run:
            plan = plan_rollback(table, body.to, keep_schema=body.keep_schema)
            before, after = (plan.previous, plan.target)
            infos = describe(table, [after] if before is None else [after, before])
            to_info, from_info = infos[0], (infos[1] if before is not None else None)
            return {"table": str(tname), "dry_run": True,
                    "from": from_info.to_dict() if from_info else None,
                    "to": to_info.to_dict(), "kind": plan.kind,
                    "rows_before": (from_info.total_rows or 0) if from_info else 0,
                    "rows_after": to_info.total_rows or 0,
                    "schema_changed": plan.schema_after != plan.schema_before,
                    "columns_removed": list(plan.columns_removed),
                    "columns_restored": list(plan.columns_restored)}
        done = lakehouse().rollback(str(tname), body.to, keep_schema=body.keep_schema,
                                    actor=happenings.actor_of(request.scope))
        with db.session() as s:
            repo.audit(s, actor(request.scope), "table.rollback", f"table/{tname}", "ok",
                       f"from {done.previous_snapshot_id} to {done.snapshot.snapshot_id}")
        return {**done.to_dict(), "kind": done.kind}

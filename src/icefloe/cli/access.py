"""``icefloe access TABLE``: who may read a table now and who read it over a period.

With ``--url`` (or ``$ICEFLOE_URL``) the control plane answers; without, the home's platform
DB (a laptop with no server). ``deployment:ID`` or ``model:NAME`` report model calls instead.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from icefloe.cli.output import console, note, print_json, print_rows
from icefloe.cli.remote import JSON, KEY, KEY_FILE, URL, connect
from icefloe.cli.state import state

SHOWN_CHANGES = 20


def access(
    ctx: typer.Context,
    target: str = typer.Argument(..., metavar="TABLE",
                                 help="namespace.table (or deployment:ID, model:NAME)."),
    since: str | None = typer.Option(None, "--since", help="Start: ISO 8601 time or a span "
                                     "before now (30m, 12h, 7d, 2w); default 30 days ago."),
    until: str | None = typer.Option(None, "--until", help="End: ISO 8601 time, a span "
                                     "before now, or now (the default)."),
    url: str | None = URL, api_key: str | None = KEY, api_key_file: Path | None = KEY_FILE,
    as_json: bool = JSON,
) -> None:
    """Who may read a table now (grants) and who read it over a period.

    Access now: platform admins, and the members of every project its namespace is granted
    to (owners and editors write where the grant is write; viewers only read). Reads: per
    user, how many, first and last, how (SQL, training, ETL...), the snapshots read and the
    job runs that read them. Then the table's changes."""
    from icefloe.governance.period import period

    names = ("--since", "--until")
    period(since, until, datetime.now(UTC), names=names)  # named here, before any request
    if url:
        kind, _, name = target.partition(":")
        with connect(url, api_key, api_key_file) as client:
            if kind == "deployment":
                result = client.deployment_access(name, since, until)
            elif kind == "model":
                result = client.model_access(name, since, until)
            else:
                result = client.table_access(target.removeprefix("table:"), since, until)
    else:
        from icefloe.governance.access import table_report
        from icefloe.store.db import Database

        settings = state(ctx).home_settings()
        db = Database(settings.resolved_platform_db_url)
        try:
            result = table_report(db, settings, target, since, until, names=names)
        finally:
            db.dispose()
    if as_json:
        print_json(result)
    else:
        show(result)


def _through(row: dict[str, Any]) -> str:
    ways = ["platform admin"] if row["admin"] else []
    for p in row["projects"]:
        grant = f", grant {p['grant']} on {p['namespace']}" if p.get("namespace") else ""
        ways.append(f"{p['project']} ({p['role']}{grant})")
    return "; ".join(ways)


def _joined(values: list[Any]) -> str:
    return ", ".join(str(v) for v in values)


def show(result: dict[str, Any]) -> None:
    """Print a report as Rich tables: access now, then reads (or calls), then changes."""
    what = result["resource"]
    print_rows([{**r, "through": _through(r)} for r in result["access"]],
               ["user", "access", "through"], title=f"access now to {what}")
    span = f"{result['since']} .. {result['until']}"
    if "readers" in result:
        rows, label = result["readers"], "reads"
        columns = ["user", "reads", "first", "last", "via", "snapshot_ids", "run_ids",
                   "sources"]
    else:
        rows, label = result["callers"], "calls"
        columns = ["user", "calls", "first", "last", "deployments", "run_ids"]
    if rows:
        print_rows([{k: _joined(v) if isinstance(v, list) else v for k, v in r.items()}
                    for r in rows], columns, title=f"{label} of {what}, {span}")
    else:
        console.print(f"no {label} of {what}, {span}")
    if result.get("failed_calls"):
        note(f"{result['failed_calls']:,} calls answered with an error in the period")
    changes = result["changes"]
    if changes:
        shown = changes[:SHOWN_CHANGES]
        more = len(changes) > len(shown) or result.get("changes_truncated")
        print_rows(shown, ["at", "user", "action", "snapshot_id", "outcome", "recorded_by"],
                   title=f"changes of {what}, newest first"
                         + (f" (the last {len(shown)}; --json for more)" if more else ""))
    days = result.get("retention_days") or 0
    since = datetime.fromisoformat(result["since"])
    if days and since < datetime.now(UTC) - timedelta(days=days):
        note(f"reads and changes are kept {days} days: older ones were deleted")


def register(app: typer.Typer) -> None:
    """Add ``icefloe access`` to the root command."""
    app.command("access")(access)

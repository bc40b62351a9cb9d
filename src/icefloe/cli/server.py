"""``icefloe up``: the control plane (REST API + job runner) in one process."""

from __future__ import annotations

import typer

from icefloe.cli.output import err_console, warning
from icefloe.cli.state import state
from icefloe.errors import ConfigError

JOBS_REACH_PLATFORM = (
    "job runs get the credentials of the database the platform DB is in (keys, grants): a "
    "job's code could change them. Give jobs a role granted only the icefloe_catalog and "
    "icefloe_mlflow schemas with job_database_url (or the platform its own "
    "platform_db_url)")


def up(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="Bind address (default 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", help="Port (default 8080)."),
    max_concurrent: int = typer.Option(4, "--max-concurrent", help="Job runs at once."),
) -> None:
    """Run the API and the job runner until SIGINT/SIGTERM (running jobs are stopped)."""
    import uvicorn

    from icefloe.api.app import create_app
    from icefloe.jobs.runner import Runner
    from icefloe.store.db import Database

    settings = state(ctx).settings
    bind_host = host or settings.api_host
    bind_port = port or settings.api_port
    url = settings.node_url.rstrip("/") or f"http://{bind_host}:{bind_port}"
    if settings.multi_node:
        from icefloe.cluster.requirements import problems

        found = problems(settings)
        if bind_host in ("0.0.0.0", "::") and not settings.node_url:  # noqa: S104
            found.append("multi_node with a wildcard bind address needs node_url: the URL "
                         "the other nodes reach this one at")
        if found:
            raise ConfigError("; ".join(found))
    db = Database(settings.resolved_platform_db_url)
    runner = Runner(db, settings, max_concurrent=max_concurrent, api_url=url)
    app = create_app(settings, db=db, runner=runner, api_url=url)
    err_console.print(f"icefloe control plane listening on {url}/api/v2, web UI {url}/ui/ "
                      f"(home {settings.home.resolve()})"
                      + (f", node {runner.instance} of several" if settings.multi_node
                         else ""), soft_wrap=True)
    if settings.jobs_reach_platform_db():
        warning(JOBS_REACH_PLATFORM)
    uvicorn.run(app, host=bind_host, port=bind_port, log_level="warning", access_log=False)


def register(app: typer.Typer) -> None:
    """Add ``up`` to the root app."""
    app.command("up")(up)

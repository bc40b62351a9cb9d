"""``icefloe up``: the control plane (REST API + job runner) in one process."""

from __future__ import annotations

import typer

from icefloe.cli.output import err_console
from icefloe.cli.state import state


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
    url = f"http://{bind_host}:{bind_port}"
    db = Database(settings.resolved_platform_db_url)
    runner = Runner(db, settings, max_concurrent=max_concurrent, api_url=url)
    app = create_app(settings, db=db, runner=runner, api_url=url)
    err_console.print(f"icefloe control plane listening on {url}/api/v2, web UI {url}/ui/ "
                      f"(home {settings.home.resolve()})", soft_wrap=True)
    uvicorn.run(app, host=bind_host, port=bind_port, log_level="warning", access_log=False)


def register(app: typer.Typer) -> None:
    """Add ``up`` to the root app."""
    app.command("up")(up)

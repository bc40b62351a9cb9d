"""icefloe's web UI: server-rendered pages on the control plane's port, under ``/ui``.

Pages follow one chain end to end: job run -> table snapshot -> model version -> build ->
deployment -> predictions and monitoring. They are plain HTML (usable without JavaScript);
one small script, served from here like the stylesheet, tails a running job's log. Nothing
is loaded from any other origin.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router

ASSETS = {"ui.css": "text/css; charset=utf-8", "ui.js": "text/javascript; charset=utf-8"}


async def asset(request: Request) -> Response:
    """A file of the UI's own (a fixed list: no path from the request reaches the disk)."""
    name = request.path_params["name"]
    if name not in ASSETS:
        return Response("no such asset", status_code=404, media_type="text/plain")
    body = resources.files("icefloe.ui").joinpath("static", name).read_bytes()
    return Response(body, media_type=ASSETS[name],
                    headers={"cache-control": "public, max-age=3600"})


def router() -> Router:
    """Every page of the UI."""
    from icefloe.ui.pages import deployments, jobs, models, people, tables

    routes = [Route("/ui/static/{name}", asset), *people.ROUTES, *jobs.ROUTES,
              *tables.ROUTES, *models.ROUTES, *deployments.ROUTES]
    return Router(routes=routes)

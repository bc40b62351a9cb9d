"""Every route of the app is authenticated unless it is on the public list (in-process)."""

import asyncio
from pathlib import Path

import httpx

from icefloe.api.app import create_app
from icefloe.auth.middleware import PUBLIC_PATHS
from icefloe.config import load_settings


def test_every_route_needs_a_key_unless_public(tmp_path: Path) -> None:
    app = create_app(load_settings(env={}, home=tmp_path), start_runner=False)
    # The OpenAPI document lists every API route with its methods; add the document itself.
    routes = [(path, method.upper()) for path, ops in app.openapi()["paths"].items()
              for method in ops]
    routes.append(("/api/v2/openapi.json", "GET"))
    assert len(routes) >= 18

    async def probe() -> list[tuple[str, str, int]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            out = []
            for path, method in routes:
                concrete = path.replace("{", "x").replace("}", "")
                r = await client.request(method, concrete)
                out.append((method, path, r.status_code))
            return out

    for method, path, status in asyncio.run(probe()):
        if path in PUBLIC_PATHS:
            assert status == 200, (method, path)
        else:
            assert status == 401, (method, path, status)

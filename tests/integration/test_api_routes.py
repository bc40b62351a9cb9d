"""Every route of the app is authenticated unless it is on the public list (in-process)."""

import asyncio
from pathlib import Path

import httpx

from icefloe.api.app import create_app
from icefloe.auth.middleware import PUBLIC_PATHS
from tests.postgres import home_settings


def test_every_route_needs_a_key_unless_public(tmp_path: Path) -> None:
    # Never slowed down: every probe here is refused on purpose.
    app = create_app(home_settings(tmp_path, auth_failures_per_minute=0),
                     start_runner=False)
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
        if path in PUBLIC_PATHS:  # answered without a key (the token route wants a form)
            assert status in (200, 422), (method, path, status)
        else:
            assert status == 401, (method, path, status)


def test_slash_redirects_are_paths_and_two_authorization_headers_are_refused(
        tmp_path: Path) -> None:
    from icefloe.auth import keys as api_keys

    app = create_app(home_settings(tmp_path), start_runner=False)
    with app.state.db.session() as s:
        _, key = api_keys.create_api_key(s, "admin", "admin")

    async def probe() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            good = {"Authorization": f"Bearer {key}"}
            return [
                await client.get("/api/v2/projects/?page_size=5",
                                 headers={**good, "Host": "evil.example"}),
                await client.get("/api/v2/projects", headers=[
                    ("Authorization", f"Bearer {key}"), ("Authorization", "Bearer other")]),
                await client.post("/model", json={"accessKey": "m", "request": {}}, headers=[
                    ("Authorization", f"Bearer {key}"), ("Authorization", "Bearer other")]),
                await client.get("/api/v2/no/such/route", headers=good),
            ]

    slash, two, two_model, missing = asyncio.run(probe())
    assert slash.status_code == 307
    assert slash.headers["location"] == "/api/v2/projects?page_size=5"  # a path, no host
    assert two.status_code == 422 and "more than one Authorization" in two.text
    assert two_model.status_code == 422 and "more than one Authorization" in two_model.text
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "NotFoundError"

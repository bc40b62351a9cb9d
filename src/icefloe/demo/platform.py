"""The demo's control plane (``icefloe up`` inside the demo process), its project and jobs,
its webhook receiver and the prober that calls the endpoint while the pipelines run."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from icefloe.config import Settings

PROJECT_DIR = Path(__file__).with_name("project")
PROJECT = "lending-demo"


# The demo's people: ana (data scientist, owns the project, runs the pipeline) and raj
# (analyst: views the project, calls the model, reads the table with SQL).
PEOPLE = {"ana": "editor", "raj": "viewer"}


class ControlPlane:
    """A control plane served by uvicorn on 127.0.0.1 in a thread of this process, with an
    admin key and a key for each of the demo's people, all living only as long as it runs.
    """

    def __init__(self, settings: Settings, port: int = 0) -> None:
        from icefloe.auth import keys as api_keys
        from icefloe.store.db import Database

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # 0: any free port
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = Database(settings.resolved_platform_db_url)
        with self.db.session() as s:
            row, self.key = api_keys.create_api_key(s, "demo", "admin")
            self.key_ids = [row.id]
            self.keys: dict[str, str] = {}
            for person, role in PEOPLE.items():
                row, self.keys[person] = api_keys.create_api_key(s, person, role)
                self.key_ids.append(row.id)
        # The demo's webhook receiver is on 127.0.0.1; its rules are evaluated on demand.
        self.settings = dataclasses.replace(settings, webhook_allowlist="127.0.0.1",
                                            monitor_interval=0)

    def __enter__(self) -> ControlPlane:
        import uvicorn

        from icefloe.api.app import create_app
        from icefloe.jobs.runner import Runner

        app = create_app(self.settings, db=self.db,
                         runner=Runner(self.db, self.settings, api_url=self.url),
                         api_url=self.url)
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"the control plane did not start on port {self.port}")
            time.sleep(0.05)
        return self

    def sign_in_links(self) -> dict[str, str]:
        """A one-time web UI sign-in link for the demo's admin and each of its people."""
        from icefloe.auth.sessions import issue_sign_in_code

        names = ["demo", *PEOPLE]
        with self.db.session() as s:
            return {name: f"{self.url}/ui/signin?code={issue_sign_in_code(s, key_id)}"
                    for name, key_id in zip(names, self.key_ids, strict=True)}

    def serve_ui(self, console: Any) -> None:
        """Keep serving until Ctrl-C or SIGTERM, after printing the UI's sign-in links."""
        import signal

        stop = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        roles = {"demo": "admin", **PEOPLE}
        console.print(f"web UI: {self.url}/ui/", markup=False, soft_wrap=True)
        for name, link in self.sign_in_links().items():
            console.print(f"  sign in once as {name} ({roles[name]}): {link}", markup=False,
                          soft_wrap=True)
        console.print("serving until Ctrl-C; the demo's keys and sessions end with it",
                      markup=False)
        try:
            while not stop.wait(0.5) and self.thread.is_alive():
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)

    def __exit__(self, *exc: object) -> None:
        from icefloe.auth import keys as api_keys

        self.server.should_exit = True
        self.thread.join(timeout=60)
        with self.db.session() as s:
            for key_id in self.key_ids:  # the demo's keys die with the demo
                api_keys.revoke_api_key(s, key_id)
        self.db.dispose()


def copy_scripts(folder: Path) -> None:
    """Put the demo's job scripts into its project folder (projects live under the root)."""
    for script in sorted(PROJECT_DIR.glob("*.py")):
        target = folder / script.name
        target.write_bytes(script.read_bytes())
        target.chmod(0o640)  # readable by the job user's group when jobs run as another user


def ensure_jobs(client: Any, project_id: str, jobs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Create the jobs, or bring an earlier run's jobs to these fields; returns name -> id."""
    existing = {j["name"]: j for j in client.list_jobs(project_id)}
    ids = {}
    for name, fields in jobs.items():
        if name in existing:
            ids[name] = client.update_job(project_id, existing[name]["id"], **fields)["id"]
        else:
            ids[name] = client.create_job(project_id, name, fields.pop("script"),
                                          **fields)["id"]
    return ids


class Receiver:
    """The demo's webhook endpoint on 127.0.0.1: keeps each alert and checks its signature."""

    def __init__(self, secret: str) -> None:
        self.alerts: list[tuple[dict[str, Any], bool]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                expected = "sha256=" + hmac.new(secret.encode(), body,
                                                hashlib.sha256).hexdigest()
                signed = hmac.compare_digest(self.headers.get("X-Icefloe-Signature", ""),
                                             expected)
                outer.alerts.append((json.loads(body), signed))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop listening."""
        self.server.shutdown()
        self.server.server_close()


@dataclasses.dataclass
class Availability:
    """What the prober saw."""

    calls: int = 0
    answered: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)
    versions: dict[int, int] = dataclasses.field(default_factory=dict)  # version -> calls

    @property
    def percent(self) -> float:
        """Answered calls in percent (100 with no calls)."""
        return 100.0 * self.answered / self.calls if self.calls else 100.0


class Prober:
    """Calls the endpoint one call after another (``pause`` seconds apart) with records in
    the format callers used before the pipelines ran, counting every answer.

    Args:
        url: The control plane.
        api_key: A key that may call the model.
        access_key: The deployment's access key.
        records: Old-format records, sent round-robin.
        deployment_id: Whose serving version to follow.
        pause: Seconds between calls.
    """

    def __init__(self, url: str, api_key: str, access_key: str,
                 records: list[dict[str, Any]], deployment_id: str, pause: float = 0.01) -> None:
        self.seen = Availability()
        self._args = (url, api_key, access_key, records, deployment_id, pause)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-prober", daemon=True)

    def start(self) -> Prober:
        """Start calling."""
        self._thread.start()
        return self

    def stop(self) -> Availability:
        """Stop calling; what was seen."""
        self._stop.set()
        self._thread.join(timeout=30)
        return self.seen

    def _run(self) -> None:
        url, api_key, access_key, records, deployment_id, pause = self._args
        with httpx.Client(base_url=url, timeout=30,
                          headers={"Authorization": f"Bearer {api_key}"}) as http:
            version = http.get(f"/api/v2/models/deployments/{deployment_id}").json()[
                "model_version"]
            checked = time.monotonic()
            i = 0
            while not self._stop.is_set():
                record = records[i % len(records)]
                i += 1
                self.seen.calls += 1
                try:
                    r = http.post("/model", json={"accessKey": access_key, "request": record})
                    ok = r.status_code == 200 and r.json().get("success") is True
                    why = f"HTTP {r.status_code}: {r.text[:200]}"
                except httpx.HTTPError as exc:
                    ok, why = False, f"{type(exc).__name__}: {exc}"
                if ok:
                    self.seen.answered += 1
                    self.seen.versions[version] = self.seen.versions.get(version, 0) + 1
                elif len(self.seen.failures) < 20:
                    self.seen.failures.append(why)
                if time.monotonic() - checked > 1.0:  # which version answers, once a second
                    checked = time.monotonic()
                    try:
                        version = http.get(f"/api/v2/models/deployments/{deployment_id}"
                                           ).json()["model_version"]
                    except (httpx.HTTPError, ValueError, KeyError) as exc:
                        # Not a model call: the prober goes on; the reason is kept.
                        if len(self.seen.failures) < 20:
                            self.seen.failures.append(f"version lookup: {exc}")
                self._stop.wait(pause)

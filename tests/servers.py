"""Real servers for tests: `icefloe up` on a free port of 127.0.0.1, in its own home."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from tests.conftest import open_to_jobs, run_cli
from tests.postgres import home_settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A running `icefloe up` in its own home, with an admin client."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/v2"
        self.proc: subprocess.Popen[bytes] | None = None
        open_to_jobs(home.parent)
        home_settings(home)  # on the stores under test
        init = run_cli(["init", "--json"], home, check=True)
        self.key = json.loads(init.stdout)["api_key"]
        self.client = httpx.Client(base_url=self.url, timeout=30,
                                   headers={"Authorization": f"Bearer {self.key}"})

    def start(self) -> None:
        env = {**os.environ, "ICEFLOE_HOME": str(self.home)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "icefloe.cli.main", "up", "--port", str(self.port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("control plane did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


class Receiver:
    """A webhook endpoint on 127.0.0.1 that keeps what it receives."""

    def __init__(self) -> None:
        self.received: list[tuple[dict, str, bytes]] = []
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, headers) of each POST
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((self.path, dict(self.headers.items())))
                outer.received.append((json.loads(body), self.headers["X-Icefloe-Signature"],
                                       body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{self.base_url}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def states(self) -> list[tuple[str, str]]:
        return [(p["rule"], p["state"]) for p, _, _ in self.received]

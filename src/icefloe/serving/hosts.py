"""Deployments on a few shared model hosts: the supervisor's part when ``model_hosts`` > 0.

Each deployment is attached to ``replicas`` of the ``model_hosts`` host processes (the
least used ones; see :mod:`icefloe.serving.host`), which load its build on its first call and
unload it when idle, so many small models share a few processes. :class:`ModelHosts` offers
the same methods as :class:`~icefloe.serving.supervisor.Supervisor`, so deployments, the
gateway and the multi-node spreader use it unchanged: a new build is attached and loaded
(proving it runs) under a provisional key before calls move to it, and a host that dies is
started again with every deployment it had.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from icefloe.errors import NotFoundError, UnavailableError
from icefloe.serving.protocol import ATTACH, DETACH, exchange, ping
from icefloe.serving.supervisor import Replica, ReplicaNotReady, Route, Supervisor

log = logging.getLogger(__name__)


def _pending(deployment_id: str) -> str:
    return f"pending:{deployment_id}"


class ModelHosts(Supervisor):
    """Serves deployments from ``hosts`` shared host processes.

    Args:
        home: The home (host logs go to ``logs/replicas``).
        hosts: How many host processes.
        idle_seconds: A model is unloaded after this long without a call.
    """

    def __init__(self, home: Path, hosts: int, *, idle_seconds: float = 600.0,
                 ready_timeout: float = 60.0, check_every: float = 2.0) -> None:
        super().__init__(home, ready_timeout=ready_timeout)
        self.count = hosts
        self.idle_seconds = idle_seconds
        self.check_every = check_every
        self._hosts: list[Replica | None] = [None] * hosts
        self._attached: list[dict[str, str]] = [{} for _ in range(hosts)]  # key hash -> path
        self._placed: dict[str, list[int]] = {}  # deployment -> host indexes
        self._keys: dict[str, str] = {}  # deployment -> access-key hash
        self._staged: dict[str, tuple[list[int], str, str]] = {}  # pending: hosts, build, path
        self._status: list[dict[str, Any]] = [{} for _ in range(hosts)]
        self._host_lock = threading.RLock()  # held across a host's start and attachments

    # -- hosts --------------------------------------------------------------------------------

    def _host(self, i: int) -> Replica:
        """Host ``i``, started (with everything attached to it) if it is not running."""
        with self._host_lock:
            host = self._hosts[i]
            if host is not None and host.alive():
                return host
            if self._stop.is_set():
                raise ReplicaNotReady("the control plane is stopping")
            self.log_dir.mkdir(parents=True, exist_ok=True)
            if not self._sockets:
                self._sockets = tempfile.mkdtemp(prefix="icefloe-hosts-")
            rid = f"host{i}-{os.getpid()}-{next(self._counter)}"
            sock = os.path.join(self._sockets, f"{rid}.sock")
            log_path = self.log_dir / f"{rid}.log"
            with open(log_path, "ab") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "icefloe.serving.host", "--socket", sock,
                     "--parent", str(os.getpid()), "--idle-seconds", str(self.idle_seconds)],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True)
            fresh = Replica(rid, "host", sock, proc, log_path)
            try:
                self._wait_ready([fresh], f"model host {i}")
            except BaseException:
                self._terminate([fresh], grace=1.0)  # never left running unknown
                raise
            fresh.ready = True
            for key_hash, path in list(self._attached[i].items()):  # a restart: all it had
                try:
                    self._send(fresh, ATTACH, {"key_hash": key_hash, "build": path})
                except (OSError, ReplicaNotReady):
                    log.exception("model host %d could not take %s back", i, path)
            self._hosts[i] = fresh
            if host is not None:  # the routes that used the dead one use the new one
                with self._lock:
                    for route in self._routes.values():
                        if host in route.replicas:
                            route.replicas = tuple(fresh if r is host else r
                                                   for r in route.replicas)
            return fresh

    def _send(self, host: Replica, kind: int, doc: dict[str, Any]) -> None:
        status, answer = exchange(host.socket, kind, json.dumps(doc).encode(),
                                  timeout=self.ready_timeout)
        if status != 200:
            raise ReplicaNotReady(f"model host {host.id}: "
                                  f"{json.loads(answer).get('error', answer[:200])}")

    def _attach(self, i: int, key_hash: str, path: str, *, load: bool = False) -> Replica:
        with self._host_lock:
            host = self._host(i)
            self._send(host, ATTACH, {"key_hash": key_hash, "build": path, "load": load})
            self._attached[i][key_hash] = path
            return host

    def _detach(self, i: int, key_hash: str) -> None:
        with self._host_lock:
            if self._attached[i].pop(key_hash, None) is None:
                return
            host = self._hosts[i]
            if host is not None and host.alive():
                try:
                    self._send(host, DETACH, {"key_hash": key_hash})
                except (OSError, ReplicaNotReady):
                    log.warning("detaching from model host %d failed", i, exc_info=True)

    def _pick(self, count: int, keep: Sequence[int] = ()) -> list[int]:
        """``count`` hosts: those in ``keep`` first, then the least used."""
        chosen = [i for i in keep if i < self.count][:count]
        rest = sorted((i for i in range(self.count) if i not in chosen),
                      key=lambda i: (len(self._attached[i]), i))
        return chosen + rest[:max(0, min(count, self.count) - len(chosen))]

    # -- the supervisor's interface ------------------------------------------------------------

    def replicas(self, deployment_id: str) -> list[dict[str, Any]]:
        """The hosts serving a deployment, with the memory its model takes on each."""
        route = self._routes.get(deployment_id)
        out = []
        for i in self._placed.get(deployment_id, []):
            host = self._hosts[i]
            if host is None:
                continue
            model = self._status[i].get("models", {}).get(route.build_id if route else "", {})
            out.append({**host.as_dict(), "build_id": route.build_id if route else "",
                        "host": i, "loaded": model.get("loaded", False),
                        "model_memory_mb": model.get("memory_mb"),
                        "host_memory_mb": self._status[i].get("rss_mb")})
        return out

    def start_replicas(self, deployment_id: str, build_id: str, build_path: str, count: int,
                       what: str = "") -> list[Replica]:
        """Attach and load a build on ``count`` hosts under a provisional key (proving it
        loads and answers a probe); :meth:`serve` or :meth:`switch` gives it the real one."""
        what = what or f"deployment {deployment_id}"
        chosen = self._pick(count, self._placed.get(deployment_id, ()))
        done: list[int] = []
        try:
            for i in chosen:
                self._attach(i, _pending(deployment_id), build_path, load=True)
                done.append(i)
        except (OSError, ReplicaNotReady) as exc:
            for i in done:
                self._detach(i, _pending(deployment_id))
            raise ReplicaNotReady(f"{what}: {exc}") from exc
        self._staged[deployment_id] = (chosen, build_id, build_path)
        return [h for h in (self._hosts[i] for i in chosen) if h is not None]

    def discard(self, deployment_id: str, replicas: Sequence[Replica]) -> None:
        staged = self._staged.pop(deployment_id, None)
        for i in staged[0] if staged else ():
            self._detach(i, _pending(deployment_id))

    def serve(self, deployment_id: str, key_hash: str, model_name: str, build_id: str,
              build_path: str, *, replicas: int, auth_enabled: bool,
              ready: Sequence[Replica] = (), project_id: str | None = None) -> None:
        if self._stop.is_set():
            self.discard(deployment_id, ready)
            raise UnavailableError(f"deployment {deployment_id}: the control plane is stopping")
        staged = self._staged.pop(deployment_id, None)
        chosen = staged[0] if staged else self._pick(replicas,
                                                     self._placed.get(deployment_id, ()))
        for i in chosen:  # loaded already when staged, else on the first call
            self._attach(i, key_hash, build_path)
            self._detach(i, _pending(deployment_id))
        old_key = self._keys.get(deployment_id)
        for i in set(self._placed.get(deployment_id, [])) - set(chosen):
            self._detach(i, old_key or key_hash)
        route = Route(deployment_id, model_name, auth_enabled, replicas, build_id,
                      build_path, replicas=tuple(self._host(i) for i in chosen),
                      project_id=project_id)
        with self._lock:
            previous = self._routes.get(deployment_id)
            self._routes[deployment_id] = route
            self._by_key = {**{k: r for k, r in self._by_key.items() if r is not previous},
                            key_hash: route}
        self._placed[deployment_id], self._keys[deployment_id] = chosen, key_hash
        self._ensure_monitor()

    def switch(self, deployment_id: str, build_id: str, build_path: str,
               fresh: Sequence[Replica]) -> None:
        route = self._routes.get(deployment_id)
        if route is None:
            self.discard(deployment_id, fresh)
            raise NotFoundError(f"deployment {deployment_id!r} is not being served")
        self.serve(deployment_id, self._keys[deployment_id], route.model_name, build_id,
                   build_path, replicas=route.wanted, auth_enabled=route.auth_enabled,
                   project_id=route.project_id)

    def deploy(self, deployment_id: str, key_hash: str, model_name: str, build_id: str,
               build_path: str, *, replicas: int, auth_enabled: bool, wait: bool = True,
               project_id: str | None = None) -> None:
        if wait:
            self.start_replicas(deployment_id, build_id, build_path, replicas)
        self.serve(deployment_id, key_hash, model_name, build_id, build_path,
                   replicas=replicas, auth_enabled=auth_enabled, project_id=project_id)

    def redeploy(self, deployment_id: str, build_id: str, build_path: str) -> None:
        route = self._routes.get(deployment_id)
        if route is None:
            raise NotFoundError(f"deployment {deployment_id!r} is not being served")
        fresh = self.start_replicas(deployment_id, build_id, build_path, route.wanted,
                                    f"redeploy of {deployment_id} to build {build_id}")
        self.switch(deployment_id, build_id, build_path, fresh)

    def resize(self, deployment_id: str, wanted: int) -> None:
        route = self._routes.get(deployment_id)
        if route is None:
            raise NotFoundError(f"deployment {deployment_id!r} is not being served")
        self.serve(deployment_id, self._keys[deployment_id], route.model_name, route.build_id,
                   route.build_path, replicas=wanted, auth_enabled=route.auth_enabled,
                   project_id=route.project_id)

    def stop(self, deployment_id: str) -> None:
        with self._lock:
            route = self._routes.pop(deployment_id, None)
            self._by_key = {k: r for k, r in self._by_key.items() if r is not route}
        key = self._keys.pop(deployment_id, None)
        for i in self._placed.pop(deployment_id, []):
            if key is not None:
                self._detach(i, key)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            self._routes, self._by_key = {}, {}
        self._terminate([h for h in self._hosts if h is not None])
        if self._sockets:
            shutil.rmtree(self._sockets, ignore_errors=True)

    # -- the monitor: hosts, not routes ---------------------------------------------------------

    def _monitor(self) -> None:
        while not self._stop.wait(self.check_every):
            for i in range(self.count):
                host = self._hosts[i]
                if host is None or self._stop.is_set():
                    continue
                try:
                    if not host.alive():
                        log.warning("model host %d exited with %s; starting it again", i,
                                    host.proc.returncode)
                        host.ready = False
                        self._host(i)
                        continue
                    self._status[i] = json.loads(ping(host.socket,
                                                      timeout=self.liveness_timeout))
                    host.missed_pings = 0
                except (OSError, ValueError, ReplicaNotReady):
                    host.missed_pings += 1
                    if host.missed_pings >= self.liveness_misses and host.alive():
                        log.warning("model host %d missed %d pings; killing it", i,
                                    host.missed_pings)
                        host.proc.kill()

    def memory(self) -> dict[str, Any]:
        """The hosts' resident memory and each loaded model's (from their last ping)."""
        return {"hosts": [{"host": i, "pid": s.get("pid"), "rss_mb": s.get("rss_mb"),
                           "models": s.get("models", {})}
                          for i, s in enumerate(self._status) if s]}

"""The supervisor: model replicas as separate processes, kept ready and switched safely.

Each deployment has a :class:`Route` (found by the hash of its access key) holding the
replicas that take traffic. A replica joins a route only after it answered a ping. Changing
what a deployment serves is two steps, so the caller (:mod:`icefloe.serving.deployments`)
can record the change in the database between them: :meth:`Supervisor.start_replicas`
starts a build's replicas and returns once all are ready (a route sees none of them yet),
then :meth:`Supervisor.serve` or :meth:`Supervisor.switch` puts them behind the route, or
:meth:`Supervisor.discard` stops them. A monitor thread replaces replicas that exit (with
backoff if they keep crashing), kills hung ones, and drains replaced ones before stopping
them.

The lock only guards the routes' fields: it is never held across a ping, a spawn or a wait.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icefloe.errors import NotFoundError, UnavailableError
from icefloe.serving.protocol import ping

log = logging.getLogger(__name__)


class ReplicaNotReady(UnavailableError):
    """Replicas of a build did not become ready, so traffic did not move to them."""


@dataclass(eq=False)
class Replica:
    """One replica process serving one build on a Unix socket."""

    id: str
    build_id: str
    socket: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    ready: bool = False
    inflight: int = 0
    missed_pings: int = 0
    # The pipelined connection (or its opening) per event loop: a connection belongs to the
    # loop that opened it (see icefloe.serving.gateway).
    channels: weakref.WeakKeyDictionary[Any, Any] = field(
        default_factory=weakref.WeakKeyDictionary)

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc.poll() is None

    def as_dict(self) -> dict[str, Any]:
        """Status for the API."""
        return {"id": self.id, "pid": self.proc.pid, "build_id": self.build_id,
                "ready": self.ready and self.alive(), "inflight": self.inflight}


@dataclass(eq=False)
class Route:
    """Where the calls of one deployment go."""

    deployment_id: str
    model_name: str
    auth_enabled: bool
    wanted: int
    build_id: str
    build_path: str
    replicas: tuple[Replica, ...] = ()
    starting: list[Replica] = field(default_factory=list)
    crashes: int = 0
    next_start: float = 0.0
    project_id: str | None = None  # callers need access to it (when auth is on)


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


class Supervisor:
    """Starts, watches, replaces and switches model replicas."""

    def __init__(self, home: Path, *, ready_timeout: float = 60.0, poll: float = 0.2,
                 liveness_every: float = 5.0, liveness_timeout: float = 2.0,
                 liveness_misses: int = 3) -> None:
        self.ready_timeout = ready_timeout
        self.poll = poll
        self.liveness_every = liveness_every
        self.liveness_timeout = liveness_timeout
        self.liveness_misses = liveness_misses
        self.log_dir = home / "logs" / "replicas"
        self._sockets = ""  # made on first use
        self._routes: dict[str, Route] = {}
        self._by_key: dict[str, Route] = {}
        # Replicas started for a deployment but not yet behind its route (or discarded).
        self._pending: dict[str, tuple[Replica, ...]] = {}
        self._lock = threading.Lock()  # guards the fields above; never held while waiting
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._counter = itertools.count(1)

    # -- lookups (lock-free: dicts are replaced, never mutated in place while read) --------

    def route(self, key_hash: str) -> Route | None:
        """The route of an access key's hash, or None."""
        return self._by_key.get(key_hash)

    def serving(self, deployment_id: str) -> str | None:
        """The build a deployment's route sends its calls to, or None if it is not served."""
        route = self._routes.get(deployment_id)
        return route.build_id if route is not None else None

    def replicas(self, deployment_id: str) -> list[dict[str, Any]]:
        """Replica status of a served deployment; of one not served yet, the replicas
        starting for it (a redeploy's new replicas are listed once they take traffic)."""
        route = self._routes.get(deployment_id)
        if route is None:
            return [r.as_dict() for r in self._pending.get(deployment_id, ())]
        return [r.as_dict() for r in (*route.replicas, *route.starting)]

    def ready_counts(self) -> dict[str, int]:
        """Ready replicas per served deployment."""
        return {d: sum(1 for r in route.replicas if r.ready)
                for d, route in list(self._routes.items())}

    # -- processes --------------------------------------------------------------------------

    def _spawn(self, build_id: str, build_path: str) -> Replica:
        # The pid keeps names apart when several nodes share a home (multi-node).
        rid = f"{build_id[:8]}-{os.getpid()}-{next(self._counter)}"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{rid}.log"
        if not self._sockets:
            # Unix socket paths are limited to ~100 bytes, so not under the (deep) home.
            self._sockets = tempfile.mkdtemp(prefix="icefloe-replicas-")
        sock = os.path.join(self._sockets, f"{rid}.sock")
        cmd = [sys.executable, "-m", "icefloe.serving.replica", "--build", build_path,
               "--socket", sock, "--parent", str(os.getpid())]
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        return Replica(rid, build_id, sock, proc, log_path)

    def _is_ready(self, replica: Replica) -> bool:
        if not os.path.exists(replica.socket):
            return False
        try:
            ping(replica.socket, timeout=1.0)
        except OSError:
            return False
        replica.ready = True
        return True

    def _wait_ready(self, replicas: list[Replica], what: str) -> None:
        deadline = time.monotonic() + self.ready_timeout
        waiting = list(replicas)
        while waiting:
            if self._stop.is_set():
                raise ReplicaNotReady(f"{what}: the control plane is stopping")
            for replica in list(waiting):
                if not replica.alive():
                    raise ReplicaNotReady(
                        f"{what}: replica {replica.id} exited with code "
                        f"{replica.proc.returncode} before it was ready: "
                        f"{_log_tail(replica.log_path)}")
                if self._is_ready(replica):
                    waiting.remove(replica)
            if waiting and time.monotonic() > deadline:
                raise ReplicaNotReady(f"{what}: replica {waiting[0].id} was not ready after "
                                      f"{self.ready_timeout:g} s")
            if waiting:
                time.sleep(0.05)

    @staticmethod
    def _terminate(replicas: Sequence[Replica], grace: float = 5.0) -> None:
        for replica in replicas:
            replica.ready = False
            if replica.alive():
                replica.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for replica in replicas:
            try:
                replica.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                replica.proc.kill()
                replica.proc.wait()
            Path(replica.socket).unlink(missing_ok=True)

    def _drain_later(self, replicas: list[Replica], timeout: float = 30.0) -> None:
        """Stop replicas once their in-flight requests are answered (in the background)."""
        if not replicas:
            return

        def drain() -> None:
            time.sleep(0.2)  # a request that picked a replica just before the switch
            deadline = time.monotonic() + timeout
            while any(r.inflight for r in replicas) and time.monotonic() < deadline:
                time.sleep(0.05)
            self._terminate(replicas)

        threading.Thread(target=drain, name="icefloe-drain", daemon=True).start()

    # -- deployments: start, then serve / switch / discard ------------------------------------

    def start_replicas(self, deployment_id: str, build_id: str, build_path: str, count: int,
                       what: str = "") -> list[Replica]:
        """Start ``count`` replicas of a build for a deployment; returns once all are ready.

        No route sends them anything until :meth:`serve` or :meth:`switch`; until then (or
        :meth:`discard`) they are listed with the deployment's replicas, and :meth:`close`
        stops them.

        Raises:
            ReplicaNotReady: A replica exited or timed out before it was ready (all of them
                are stopped), or the supervisor is closing.
        """
        what = what or f"deployment {deployment_id}"
        replicas: list[Replica] = []
        try:
            for _ in range(count):
                if self._stop.is_set():
                    raise ReplicaNotReady(f"{what}: the control plane is stopping")
                try:
                    replicas.append(self._spawn(build_id, build_path))
                except OSError as exc:  # no process or socket folder to be had (EMFILE, disk)
                    raise ReplicaNotReady(f"{what}: a replica could not be started: "
                                          f"{exc.strerror or exc}") from exc
                self._set_pending(deployment_id, replicas)
            self._wait_ready(replicas, what)
        except BaseException:
            self._set_pending(deployment_id, [])
            self._terminate(replicas, grace=2.0)
            raise
        return replicas

    def _set_pending(self, deployment_id: str, replicas: list[Replica]) -> None:
        with self._lock:
            pending = dict(self._pending)
            if replicas:
                pending[deployment_id] = tuple(replicas)
            else:
                pending.pop(deployment_id, None)
            self._pending = pending

    def discard(self, deployment_id: str, replicas: Sequence[Replica]) -> None:
        """Stop replicas :meth:`start_replicas` made that will not be served."""
        self._set_pending(deployment_id, [])
        self._terminate(replicas, grace=2.0)

    def serve(self, deployment_id: str, key_hash: str, model_name: str, build_id: str,
              build_path: str, *, replicas: int, auth_enabled: bool,
              ready: Sequence[Replica] = (), project_id: str | None = None) -> None:
        """Route a deployment's calls to ``ready`` replicas (from :meth:`start_replicas`);
        the monitor starts whatever is missing of ``replicas`` in the background.

        Raises:
            UnavailableError: The supervisor is closing (``ready`` replicas are stopped).
        """
        route = Route(deployment_id, model_name, auth_enabled, replicas, build_id, build_path,
                      replicas=tuple(ready), project_id=project_id)
        with self._lock:
            closing = self._stop.is_set()
            previous = None if closing else self._routes.get(deployment_id)
            if not closing:
                pending = dict(self._pending)
                pending.pop(deployment_id, None)
                self._pending = pending
                self._routes[deployment_id] = route
                self._by_key = {**{k: r for k, r in self._by_key.items()
                                   if r is not previous}, key_hash: route}
        if closing:
            self.discard(deployment_id, ready)
            raise UnavailableError(f"deployment {deployment_id}: the control plane is stopping")
        if previous is not None:  # served again: the old replicas drain and stop
            self._drain_later([*previous.replicas, *previous.starting])
        self._ensure_monitor()

    def switch(self, deployment_id: str, build_id: str, build_path: str,
               fresh: Sequence[Replica]) -> None:
        """Move a deployment's calls to ``fresh`` replicas of another build (all ready, from
        :meth:`start_replicas`); the old ones finish what they are answering, then stop.

        Raises:
            NotFoundError: The deployment is not served here (``fresh`` are stopped).
        """
        with self._lock:
            route = self._routes.get(deployment_id)
            if route is not None:
                old = [*route.replicas, *route.starting]
                route.build_id, route.build_path = build_id, build_path
                route.starting, route.crashes, route.next_start = [], 0, 0.0
                route.replicas = tuple(fresh)
                pending = dict(self._pending)
                pending.pop(deployment_id, None)
                self._pending = pending
        if route is None:
            self.discard(deployment_id, fresh)
            raise NotFoundError(f"deployment {deployment_id!r} is not being served")
        self._drain_later(old)

    def deploy(self, deployment_id: str, key_hash: str, model_name: str, build_id: str,
               build_path: str, *, replicas: int, auth_enabled: bool, wait: bool = True,
               project_id: str | None = None) -> None:
        """Serve a deployment; with ``wait`` return only when its replicas are ready (else
        they start in the background, as at a restart).

        Raises:
            ReplicaNotReady: A replica exited or timed out before it was ready.
        """
        ready = self.start_replicas(deployment_id, build_id, build_path,
                                    replicas) if wait else []
        self.serve(deployment_id, key_hash, model_name, build_id, build_path,
                   replicas=replicas, auth_enabled=auth_enabled, ready=ready,
                   project_id=project_id)

    def redeploy(self, deployment_id: str, build_id: str, build_path: str) -> None:
        """Move a deployment to another build with no dropped request: the new replicas must
        all be ready before traffic moves (callers serialize changes of one deployment).

        Raises:
            NotFoundError: The deployment is not served here.
            ReplicaNotReady: The new build never became ready; the old one keeps serving.
        """
        route = self._routes.get(deployment_id)
        if route is None:
            raise NotFoundError(f"deployment {deployment_id!r} is not being served")
        fresh = self.start_replicas(deployment_id, build_id, build_path, route.wanted,
                                    f"redeploy of {deployment_id} to build {build_id}")
        self.switch(deployment_id, build_id, build_path, fresh)

    def served(self) -> list[str]:
        """The deployments served here."""
        return list(self._routes)

    def wanted(self, deployment_id: str) -> int | None:
        """How many replicas a served deployment keeps here (None: not served here)."""
        route = self._routes.get(deployment_id)
        return route.wanted if route is not None else None

    def resize(self, deployment_id: str, wanted: int) -> None:
        """Keep ``wanted`` replicas of a served deployment here: the monitor starts what is
        missing; extra ones leave the route at once and drain before they stop.

        Raises:
            NotFoundError: The deployment is not served here.
        """
        with self._lock:
            route = self._routes.get(deployment_id)
            if route is None:
                raise NotFoundError(f"deployment {deployment_id!r} is not being served")
            route.wanted = wanted
            extra = len(route.replicas) + len(route.starting) - wanted
            dropped: list[Replica] = []
            while extra > 0 and route.starting:
                dropped.append(route.starting.pop())
                extra -= 1
            if extra > 0:
                dropped += route.replicas[-extra:]
                route.replicas = route.replicas[:-extra]
        if dropped:
            self._drain_later(dropped)

    def stop(self, deployment_id: str) -> None:
        """Stop serving a deployment (its replicas drain first)."""
        with self._lock:
            route = self._routes.pop(deployment_id, None)
            self._by_key = {k: r for k, r in self._by_key.items() if r is not route}
        if route is not None:
            self._drain_later([*route.replicas, *route.starting], timeout=10.0)

    def close(self) -> None:
        """Stop every replica and the monitor."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            everything = [r for route in self._routes.values()
                          for r in (*route.replicas, *route.starting)]
            everything += [r for started in self._pending.values() for r in started]
            self._routes, self._by_key, self._pending = {}, {}, {}
        self._terminate(everything)
        if self._sockets:
            shutil.rmtree(self._sockets, ignore_errors=True)

    # -- the monitor ------------------------------------------------------------------------

    def _ensure_monitor(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._monitor, name="icefloe-supervisor",
                                                daemon=True)
                self._thread.start()

    def _monitor(self) -> None:
        next_check = time.monotonic() + self.liveness_every
        while not self._stop.wait(self.poll):
            for route in list(self._routes.values()):
                try:
                    self._tend(route)
                except Exception:
                    log.exception("supervising deployment %s failed", route.deployment_id)
            if time.monotonic() >= next_check:
                self._check_liveness()
                next_check = time.monotonic() + self.liveness_every

    def _check_liveness(self) -> None:
        """Kill replicas that stopped answering pings (hung, not crashed); _tend replaces them.

        Pings go outside the lock and wait a while: a replica busy with a large batch still
        answers a ping between two requests, a hung one never does.
        """
        for route in list(self._routes.values()):
            for replica in route.replicas:
                try:
                    ping(replica.socket, timeout=self.liveness_timeout)
                    replica.missed_pings = 0
                except OSError:
                    replica.missed_pings += 1
                    if replica.missed_pings >= self.liveness_misses and replica.alive():
                        log.warning("replica %s of deployment %s missed %d pings; killing it",
                                    replica.id, route.deployment_id, replica.missed_pings)
                        replica.proc.kill()

    def _current(self, route: Route) -> bool:
        """Whether a route is still served (call with the lock held)."""
        return not self._stop.is_set() and self._routes.get(route.deployment_id) is route

    def _tend(self, route: Route) -> None:
        """Replace a route's exited replicas and admit the starting ones that are ready.

        Three steps: look (under the lock), ping, spawn and stop (outside it), then record
        (under it again, only for replicas the route still owns: a switch or a stop in the
        meantime took the others, and a replica of a build the route no longer serves is
        stopped).
        """
        with self._lock:
            if not self._current(route):
                return
            dead = [r for r in route.replicas if not r.alive()]
            if dead:
                route.replicas = tuple(r for r in route.replicas if r.alive())
            starting = list(route.starting)
            build_id = route.build_id
        for replica in dead:
            log.warning("replica %s of deployment %s exited with %s; replacing it",
                        replica.id, route.deployment_id, replica.proc.returncode)
            Path(replica.socket).unlink(missing_ok=True)

        exited = [r for r in starting if not r.alive()]
        stale = [r for r in starting if r.alive() and r.build_id != build_id]
        ready = [r for r in starting if r.alive() and r.build_id == build_id
                 and self._is_ready(r)]

        to_stop: list[Replica] = []
        with self._lock:
            for replica in exited:
                if replica in route.starting:
                    route.starting.remove(replica)
                    route.crashes += 1
                    route.next_start = time.monotonic() + min(30.0, 0.5 * 2 ** route.crashes)
                    log.warning("replica %s of deployment %s exited while starting: %s",
                                replica.id, route.deployment_id, _log_tail(replica.log_path))
            for replica in (*stale, *ready):
                if replica not in route.starting:
                    continue  # taken by a switch or a stop: not ours to touch
                route.starting.remove(replica)
                if replica in ready and replica.build_id == route.build_id and \
                        self._current(route):
                    route.replicas = (*route.replicas, replica)
                    route.crashes = 0
                else:
                    to_stop.append(replica)
            missing = route.wanted - len(route.replicas) - len(route.starting)
            spawn = self._current(route) and missing > 0 and \
                time.monotonic() >= route.next_start
            build_id, build_path = route.build_id, route.build_path
        if to_stop:
            self._terminate(to_stop, grace=1.0)
        if not spawn:
            return

        fresh = [self._spawn(build_id, build_path) for _ in range(missing)]
        with self._lock:
            keep = self._current(route) and route.build_id == build_id
            if keep:
                route.starting.extend(fresh)
        if not keep:
            self._terminate(fresh, grace=1.0)

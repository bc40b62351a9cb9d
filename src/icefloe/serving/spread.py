"""Each node's share of the deployments' replicas, kept as nodes come and go (multi-node).

Every second each node reads the deployments that are served and the nodes whose lease
holds, works out its share of each deployment's replicas (:func:`icefloe.cluster.placement.
share`: the same answer on every node), and makes its supervisor hold exactly that: starts
what is missing, moves to the recorded build (new replicas ready first), drains what is no
longer its own, and stops deployments stopped elsewhere. It also keeps, per access key, the
other nodes that hold replicas, for the model gateway to forward calls to when this node
holds none.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import select

from icefloe.cluster import nodes
from icefloe.cluster.placement import share
from icefloe.errors import ConflictError
from icefloe.serving.deployments import DEPLOYED, one_change_at_a_time
from icefloe.serving.supervisor import Supervisor
from icefloe.store.db import Database
from icefloe.store.orm import Build, Deployment

log = logging.getLogger(__name__)


class Spreader:
    """Keeps this node's share of every deployment's replicas.

    Args:
        db: The platform DB.
        supervisor: This node's replicas.
        node_id: This node's id (its runner's).
        every: Seconds between passes.
    """

    def __init__(self, db: Database, supervisor: Supervisor, node_id: str, *,
                 every: float = nodes.HEARTBEAT_S) -> None:
        self.db = db
        self.supervisor = supervisor
        self.node_id = node_id
        self.every = every
        # Access-key hash -> base URLs of the other nodes holding replicas of it.
        self._holders: dict[str, tuple[str, ...]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def elsewhere(self, key_hash: str) -> tuple[str, ...]:
        """The other nodes that hold replicas of the deployment of an access key's hash."""
        return self._holders.get(key_hash, ())

    def start(self) -> None:
        """Tend in a background thread until :meth:`close`."""
        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.tend()
                except Exception:  # the next pass tries again
                    log.exception("keeping this node's share of the replicas failed")
                self._stop.wait(self.every)

        self._thread = threading.Thread(target=loop, name="icefloe-spread", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop tending (the supervisor stops the replicas)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def tend(self) -> None:
        """One pass: this node's share of every served deployment, and nothing else."""
        with self.db.session() as s:
            living = nodes.alive(s)
            rows = s.execute(select(Deployment, Build.path)
                             .join(Build, Build.id == Deployment.build_id)
                             .where(Deployment.status == DEPLOYED)).all()
            served = [(d.id, d.access_key_hash, d.model_name, d.build_id, path, d.replicas,
                       d.auth_enabled, d.project_id) for d, path in rows]
        ids = [n.id for n in living]
        if self.node_id not in ids:
            return  # our lease lapsed: the others hold our share until we beat again
        urls = {n.id: n.url for n in living}
        holders: dict[str, tuple[str, ...]] = {}
        for dep_id, khash, model, build_id, path, replicas, auth, project_id in served:
            spread = share(dep_id, replicas, ids)
            holders[khash] = tuple(urls[n] for n in spread if n != self.node_id and urls[n])
            self._keep(dep_id, spread.get(self.node_id, 0), khash, model, build_id, path,
                       auth, project_id)
        self._holders = holders
        for dep_id in set(self.supervisor.served()) - {row[0] for row in served}:
            self._keep(dep_id, 0)

    def _keep(self, dep_id: str, mine: int, key_hash: str = "", model: str = "",
              build_id: str = "", path: str = "", auth: bool = True,
              project_id: str | None = None) -> None:
        try:
            # A change of this deployment under way here (create, redeploy, stop) goes
            # first: the next pass sees what it left.
            with one_change_at_a_time(dep_id, wait=0):
                here = self.supervisor.wanted(dep_id)
                if mine == 0:
                    if here is not None:
                        self.supervisor.stop(dep_id)
                    return
                if here is None:
                    self.supervisor.deploy(dep_id, key_hash, model, build_id, path,
                                           replicas=mine, auth_enabled=auth, wait=False,
                                           project_id=project_id)
                    return
                if here != mine:
                    self.supervisor.resize(dep_id, mine)
                if self.supervisor.serving(dep_id) != build_id:
                    self.supervisor.redeploy(dep_id, build_id, path)
        except ConflictError:
            return
        except Exception:
            log.exception("keeping this node's replicas of deployment %s failed", dep_id)

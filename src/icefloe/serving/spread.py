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
            rows = s.execute(select(Deployment.id, Deployment.access_key_hash,
                                    Deployment.replicas, Deployment.build_id)
                             .where(Deployment.status == DEPLOYED)).all()
        # Nodes are placed by URL: a node that restarts (a new id) gets its replicas back.
        keys = {n.id: n.url or n.id for n in living}
        if self.node_id not in keys:
            return  # our lease lapsed: the others hold our share until we beat again
        me = keys[self.node_id]
        holders: dict[str, tuple[str, ...]] = {}
        for dep_id, key_hash, replicas, build_id in rows:
            spread = share(dep_id, replicas, list(keys.values()))
            holders[key_hash] = tuple(k for k in spread if k != me and "://" in k)
            mine = spread.get(me, 0)
            if self.supervisor.wanted(dep_id) != (mine or None) or (
                    mine and self.supervisor.serving(dep_id) != build_id):
                self._keep(dep_id, mine)
        self._holders = holders
        for dep_id in set(self.supervisor.served()) - {row[0] for row in rows}:
            self._keep(dep_id, 0)

    def _keep(self, dep_id: str, mine: int) -> None:
        """Make this node hold ``mine`` replicas of a deployment, as its row says now."""
        try:
            # A change of this deployment under way here (create, redeploy, stop) goes
            # first: the next pass sees what it left. The row is read again inside the
            # turn, so a change made meanwhile is never undone.
            with one_change_at_a_time(dep_id, wait=0):
                with self.db.session() as s:
                    found = s.execute(select(Deployment, Build.path)
                                      .join(Build, Build.id == Deployment.build_id)
                                      .where(Deployment.id == dep_id)).first()
                here = self.supervisor.wanted(dep_id)
                if found is None or found[0].status != DEPLOYED or mine == 0:
                    if here is not None:
                        self.supervisor.stop(dep_id)
                    return
                dep, path = found
                if here is None:
                    self.supervisor.deploy(dep_id, dep.access_key_hash, dep.model_name,
                                           dep.build_id, path, replicas=mine,
                                           auth_enabled=dep.auth_enabled, wait=False,
                                           project_id=dep.project_id)
                    return
                if here != mine:
                    self.supervisor.resize(dep_id, mine)
                if self.supervisor.serving(dep_id) != dep.build_id:
                    self.supervisor.redeploy(dep_id, dep.build_id, path)
        except ConflictError:
            return
        except Exception:
            log.exception("keeping this node's replicas of deployment %s failed", dep_id)

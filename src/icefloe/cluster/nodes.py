"""The nodes of one platform: control planes sharing a database, each holding a lease it
renews by heartbeat.

A node is alive while its heartbeat is younger than :data:`LEASE_S`. What a dead node held
is taken over by the others: its job runs end as failed (and are retried when the job says
so), its share of deployments' replicas is started elsewhere. A node that cannot renew its
lease in time stops its own runs (it can no longer prove they are its), so a run never goes
on while another node retries it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from icefloe.store.orm import Node
from icefloe.store.repo import now
from icefloe.timefmt import stored_utc

HEARTBEAT_S = 1.0
LEASE_S = 6.0


@dataclass(frozen=True)
class NodeInfo:
    """A node as the others see it."""

    id: str
    url: str
    started_at: datetime
    heartbeat_at: datetime

    def alive(self, at: datetime, lease: float = LEASE_S) -> bool:
        """Whether its lease holds at ``at``."""
        return at - self.heartbeat_at <= timedelta(seconds=lease)


def _info(node: Node) -> NodeInfo:
    return NodeInfo(node.id, node.url, stored_utc(node.started_at),
                    stored_utc(node.heartbeat_at))


def join(s: Session, node_id: str, url: str) -> None:
    """Register this node (its first heartbeat)."""
    at = now()
    s.add(Node(id=node_id, url=url, started_at=at, heartbeat_at=at))
    s.flush()


def beat(s: Session, node_id: str) -> bool:
    """Renew this node's lease; False when its row is gone (taken for dead and removed)."""
    done = s.execute(update(Node).where(Node.id == node_id).values(heartbeat_at=now())
                     .execution_options(synchronize_session=False))
    return bool(getattr(done, "rowcount", 0))


def leave(s: Session, node_id: str) -> None:
    """Deregister this node (a clean shutdown: the others need not wait for its lease)."""
    s.execute(delete(Node).where(Node.id == node_id))


def all_nodes(s: Session) -> list[NodeInfo]:
    """Every registered node, alive or not, oldest first."""
    return [_info(n) for n in s.scalars(select(Node).order_by(Node.started_at, Node.id))]


def alive(s: Session, at: datetime | None = None) -> list[NodeInfo]:
    """The nodes whose lease holds, by id (the order placement works in)."""
    moment = at or now()
    return sorted((n for n in all_nodes(s) if n.alive(moment)), key=lambda n: n.id)


def forget_dead(s: Session, older_than: float = 3600.0) -> int:
    """Remove the rows of nodes dead for longer than ``older_than`` seconds."""
    cutoff = now() - timedelta(seconds=older_than)
    done = s.execute(delete(Node).where(Node.heartbeat_at < cutoff))
    return int(getattr(done, "rowcount", 0) or 0)

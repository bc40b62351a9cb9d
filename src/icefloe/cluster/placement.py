"""Where a deployment's replicas run (pure): spread over the nodes alive.

Every node computes the same answer from the same facts (the deployments, the nodes whose
lease holds), so no node has to hand out work: each starts its own share and stops what is
no longer its. Nodes are ranked per deployment by rendezvous hashing (highest hash of
deployment and node first), so a node that leaves moves only the replicas it held, and one
that comes back (same URL) gets the same ones again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def ranked(deployment_id: str, nodes: Sequence[str]) -> list[str]:
    """The nodes in the order a deployment prefers them."""
    return sorted(set(nodes), reverse=True, key=lambda node: hashlib.sha256(
        f"{deployment_id}\x00{node}".encode()).digest())


def share(deployment_id: str, replicas: int, nodes: Sequence[str]) -> dict[str, int]:
    """How many of a deployment's replicas each node holds (nodes with none left out):
    one on each of its preferred nodes, round again when there are more replicas than
    nodes."""
    order = ranked(deployment_id, nodes)
    counts: dict[str, int] = {}
    for i in range(max(0, replicas) if order else 0):
        node = order[i % len(order)]
        counts[node] = counts.get(node, 0) + 1
    return counts

"""Where a deployment's replicas run (pure): spread evenly over the nodes alive.

Every node computes the same answer from the same facts (the deployments, the nodes whose
lease holds), so no node has to hand out work: each starts its own share and stops what is
no longer its. When a node dies, the others' shares grow by what it held.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def share(deployment_id: str, replicas: int, node_ids: Sequence[str]) -> dict[str, int]:
    """How many of a deployment's replicas each node holds.

    Replicas go round the nodes (sorted by id), starting at a node picked by the
    deployment's id, so single-replica deployments do not all land on the same node.
    Nodes with none are left out.
    """
    ordered = sorted(set(node_ids))
    if not ordered or replicas <= 0:
        return {}
    first = int(hashlib.sha256(deployment_id.encode()).hexdigest()[:8], 16) % len(ordered)
    counts: dict[str, int] = {}
    for i in range(replicas):
        node = ordered[(first + i) % len(ordered)]
        counts[node] = counts.get(node, 0) + 1
    return counts

"""The job dependency graph (pure): children of a job and cycle detection."""

from __future__ import annotations

from collections.abc import Mapping


def children(parents: Mapping[str, str | None], job_id: str) -> list[str]:
    """Jobs whose parent is ``job_id``, sorted for a stable order."""
    return sorted(j for j, p in parents.items() if p == job_id)


def would_cycle(parents: Mapping[str, str | None], job_id: str, new_parent: str | None) -> bool:
    """True if making ``new_parent`` the parent of ``job_id`` creates a dependency cycle.

    Args:
        parents: Every job's current parent (job id -> parent id or None).
        job_id: The job being created or updated.
        new_parent: Its proposed parent.
    """
    seen: set[str] = set()
    node = new_parent
    while node is not None:
        if node == job_id or node in seen:
            return True
        seen.add(node)
        node = parents.get(node)
    return False


def chain(parents: Mapping[str, str | None], root: str) -> list[str]:
    """``root`` and every job below it, breadth first."""
    order, queue = [], [root]
    while queue:
        node = queue.pop(0)
        order.append(node)
        queue.extend(children(parents, node))
    return order

"""The lineage graph (pure): nodes with labels and attributes, typed edges, bounded walks,
and rendering as JSON or Graphviz DOT.

Edges point the way data flows: a snapshot points at the training run that read it, the
training run at the model version it registered, the build at its deployment. *Upstream* of
a node is where it came from, *downstream* what came of it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from icefloe.errors import InvalidInputError

DIRECTIONS = ("upstream", "downstream", "both")
MAX_DEPTH = 50


@dataclass(frozen=True)
class Edge:
    """One typed edge ``src -> dst``.

    Attributes:
        src, dst: Node ids.
        relation: What ``src`` is to ``dst`` ("read by", "registered", "deployed"...).
        actor: Who made it happen, when known.
        at: When (ISO-8601 UTC), when known.
        detail: Anything else worth showing (state, rows...).
    """

    src: str
    dst: str
    relation: str
    actor: str = ""
    at: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> tuple[str, str, str]:
        """What makes two edges the same edge."""
        return (self.src, self.dst, self.relation)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"src": self.src, "dst": self.dst, "relation": self.relation,
                "actor": self.actor, "at": self.at, "detail": dict(self.detail)}


@dataclass
class Graph:
    """Nodes (id -> attributes, ``label`` among them) and edges, deduplicated."""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: dict[tuple[str, str, str], Edge] = field(default_factory=dict)

    def add_node(self, node: str, **attributes: Any) -> None:
        """Add a node, or add attributes to it (known ones are not overwritten by None)."""
        known = self.nodes.setdefault(node, {})
        for name, value in attributes.items():
            if value is not None or name not in known:
                known[name] = value

    def add_edge(self, edge: Edge) -> None:
        """Add an edge (and its two nodes); a known edge keeps its first actor and time,
        and takes details it did not have."""
        self.add_node(edge.src)
        self.add_node(edge.dst)
        known = self.edges.get(edge.key)
        if known is None:
            self.edges[edge.key] = edge
            return
        merged = {**edge.detail, **known.detail}
        self.edges[edge.key] = Edge(known.src, known.dst, known.relation,
                                    known.actor or edge.actor, known.at or edge.at, merged)

    def upstream_of(self, node: str) -> list[Edge]:
        """Edges into ``node``."""
        return [e for e in self.edges.values() if e.dst == node]

    def downstream_of(self, node: str) -> list[Edge]:
        """Edges out of ``node``."""
        return [e for e in self.edges.values() if e.src == node]

    def to_dict(self, root: str) -> dict[str, Any]:
        """``{"root", "nodes": [{"id", "kind", "label", ...}], "edges": [...]}``, sorted."""
        nodes = [{"id": node, "kind": node.partition(":")[0],
                  "label": attrs.get("label") or node,
                  **{k: v for k, v in attrs.items() if k != "label"}}
                 for node, attrs in sorted(self.nodes.items())]
        edges = [e.to_dict() for _, e in sorted(self.edges.items())]
        return {"root": root, "nodes": nodes, "edges": edges}


def check_direction(direction: str) -> str:
    """Return ``direction`` if it is ``upstream``, ``downstream`` or ``both``.

    Raises:
        InvalidInputError: Anything else.
    """
    if direction not in DIRECTIONS:
        raise InvalidInputError(f"direction {direction!r} is not one of {', '.join(DIRECTIONS)}")
    return direction


def check_depth(depth: int | None) -> int:
    """The depth bound to use: ``depth`` if 1..MAX_DEPTH, MAX_DEPTH for None.

    Raises:
        InvalidInputError: A depth below 1 or above :data:`MAX_DEPTH`.
    """
    if depth is None:
        return MAX_DEPTH
    if not 1 <= depth <= MAX_DEPTH:
        raise InvalidInputError(f"depth must be between 1 and {MAX_DEPTH}, got {depth}")
    return depth


Neighbours = Callable[[str], Iterable[Edge]]


def walk(root: str, upstream: Neighbours, downstream: Neighbours, direction: str = "both",
         depth: int | None = None, max_nodes: int = 2000) -> Graph:
    """The graph around ``root``: breadth first, at most ``depth`` edges away.

    ``upstream(node)`` answers the edges into a node, ``downstream(node)`` those out of it.
    ``both`` is the upstream walk and the downstream walk together (not an undirected walk:
    a sibling reached up then down is neither where the root came from nor what came of it).

    Args:
        max_nodes: Stop expanding once the graph holds this many nodes (a guard for
            nodes with very many neighbours).
    """
    check_direction(direction)
    limit = check_depth(depth)
    graph = Graph()
    graph.add_node(root)
    if direction in ("upstream", "both"):
        _walk_one_way(graph, root, upstream, lambda e: e.src, limit, max_nodes)
    if direction in ("downstream", "both"):
        _walk_one_way(graph, root, downstream, lambda e: e.dst, limit, max_nodes)
    return graph


def _walk_one_way(graph: Graph, root: str, neighbours: Neighbours,
                  far_end: Callable[[Edge], str], limit: int, max_nodes: int) -> None:
    seen = {root}
    queue: deque[tuple[str, int]] = deque([(root, 0)])
    while queue:
        node, distance = queue.popleft()
        if distance >= limit:
            continue
        for edge in neighbours(node):
            other = far_end(edge)
            if other not in graph.nodes and len(graph.nodes) >= max_nodes:
                graph.nodes[root]["truncated"] = True
                return
            graph.add_edge(edge)
            if other not in seen:
                seen.add(other)
                queue.append((other, distance + 1))


def subgraph(graph: Graph, root: str, direction: str = "both",
             depth: int | None = None) -> Graph:
    """The part of a whole graph around ``root`` (see :func:`walk`)."""
    return walk(root, graph.upstream_of, graph.downstream_of, direction, depth)


# -- rendering -------------------------------------------------------------------------------

def _dot_string(text: str) -> str:
    """A DOT double-quoted string: backslashes and quotes escaped, line breaks as ``\\n``
    and other control characters dropped, so no label can end the string or the graph."""
    cleaned = "".join(ch if ch >= " " or ch in "\n\r" else " " for ch in str(text))
    cleaned = cleaned.replace("\\", "\\\\").replace('"', '\\"')
    cleaned = cleaned.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")
    return f'"{cleaned}"'


_SHAPES = {"file": "note", "snapshot": "cylinder", "table": "folder", "run": "box",
           "airflow": "box", "user": "ellipse", "training": "box", "model": "component",
           "build": "box3d", "deployment": "doubleoctagon", "window": "hexagon",
           "alert": "octagon", "prediction": "ellipse"}


def to_dot(graph: Graph, root: str) -> str:
    """Graphviz DOT text of the graph (``dot -Tsvg``); the root is drawn bold."""
    lines = ["digraph lineage {", "  rankdir=LR;",
             '  node [fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=9];']
    for node, attrs in sorted(graph.nodes.items()):
        kind = node.partition(":")[0]
        label = str(attrs.get("label") or node)
        extra = ', style="bold,filled", fillcolor="#fff3c4"' if node == root else ""
        lines.append(f"  {_dot_string(node)} [label={_dot_string(label)}, "
                     f"shape={_SHAPES.get(kind, 'box')}{extra}];")
    for _, edge in sorted(graph.edges.items()):
        lines.append(f"  {_dot_string(edge.src)} -> {_dot_string(edge.dst)} "
                     f"[label={_dot_string(edge.relation)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def tree_lines(graph: Graph, root: str, direction: str) -> list[tuple[int, str, str, str]]:
    """The graph as an indented tree for people: ``(depth, arrow, relation, node)`` rows.

    Upstream rows come first (``<-``: where the node came from), then downstream ones
    (``->``); a node already shown is shown again without its own subtree.
    """
    rows: list[tuple[int, str, str, str]] = []

    def descend(node: str, level: int, step: Neighbours, end: Callable[[Edge], str],
                arrow: str, shown: set[str]) -> None:
        for edge in sorted(step(node), key=lambda e: (e.relation, end(e))):
            other = end(edge)
            rows.append((level, arrow, edge.relation, other))
            if other not in shown:
                shown.add(other)
                descend(other, level + 1, step, end, arrow, shown)

    if direction in ("upstream", "both"):
        descend(root, 1, graph.upstream_of, lambda e: e.src, "<-", {root})
    if direction in ("downstream", "both"):
        descend(root, 1, graph.downstream_of, lambda e: e.dst, "->", {root})
    return rows


def from_dict(data: Mapping[str, Any]) -> tuple[Graph, str]:
    """A graph and its root from :meth:`Graph.to_dict` output (e.g. the API's answer)."""
    graph = Graph()
    for node in data.get("nodes", []):
        attrs = {k: v for k, v in node.items() if k not in ("id", "kind")}
        graph.add_node(str(node["id"]), **attrs)
    for e in data.get("edges", []):
        graph.add_edge(Edge(str(e["src"]), str(e["dst"]), str(e["relation"]),
                            str(e.get("actor") or ""), str(e.get("at") or ""),
                            dict(e.get("detail") or {})))
    return graph, str(data.get("root", ""))

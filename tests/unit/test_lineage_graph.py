"""The lineage graph's pure parts: node ids, walks, JSON and DOT, and the edges a happening
makes."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from icefloe.errors import InvalidInputError
from icefloe.happenings import Actor, Dataset, Happening
from icefloe.lineage import nodes
from icefloe.lineage.graph import Edge, Graph, from_dict, subgraph, to_dot, tree_lines, walk
from icefloe.lineage.record import edges_of

UUID = "0b9f3c1e-8d7a-4c55-9e0f-2a1b3c4d5e6f"


@pytest.mark.parametrize("text", [
    "file:/data/batch-2026-11-27.csv", "file:s3://bucket/raw/batch.parquet",
    "snapshot:lending.loans@1234567890123", "table:lending.loans", f"run:{UUID}",
    "airflow:mlops_fail/manual__2026-11-27T10:00:00+00:00/load_batch", "user:alice",
    "user:local:root", "training:7a3f9e", "model:loan-default/2", f"build:{UUID}",
    f"deployment:{UUID}", f"window:{UUID}/1700000000000-1700003600000", f"alert:{UUID}/7",
    f"prediction:{UUID}"])
def test_valid_nodes_round_trip(text: str) -> None:
    node = nodes.parse(text)
    assert str(node) == text and node.kind in nodes.KINDS and nodes.is_node(text)


@pytest.mark.parametrize(("text", "named"), [
    ("", "empty"),
    ("lending.loans", "no known kind"),
    ("dataset:lending.loans", "no known kind"),
    ("snapshot:lending.loans", "namespace.table@SNAPSHOT_ID"),
    ("snapshot:lending.loans@abc", "namespace.table@SNAPSHOT_ID"),
    ("table:loans", "namespace.table"),
    ("model:loan-default", "NAME/VERSION"),
    ("airflow:dag/task", "DAG_ID/DAG_RUN_ID/TASK_ID"),
    ("window:dep/1-x", "DEPLOYMENT/START_MS-END_MS"),
    ("prediction:" + "a" * 600, "over 512"),
    ("run:bad\nid", "not printable"),
    ("user:\ud800", "not printable"),
    ("run:bad id", "job run id"),
])
def test_invalid_nodes_are_refused_naming_the_node(text: str, named: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        nodes.parse(text)
    assert named in caught.value.message
    if text and len(text) < 100:
        assert repr(text) in caught.value.message  # the bad node is named as given


def test_builders_validate_and_split() -> None:
    assert nodes.snapshot("lending.loans", 42) == "snapshot:lending.loans@42"
    assert nodes.snapshot_parts("lending.loans@42") == ("lending.loans", 42)
    assert nodes.model_parts("loan-default/3") == ("loan-default", 3)
    assert nodes.window("d1", 5, 9) == "window:d1/5-9"
    with pytest.raises(InvalidInputError):
        nodes.table("not a table")
    assert nodes.looks_like_node("prediction:x") and not nodes.looks_like_node("m/1")


def test_airflow_keys_of_the_provider() -> None:
    key = "airflow:mlops_success:manual__2026-11-27T10:00:00+00:00:load_batch:-1"
    assert nodes.airflow_parts(key) == ("mlops_success", "manual__2026-11-27T10:00:00+00:00",
                                        "load_batch", -1)
    assert nodes.airflow_of_key(key + "#3") == (
        "airflow:mlops_success/manual__2026-11-27T10:00:00+00:00/load_batch")
    assert nodes.airflow_parts("airflow:dag:run:task:2")[3] == 2  # type: ignore[index]
    for other in (None, "", "cde-request-17", "airflow:sha256:" + "ab" * 32,
                  "airflow:dag:run:task:x", "airflow:dag:task"):
        assert nodes.airflow_of_key(other) is None


def _chain() -> Graph:
    g = Graph()
    for src, dst, rel in [("file:/b1.csv", "snapshot:l.t@1", "loaded into"),
                          ("snapshot:l.t@1", "snapshot:l.t@2", "parent of"),
                          ("run:r1", "snapshot:l.t@2", "wrote"),
                          ("airflow:d/r/t", "run:r1", "started"),
                          ("snapshot:l.t@2", "training:m1", "read by"),
                          ("training:m1", "model:m/1", "registered"),
                          ("model:m/1", "build:b1", "built"),
                          ("build:b1", "deployment:d1", "deployed"),
                          ("build:b1", "prediction:p1", "scored"),
                          ("deployment:d1", "prediction:p1", "answered"),
                          ("snapshot:l.t@2", "snapshot:l.t@3", "parent of")]:
        g.add_edge(Edge(src, dst, rel))
    return g


def test_walks_follow_the_direction_and_the_depth() -> None:
    whole = _chain()
    up = subgraph(whole, "prediction:p1", "upstream")
    assert {"airflow:d/r/t", "file:/b1.csv", "snapshot:l.t@1", "run:r1"} <= set(up.nodes)
    assert "snapshot:l.t@3" not in up.nodes  # a sibling is neither up nor down
    down = subgraph(whole, "snapshot:l.t@2", "downstream")
    assert {"snapshot:l.t@3", "prediction:p1", "deployment:d1"} <= set(down.nodes)
    assert "run:r1" not in down.nodes
    both = subgraph(whole, "model:m/1", "both")
    assert {"file:/b1.csv", "prediction:p1"} <= set(both.nodes)
    assert "snapshot:l.t@3" not in both.nodes
    one = subgraph(whole, "prediction:p1", "upstream", depth=1)
    assert set(one.nodes) == {"prediction:p1", "build:b1", "deployment:d1"}
    two = subgraph(whole, "prediction:p1", "upstream", depth=2)
    assert "model:m/1" in two.nodes and "training:m1" not in two.nodes


def test_cycles_end_and_duplicates_merge() -> None:
    g = Graph()
    g.add_edge(Edge("snapshot:a.b@1", "snapshot:a.b@2", "parent of", "x", "t1", {"k": 1}))
    g.add_edge(Edge("snapshot:a.b@2", "snapshot:a.b@1", "rollback"))
    g.add_edge(Edge("snapshot:a.b@1", "snapshot:a.b@2", "parent of", "y", "t2", {"k": 2, "m": 3}))
    assert len(g.edges) == 2
    kept = g.edges[("snapshot:a.b@1", "snapshot:a.b@2", "parent of")]
    assert (kept.actor, kept.at, dict(kept.detail)) == ("x", "t1", {"k": 1, "m": 3})
    walked = walk("snapshot:a.b@1", g.upstream_of, g.downstream_of, "both")
    assert len(walked.edges) == 2


def test_walk_refuses_bad_direction_and_depth() -> None:
    g = _chain()
    with pytest.raises(InvalidInputError, match="direction"):
        subgraph(g, "model:m/1", "sideways")
    with pytest.raises(InvalidInputError, match="depth"):
        subgraph(g, "model:m/1", "both", depth=0)


def test_json_round_trip() -> None:
    g = _chain()
    g.add_node("model:m/1", label="model m/1", status="READY")
    data = g.to_dict("model:m/1")
    assert data["root"] == "model:m/1"
    assert {n["id"]: n["kind"] for n in data["nodes"]}["airflow:d/r/t"] == "airflow"
    back, root = from_dict(data)
    assert root == "model:m/1" and back.to_dict(root) == data


# -- DOT -------------------------------------------------------------------------------------

_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<arrow>->)|(?P<id>[A-Za-z_0-9.]+)'
                    r'|(?P<punct>[{}\[\];,=]))', re.DOTALL)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text.rstrip()):
        match = _TOKEN.match(text, pos)
        assert match is not None, f"not DOT at {text[pos:pos + 40]!r}"
        kind = match.lastgroup
        assert kind is not None
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def _unquote(token: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), token[1:-1])


def parse_dot(text: str) -> tuple[dict[str, dict[str, str]], list[tuple[str, str, str]]]:
    """A strict parser of the DOT subset to_dot writes: nodes with attributes, edges with
    labels; anything else fails."""
    toks = _tokens(text)
    assert toks[:3] == [("id", "digraph"), ("id", "lineage"), ("punct", "{")]
    assert toks[-1] == ("punct", "}")
    body, i = toks[3:-1], 0
    found_nodes: dict[str, dict[str, str]] = {}
    found_edges: list[tuple[str, str, str]] = []

    def attrs(j: int) -> tuple[dict[str, str], int]:
        assert body[j] == ("punct", "[")
        out: dict[str, str] = {}
        j += 1
        while body[j] != ("punct", "]"):
            name, eq, value = body[j], body[j + 1], body[j + 2]
            assert name[0] == "id" and eq == ("punct", "=") and value[0] in ("id", "str")
            out[name[1]] = _unquote(value[1]) if value[0] == "str" else value[1]
            j += 3
            if body[j] == ("punct", ","):
                j += 1
        return out, j + 1

    while i < len(body):
        kind, value = body[i]
        if kind == "id" and body[i + 1] == ("punct", "="):  # rankdir=LR;
            i += 3
        elif kind == "id" and value in ("node", "edge"):
            _, i = attrs(i + 1)
        elif kind == "str" and body[i + 1] == ("arrow", "->"):
            target = body[i + 2]
            assert target[0] == "str"
            edge_attrs, i = attrs(i + 3)
            found_edges.append((_unquote(value), _unquote(target[1]), edge_attrs["label"]))
        elif kind == "str":
            node_attrs, i = attrs(i + 1)
            found_nodes[_unquote(value)] = node_attrs
        else:
            raise AssertionError(f"unexpected {value!r}")
        assert body[i] == ("punct", ";"), body[i]
        i += 1
    return found_nodes, found_edges


def test_dot_escapes_labels_and_stays_valid() -> None:
    g = _chain()
    nasty = 'evil "label" \\ with } and\nnewline; -> x [y=z]'
    g.add_node("model:m/1", label=nasty)
    g.add_edge(Edge("user:o\"hara", "run:r1", 'says "hi"'))
    text = to_dot(g, "model:m/1")
    found_nodes, found_edges = parse_dot(text)
    assert found_nodes["model:m/1"]["label"] == nasty
    assert found_nodes["model:m/1"]["style"] == "bold,filled"  # the root
    assert set(found_nodes) == set(g.nodes)
    assert {(src, dst, rel) for src, dst, rel in found_edges} == set(g.edges)
    assert ('user:o"hara', "run:r1", 'says "hi"') in found_edges


def test_dot_parser_rejects_broken_text() -> None:
    with pytest.raises(AssertionError):
        parse_dot('digraph lineage {\n  "a" [label="unterminated];\n}\n')


def test_tree_lines_show_up_then_down() -> None:
    g = _chain()
    rows = tree_lines(subgraph(g, "model:m/1"), "model:m/1", "both")
    arrows = [r[1] for r in rows]
    assert arrows.index("->") > arrows.index("<-") and ("<-" in arrows)
    assert (1, "<-", "registered", "training:m1") in rows
    assert (1, "->", "built", "build:b1") in rows


# -- the edges a happening makes --------------------------------------------------------------

def _h(kind: str, state: str = "COMPLETE", **fields: object) -> Happening:
    return Happening(kind, state, fields.pop("run_id", "h1"),  # type: ignore[arg-type]
                     actor=fields.pop("actor", Actor("alice")),  # type: ignore[arg-type]
                     at=datetime(2026, 11, 27, tzinfo=UTC), **fields)  # type: ignore[arg-type]


def _keys(h: Happening) -> set[tuple[str, str, str]]:
    return {e.key for e in edges_of(h)}


def test_edges_of_a_write_in_a_job_run() -> None:
    h = _h("table.write", actor=Actor("alice", run_id="r1"),
           inputs=(Dataset("/in/batch.csv", kind="file"), Dataset("lending.staging", 5)),
           outputs=(Dataset("lending.loans", 9, rows=10),))
    assert _keys(h) == {("file:/in/batch.csv", "snapshot:lending.loans@9", "loaded into"),
                        ("snapshot:lending.staging@5", "snapshot:lending.loans@9", "input of"),
                        ("run:r1", "snapshot:lending.loans@9", "wrote")}
    wrote = next(e for e in edges_of(h) if e.relation == "wrote")
    assert wrote.actor == "alice (run/r1)" and wrote.detail["state"] == "COMPLETE"
    assert _keys(_h("table.write", "START", outputs=(Dataset("a.b", 1),))) == set()
    assert _keys(_h("table.read", inputs=(Dataset("a.b", 1),))) == set()


def test_edges_of_the_ml_chain() -> None:
    train = _h("training", run_id="t1", inputs=(Dataset("lending.loans", 9),),
               parent={"kind": "job.run", "run_id": "r2"},
               subject={"model": "loan-default", "version": 2})
    assert _keys(train) == {("snapshot:lending.loans@9", "training:t1", "read by"),
                            ("run:r2", "training:t1", "ran"),
                            ("training:t1", "model:loan-default/2", "registered")}
    failed = _h("training", "FAIL", run_id="t1", inputs=(Dataset("lending.loans", 9),),
                subject={"model": "loan-default", "error": "a string column"})
    assert _keys(failed) == {("snapshot:lending.loans@9", "training:t1", "read by")}
    assert edges_of(failed)[0].detail["error"] == "a string column"
    assert _keys(_h("build", subject={"model": "m", "version": 1, "build_id": "b1"})) == {
        ("model:m/1", "build:b1", "built")}
    assert _keys(_h("deployment", subject={"deployment_id": "d1", "build_id": "b1"})) == {
        ("build:b1", "deployment:d1", "deployed")}


def test_edges_of_runs_rollbacks_reports_and_alerts() -> None:
    run = _h("job.run", "START", run_id="r1",
             parent={"kind": "airflow", "dag_id": "d", "run_id": "manual__1", "task_id": "t"},
             subject={"trigger": "api"})
    assert _keys(run) == {("airflow:d/manual__1/t", "run:r1", "started"),
                          ("user:alice", "run:r1", "started")}
    back = _h("table.rollback", inputs=(Dataset("a.b", 3),), outputs=(Dataset("a.b", 2),))
    assert _keys(back) == {("snapshot:a.b@3", "snapshot:a.b@2", "rollback")}
    report = _h("sql.report", inputs=(Dataset("a.b", 2), Dataset("a.c", None)),
                outputs=(Dataset("r.out", 7),))
    assert ("table:a.c", "snapshot:r.out@7", "queried into") in _keys(report)
    alert = _h("alert", subject={"rule_id": "q", "event_id": 4, "deployment_id": "d1",
                                 "start_ms": 1, "end_ms": 2})
    assert _keys(alert) == {("deployment:d1", "window:d1/1-2", "monitored"),
                            ("window:d1/1-2", "alert:q/4", "raised")}


def test_malformed_names_from_a_job_run_leave_out_only_their_edge() -> None:
    h = _h("table.write", actor=Actor("bob", run_id="r1"),
           inputs=(Dataset("not a table", 1), Dataset("a.b", 1)),
           outputs=(Dataset("a.c", 2),))
    assert _keys(h) == {("snapshot:a.b@1", "snapshot:a.c@2", "input of"),
                        ("run:r1", "snapshot:a.c@2", "wrote")}

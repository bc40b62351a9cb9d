"""The UI's pure parts: charts as coordinates, the job tree, lineage columns and links."""

from icefloe.ui.charts import HEIGHT, TOP, line_chart
from icefloe.ui.pages.jobs import job_tree
from icefloe.ui.pages.models import lineage_columns, node_link
from icefloe.ui.render import duration, query, when


def test_a_chart_puts_higher_values_higher_and_skips_gaps() -> None:
    chart = line_chart("accuracy", [(0, 0.9), (1000, None), (2000, 0.3)],
                       thresholds=[(0.6, "rule <")], bounds=(0.0, 1.0))
    (x1, y1, label1), (x2, y2, _) = chart.dots
    assert x1 < x2 and y1 < y2  # SVG y grows downwards: 0.9 is drawn above 0.3
    assert y1 >= TOP and y2 <= HEIGHT and label1.endswith(": 0.9")
    (line_y, line_label), = chart.lines
    assert y1 < line_y < y2 and line_label == "rule < 0.6"
    assert chart.last == "0.3" and not chart.empty
    assert line_chart("nothing", [(0, None)]).empty


def test_versions_are_labelled_as_versions() -> None:
    chart = line_chart("auc", [(1, 0.7), (2, 0.8), (3, 0.75)], x_is_time=False)
    assert [label for _, label in chart.x_ticks] == ["v1", "v2", "v3"]


def test_jobs_are_listed_under_their_parents() -> None:
    jobs = [{"id": "c", "name": "train", "parent_job_id": "a"},
            {"id": "a", "name": "load", "parent_job_id": ""},
            {"id": "b", "name": "alone", "parent_job_id": "gone"},
            {"id": "d", "name": "push", "parent_job_id": "c"}]
    assert [(depth, j["name"]) for depth, j in job_tree(jobs)] == [
        (0, "alone"), (0, "load"), (1, "train"), (2, "push")]


def test_lineage_nodes_become_columns_with_links() -> None:
    nodes = [{"id": "deployment:d1", "kind": "deployment"},
             {"id": "snapshot:lending.loans@42", "kind": "snapshot", "label": "s"},
             {"id": "model:loan-default/3", "kind": "model"},
             {"id": "user:ann", "kind": "user"}]
    columns = lineage_columns(nodes)
    assert [kind for kind, _ in columns] == ["snapshot", "model", "deployment"]
    assert columns[0][1][0]["href"] == "/ui/tables/lending.loans?at=42"
    assert node_link({"id": "run:r1"}) == "/ui/runs/r1"
    assert node_link({"id": "model:loan-default/3"}) == "/ui/models/loan-default?version=3"
    assert node_link({"id": "airflow:d/r/t"}) is None


def test_formatting() -> None:
    assert when(0) == "1970-01-01 00:00:00" and when("2026-11-28T01:02:03+00:00") == \
        "2026-11-28 01:02:03"
    assert (duration(4.21), duration(187), duration(3725)) == ("4.2s", "3m 07s", "1h 02m")
    assert query({"status": "x", "page": "2"}, page=None) == "?status=x"
    assert query({}, job="<a>") == "?job=%3Ca%3E"

"""Who sees what (pure): roles per project, key caps, namespace grants, lineage filtering."""

from icefloe.auth.principals import Principal
from icefloe.governance.grants import table_access
from icefloe.governance.policy import visible_lineage


def test_roles_in_projects_are_capped_by_the_key_and_run_tokens_see_one_project() -> None:
    ana = Principal("ana", "editor", "k1", memberships=(("p1", "owner"), ("p2", "viewer")))
    assert ana.owns("p1") and ana.may_change("p1") and not ana.may_change("p2")
    assert ana.reaches("p2") and not ana.reaches("p3") and not ana.reaches(None)
    assert ana.visible_projects() == frozenset({"p1", "p2"})
    read_key = Principal("ana", "viewer", "k2", memberships=(("p1", "owner"),))
    assert read_key.reaches("p1") and not read_key.may_change("p1") and not read_key.owns("p1")
    run = Principal("ana", "editor", "run/r", project_id="p1", run_id="r")
    assert run.may_change("p1") and not run.reaches("p2") and not run.owns("p1")
    admin = Principal("root", "admin", "k3")
    assert admin.owns("anything") and admin.reaches(None) and admin.visible_projects() is None


def test_namespace_grants_read_and_write_by_member_role() -> None:
    grants = [("lending", "p1", "write"), ("reports", "p2", "read"), ("*", "p3", "read")]
    editor = Principal("e", "editor", "k", memberships=(("p1", "editor"),))
    viewer = Principal("v", "editor", "k", memberships=(("p1", "viewer"),))
    other = Principal("o", "editor", "k", memberships=(("p2", "owner"),))
    everyone = Principal("w", "editor", "k", memberships=(("p3", "owner"),))
    assert table_access(grants, editor, "lending") == "write"
    assert table_access(grants, viewer, "lending") == "read"
    assert table_access(grants, other, "lending") is None
    assert table_access(grants, other, "reports") == "read"
    assert table_access(grants, everyone, "anything") == "read"


def test_lineage_keeps_only_what_the_caller_reaches_and_what_still_connects() -> None:
    graph = {"root": "prediction:u", "nodes": [
        {"id": "prediction:u", "kind": "prediction", "project_id": "p1"},
        {"id": "deployment:d", "kind": "deployment", "project_id": "p1"},
        {"id": "model:m/1", "kind": "model"},
        {"id": "snapshot:lending.loans@5", "kind": "snapshot"},
        {"id": "run:r", "kind": "run", "project_id": "p2"},
        {"id": "airflow:dag/run/load", "kind": "airflow"},
        {"id": "training:t", "kind": "training"}],  # not described: hidden
        "edges": [{"src": "deployment:d", "dst": "prediction:u"},
                  {"src": "model:m/1", "dst": "deployment:d"},
                  {"src": "snapshot:lending.loans@5", "dst": "model:m/1"},
                  {"src": "run:r", "dst": "snapshot:lending.loans@5"},
                  {"src": "airflow:dag/run/load", "dst": "run:r"}]}
    shown = visible_lineage(graph, lambda p: p == "p1", lambda t: t == "lending.loans",
                            lambda m: m == "m")
    assert shown is not None
    # The loading run is another project's: it and the Airflow task behind it are gone.
    assert [n["id"] for n in shown["nodes"]] == ["prediction:u", "deployment:d", "model:m/1",
                                                 "snapshot:lending.loans@5"]
    assert len(shown["edges"]) == 3
    # Someone who does not reach the deployment does not learn the prediction exists.
    assert visible_lineage(graph, lambda p: False, lambda t: True, lambda m: True) is None
    assert visible_lineage({**graph, "root": "run:r"}, lambda p: p == "p1", lambda t: True,
                           lambda m: True) is None


def test_a_model_no_project_claimed_is_built_only_by_those_who_may_change_the_default(
        tmp_path) -> None:
    import pytest

    from icefloe.config import load_settings
    from icefloe.errors import InvalidInputError, NotFoundError
    from icefloe.governance.membership import default_project
    from icefloe.governance.policy import project_for_new_build
    from icefloe.store.db import Database
    from icefloe.store.orm import ModelCard
    from icefloe.store.repo import create_project, now

    settings = load_settings(env={}, home=tmp_path / "home")
    db = Database(f"sqlite:///{tmp_path / 'platform.db'}")
    with db.session() as s:
        mine = create_project(s, "mine", str(tmp_path)).id
        default = default_project(s, settings).id
        s.add(ModelCard(name="claimed", project_id=mine, owner="", description="", tags=[],
                        use_case="", risk_level="", extra={}, created_at=now(),
                        updated_at=now()))
    outsider = Principal("eve", "editor", "k", memberships=((mine, "owner"),))
    keeper = Principal("dan", "editor", "k", memberships=((mine, "owner"),
                                                          (default, "editor")))
    with db.session() as s:
        # An unclaimed model is the default project's: eve may not move it into hers.
        with pytest.raises(NotFoundError, match="fraud"):
            project_for_new_build(s, settings, outsider, "fraud", mine)
        assert project_for_new_build(s, settings, keeper, "fraud", None) == default
        assert project_for_new_build(s, settings, keeper, "fraud", mine) == mine
        # A claimed model builds in its own project only.
        assert project_for_new_build(s, settings, outsider, "claimed", None) == mine
        with pytest.raises(InvalidInputError, match="another project"):
            project_for_new_build(s, settings, keeper, "claimed", default)
    db.dispose()

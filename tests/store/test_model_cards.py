"""Model cards on every backend: made once on first sight (also when two builds race),
adopted by the first project named, patched with every field checked."""

import threading

import pytest

from icefloe.catalog import cards
from icefloe.errors import InvalidInputError
from icefloe.store.db import Database
from icefloe.store.orm import ModelCard


def test_a_card_is_made_once_and_takes_the_first_project(db: Database) -> None:
    with db.session() as s:
        first = cards.ensure_card(s, "loan-default", None, "alice (run/1234)")
        assert (first.project_id, first.owner) == ("", "alice")
    with db.session() as s:
        again = cards.ensure_card(s, "loan-default", "p1", "bob")
        assert (again.project_id, again.owner) == ("p1", "alice")
    with db.session() as s:
        # an owned card never moves project on sight
        assert cards.ensure_card(s, "loan-default", "p2", "carol").project_id == "p1"


def test_two_first_builds_racing_make_one_card(db: Database) -> None:
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def see() -> None:
        start.wait()
        try:
            with db.session() as s:
                cards.ensure_card(s, "raced", "p1", "someone")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=see) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.session() as s:
        assert [c.name for c in s.query(ModelCard).all()] == ["raced"]


def test_patch_merges_extra_and_checks_every_field(db: Database) -> None:
    with db.session() as s:
        card = cards.patch_card(s, "m", {"risk_level": "CRITICAL", "tags": ["a", "b", "a"],
                                         "extra": {"team": "risk", "n": 1}})
        assert (card.risk_level, card.tags) == ("critical", ["a", "b"])
    with db.session() as s:
        card = cards.patch_card(s, "m", {"extra": {"n": None, "sla": "24h"}})
        assert card.extra == {"team": "risk", "sla": "24h"}
        assert cards.card_json("m", card)["tags"] == ["a", "b"]
    for fields, named in [({"risk_level": "severe"}, "risk_level"),
                          ({"tags": "credit"}, "tags"),
                          ({"tags": ["x" * 65]}, "tags"),
                          ({"extra": {"k": "\ud800"}}, "extra"),
                          ({"extra": {"k": float("nan")}}, "extra"),
                          ({"extra": {"k": "x" * (64 * 1024)}}, "extra"),
                          ({"description": "a\x00b"}, "description"),
                          ({"use_case": "u" * 1001}, "use_case"),
                          ({"color": "blue"}, "color")]:
        with pytest.raises(InvalidInputError, match=named), db.session() as s:
            cards.patch_card(s, "m", fields)
    with db.session() as s:
        kept = cards.get_card(s, "m")
        assert kept is not None and kept.extra == {"team": "risk", "sla": "24h"}
        assert kept.risk_level == "critical"
    assert cards.card_json("never-built", None)["project_id"] == ""

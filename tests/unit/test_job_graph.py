from icefloe.jobs import states
from icefloe.jobs.graph import chain, children, would_cycle


def test_cycles_are_detected() -> None:
    parents = {"a": None, "b": "a", "c": "b"}
    assert would_cycle(parents, "a", "c")
    assert would_cycle(parents, "a", "a")
    assert not would_cycle(parents, "d", "c")
    assert not would_cycle(parents, "c", "a")
    assert would_cycle({"x": "y", "y": "x"}, "z", "x")  # an existing loop is never followed forever


def test_children_and_chain() -> None:
    parents = {"a": None, "b": "a", "c": "b", "d": "a"}
    assert children(parents, "a") == ["b", "d"]
    assert chain(parents, "a") == ["a", "b", "d", "c"]


def test_state_machine() -> None:
    assert states.can_move(states.SCHEDULING, states.STARTING)
    assert not states.can_move(states.SUCCEEDED, states.FAILED)
    assert not states.can_move(states.SCHEDULING, states.SUCCEEDED)
    assert states.starts_children(states.SUCCEEDED)
    assert not any(states.starts_children(s) for s in states.TERMINAL - {states.SUCCEEDED})

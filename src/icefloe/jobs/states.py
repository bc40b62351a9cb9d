"""Run states (the CML names) and the rules between them (pure)."""

from __future__ import annotations

SCHEDULING = "ENGINE_SCHEDULING"
STARTING = "ENGINE_STARTING"
RUNNING = "ENGINE_RUNNING"
SUCCEEDED = "ENGINE_SUCCEEDED"
FAILED = "ENGINE_FAILED"
STOPPED = "ENGINE_STOPPED"
TIMEDOUT = "ENGINE_TIMEDOUT"

ACTIVE = frozenset({SCHEDULING, STARTING, RUNNING})
TERMINAL = frozenset({SUCCEEDED, FAILED, STOPPED, TIMEDOUT})
ALL = ACTIVE | TERMINAL

_NEXT: dict[str, frozenset[str]] = {
    SCHEDULING: frozenset({STARTING, STOPPED, FAILED}),
    STARTING: frozenset({RUNNING, STOPPED, FAILED, TIMEDOUT}),
    RUNNING: frozenset({SUCCEEDED, FAILED, STOPPED, TIMEDOUT}),
}


def can_move(current: str, new: str) -> bool:
    """True if a run in state ``current`` may move to ``new`` (terminal states are final)."""
    return new in _NEXT.get(current, frozenset())


def starts_children(state: str) -> bool:
    """Only a succeeded run starts its children."""
    return state == SUCCEEDED

"""``track_metric``: values a model adds to the prediction it is answering (CML's name).

Scoring code calls :func:`track_metric` while a record is being answered; the values are
stored with that prediction and come back in ``read_metrics``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_current: ContextVar[dict[str, Any] | None] = ContextVar("icefloe_tracked", default=None)


def track_metric(key: str, value: Any) -> None:
    """Attach ``key: value`` to the prediction being answered.

    Raises:
        RuntimeError: Called outside the answering of a prediction.
    """
    tracked = _current.get()
    if tracked is None:
        raise RuntimeError("track_metric works only while a model answers a prediction")
    tracked[key] = value


@contextmanager
def tracking() -> Iterator[dict[str, Any]]:
    """Collect the metrics tracked inside the block."""
    tracked: dict[str, Any] = {}
    token = _current.set(tracked)
    try:
        yield tracked
    finally:
        _current.reset(token)

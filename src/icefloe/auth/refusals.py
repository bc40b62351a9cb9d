"""Refused requests, counted per source and minute, and sources that keep failing slowed.

An anonymous flood must not grow the database: refused authentications and refused model
calls are not one audit row each but one row per source, kind and minute (with the count),
for at most :data:`MAX_SOURCES` sources a minute (the rest are counted as ``other``). A
source refused ``limit`` times within a minute is answered 429 with ``Retry-After`` until
the minute ends, unless it presents a key already known to be good.
"""

from __future__ import annotations

import threading
import time
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any

MAX_SOURCES = 1000
Scope = MutableMapping[str, Any]


def source_of(scope: Scope) -> str:
    """The peer address of a request (proxies' forwarded headers are not trusted)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class Refusals:
    """Counts of refused requests by (minute, source, kind).

    Args:
        limit: Refusals per source and minute before that source is slowed down
            (0: never slow down).
    """

    def __init__(self, limit: int = 60) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._counts: dict[tuple[int, str, str], int] = {}
        self._per_source: dict[tuple[int, str], int] = {}

    @staticmethod
    def _minute() -> int:
        return int(time.time() // 60)

    def retry_after(self, source: str) -> int:
        """Seconds ``source`` must wait before it is heard again (0: not slowed down)."""
        minute = self._minute()
        if self.limit and self._per_source.get((minute, source), 0) >= self.limit:
            return max(1, int((minute + 1) * 60 - time.time()) + 1)
        return 0

    def count(self, source: str, kind: str) -> None:
        """Count one refused request of ``kind`` (e.g. ``auth``, ``model.call``)."""
        minute = self._minute()
        with self._lock:
            if (minute, source) not in self._per_source and len(self._per_source) >= \
                    MAX_SOURCES:
                source = "other"
            key = (minute, source, kind)
            self._counts[key] = self._counts.get(key, 0) + 1
            self._per_source[(minute, source)] = self._per_source.get((minute, source), 0) + 1

    def due(self, *, everything: bool = False) -> list[dict[str, Any]]:
        """Audit rows of the minutes that have ended (all of them with ``everything``)."""
        current = self._minute()
        with self._lock:
            done = [k for k in self._counts if everything or k[0] < current]
            rows = [(k, self._counts.pop(k)) for k in done]
            self._per_source = {k: v for k, v in self._per_source.items()
                                if not everything and k[0] >= current}
        return [{"at": datetime.fromtimestamp(minute * 60, UTC), "actor": "anonymous",
                 "action": f"{kind}.refused", "target": f"source/{source}",
                 "outcome": "denied", "detail": f"{count} refused in this minute"}
                for (minute, source, kind), count in sorted(rows)]

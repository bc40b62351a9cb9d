"""The control plane's lakehouse, opened on first use so the app stays light to import."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from icefloe.config import Settings

if TYPE_CHECKING:
    from icefloe.lakehouse import Lakehouse


class LazyLakehouse:
    """One :class:`~icefloe.lakehouse.Lakehouse` for every route that reads or writes tables.

    Args:
        settings: Where the catalog and warehouse are.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._opened: Lakehouse | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Lakehouse:
        """The lakehouse (opened by the first caller)."""
        with self._lock:
            if self._opened is None:
                from icefloe.lakehouse import Lakehouse

                self._opened = Lakehouse(self.settings)
            return self._opened

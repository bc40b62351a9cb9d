"""State shared by the CLI commands of one invocation."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import typer

from icefloe.config import Settings, load_settings
from icefloe.lakehouse import Lakehouse


@dataclass
class State:
    """Per-invocation state shared by the commands."""

    home: Path | None = None
    debug: bool = False

    @cached_property
    def settings(self) -> Settings:
        """Settings with ``--home`` applied."""
        return load_settings(home=self.home)

    @cached_property
    def lakehouse(self) -> Lakehouse:
        """The lakehouse of these settings."""
        return Lakehouse(self.settings)


def state(ctx: typer.Context) -> State:
    """The invocation's state (set by the root callback)."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, State) else State()

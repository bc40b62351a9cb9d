"""State shared by the CLI commands of one invocation."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from icefloe.config import Settings, load_settings
from icefloe.home import apply_umask, prepare_home

if TYPE_CHECKING:
    from icefloe.lakehouse import Lakehouse


@dataclass
class State:
    """Per-invocation state shared by the commands."""

    home: Path | None = None
    debug: bool = False

    @cached_property
    def settings(self) -> Settings:
        """Settings with ``--home`` applied; the process umask keeps the home private."""
        settings = load_settings(home=self.home)
        apply_umask(settings)
        return settings

    @cached_property
    def lakehouse(self) -> Lakehouse:
        """The lakehouse of these settings (the home is made if it does not exist yet)."""
        from icefloe.lakehouse import Lakehouse  # heavy: only for commands that use tables

        prepare_home(self.settings)
        return Lakehouse(self.settings)


def state(ctx: typer.Context) -> State:
    """The invocation's state (set by the root callback)."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, State) else State()

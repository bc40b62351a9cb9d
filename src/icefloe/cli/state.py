"""State shared by the CLI commands of one invocation."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from icefloe.config import Settings, load_settings
from icefloe.errors import NotFoundError
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
        from icefloe import happenings

        happenings.use_local(settings)  # what this command does is recorded in its home
        return settings

    def home_settings(self) -> Settings:
        """The settings of a home that exists: a command that reads one never makes one.

        Raises:
            NotFoundError: Naming the folder, pointing at ``icefloe init``.
        """
        settings = self.settings
        if not settings.home.is_dir():
            raise NotFoundError(
                f"there is no icefloe home at {settings.home.absolute()}: run `icefloe init` "
                "to make one, or give --home DIR (or $ICEFLOE_HOME) of an existing home")
        return settings

    @cached_property
    def lakehouse(self) -> Lakehouse:
        """The lakehouse of an existing home (:meth:`home_settings`)."""
        return self._lakehouse(self.home_settings())

    def new_lakehouse(self) -> Lakehouse:
        """The lakehouse of the home, made if it does not exist yet (init, table load)."""
        return self._lakehouse(self.settings)

    @staticmethod
    def _lakehouse(settings: Settings) -> Lakehouse:
        from icefloe.lakehouse import Lakehouse  # heavy: only for commands that use tables

        prepare_home(settings)
        return Lakehouse(settings)


def state(ctx: typer.Context) -> State:
    """The invocation's state (set by the root callback)."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, State) else State()


def snapshot_ref(lakehouse: Lakehouse, table: str, ref: str | None) -> int | None:
    """The snapshot id a ``--snapshot``/``--to`` value names: an id, a tag or a unique id
    prefix (:func:`icefloe.lakehouse.snapshots.find_snapshot`); None stays None."""
    if ref is None:
        return None
    from icefloe.lakehouse.snapshots import find_snapshot

    return find_snapshot(lakehouse.table(table), ref).snapshot_id

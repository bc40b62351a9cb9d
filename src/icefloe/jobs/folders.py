"""Project folders: every one resolves, symlinks followed, inside the projects root.

A project's path decides which files its jobs run, so it is checked like any other input
from a user: ``/``, system folders, ``..`` escapes and symlinks that lead out of the
projects root are refused naming the path. A relative path is resolved against the projects
root, never the server's working directory.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from icefloe.config import Settings
from icefloe.errors import InvalidInputError

MAX_PATH = 4096


def resolve_inside(root: Path, path: str) -> Path:
    """``path`` (relative to ``root`` unless absolute) resolved, if it stays inside ``root``.

    Raises:
        InvalidInputError: The path leaves the root (after following symlinks), is the root
            itself, or is not a usable path.
    """
    if not path or len(path) > MAX_PATH or "\x00" in path:
        raise InvalidInputError(f"project path {path[:200]!r} is not a usable path")
    candidate = Path(path).expanduser()
    if not candidate.is_absolute():
        candidate = root / candidate
    resolved = candidate.resolve()
    if resolved == root or not resolved.is_relative_to(root):
        raise InvalidInputError(
            f"project path {path!r} resolves to {resolved}, which is not inside the projects "
            f"root {root} (symlinks are followed)")
    return resolved


def project_folder(settings: Settings, name: str, path: str | None) -> tuple[Path, bool]:
    """The folder of a new project: ``path`` checked, or ``<projects root>/<name>``.

    Returns:
        The folder (existing afterwards) and whether it was made for this project.

    Raises:
        InvalidInputError: The path is outside the projects root or not a folder.
    """
    root = settings.resolved_projects_root
    folder = resolve_inside(root, path if path else name)
    if folder.exists():
        if not folder.is_dir():
            raise InvalidInputError(f"project path {path or name!r} is not a folder")
        return folder, False
    if path:
        raise InvalidInputError(f"project path {path!r} does not exist under the projects "
                                f"root {root}")
    root.mkdir(parents=True, exist_ok=True)
    folder.mkdir()
    # Inherit the root's group and its mode: shared with the job user when the root is.
    with contextlib.suppress(OSError):
        st = root.stat()
        os.chown(folder, -1, st.st_gid)
        os.chmod(folder, st.st_mode & 0o7777)
    return folder, True


def remove_empty(folder: Path) -> None:
    """Remove a folder made for a project that was not created after all (if still empty)."""
    with contextlib.suppress(OSError):
        folder.rmdir()


def check_at_run(settings: Settings, project_path: str) -> Path:
    """A project's folder at run time, checked again (the root or a symlink may have moved).

    Raises:
        InvalidInputError: It no longer resolves inside the projects root.
    """
    return resolve_inside(settings.resolved_projects_root, project_path)

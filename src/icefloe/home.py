"""The home folder: private to the server's user, with one part shared with job runs.

Layout (modes as made; the umask does not widen them):

```
<home>/              0700 (0710, group = the job user's group, when jobs run as another user)
  config.toml        0600
  platform.db*       0600   platform DB: keys, audit, runs (never readable by jobs)
  logs/ builds/      0700
  lake/              0700 (2770 shared): catalog.db, mlflow.db, warehouse/, mlartifacts/
  projects/          0700 (2770 shared): the default projects root
```

On a laptop the server and its jobs are the same user, so everything is simply private. When
the server runs as root, jobs run as an unprivileged user (:func:`job_identity`) that can
use the lake and the projects and nothing else of the home.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from icefloe.config import Settings
from icefloe.errors import ConfigError

PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600
SHARED_DIR = 0o2770  # setgid: files made inside keep the job group


@dataclass(frozen=True)
class JobIdentity:
    """The Unix user job runs execute as when it is not the server's own user."""

    name: str
    uid: int
    gid: int
    home: str


def job_identity(settings: Settings) -> JobIdentity | None:
    """Who job runs execute as: None for the server's own user (the laptop case).

    Raises:
        ConfigError: The configured user does not exist, is root without
            ``allow_root_jobs``, or the server is not root and so cannot switch users.
    """
    me = os.geteuid()
    name = settings.job_user or ("nobody" if me == 0 else "")
    if not name:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(f"job_user {name!r} does not exist on this machine: create it "
                          f"(useradd --system --user-group {name}) or set job_user") from None
    if entry.pw_uid == me:
        if me == 0 and not settings.allow_root_jobs:
            raise ConfigError("refusing to run jobs as root: set job_user to an unprivileged "
                              "user, or allow_root_jobs = true to accept the risk")
        return None
    if me != 0:
        raise ConfigError(f"job_user {name!r} needs a control plane running as root; "
                          f"unset job_user to run jobs as yourself")
    return JobIdentity(name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def unreachable(path: Path, ident: JobIdentity) -> str | None:
    """Why ``ident`` cannot read ``path`` (a folder on the way it may not enter), or None.

    Symlinks are followed: the real file and every folder above it must be reachable.
    """
    path = path.resolve()
    for part in [*reversed(path.parents), path]:
        try:
            st = part.stat()
        except OSError as exc:
            return f"{part}: {exc.strerror}"
        mode = st.st_mode
        need = (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH) if stat.S_ISDIR(mode) else \
            (stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)
        bit = need[0] if st.st_uid == ident.uid else need[1] if st.st_gid == ident.gid \
            else need[2]
        if not mode & bit:
            return f"{part} is mode {stat.S_IMODE(mode):o}, owner {st.st_uid}, group {st.st_gid}"
    return None


def create_file(path: Path, mode: int = 0o666) -> None:
    """Make an empty file (and its folders) if it is missing, with ``mode`` under the umask.

    SQLite makes database files 0644 before the umask, and its -wal/-shm files copy that
    mode: a database the job group must write is made here first, group-writable.
    """
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))


def let_jobs_reach_python() -> list[str]:
    """As root, let other users pass through (not list) the folders above icefloe's Python
    and package, so the job user can run them (a pyenv Python under /root, mode 0700, is
    otherwise out of its reach). Returns the folders changed; nothing when not root.
    """
    if os.geteuid() != 0:
        return []
    import sys

    import icefloe

    changed = []
    for target in (Path(sys.executable).resolve(), Path(icefloe.__file__).resolve()):
        for folder in target.parents:
            mode = stat.S_IMODE(folder.stat().st_mode)
            if not mode & 0o001:
                os.chmod(folder, mode | 0o001)
                changed.append(f"{folder} {mode:o} -> {mode | 0o001:o}")
    return changed


def umask_for(settings: Settings) -> int:
    """The umask icefloe's processes use: nothing for others, the group only when shared."""
    try:
        shared = job_identity(settings) is not None
    except ConfigError:
        shared = False
    return 0o007 if shared else 0o077


def apply_umask(settings: Settings) -> None:
    """Set this process's umask for the home (CLI commands and the control plane)."""
    os.umask(umask_for(settings))


def _make_dir(path: Path, mode: int, gid: int | None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if gid is not None and path.stat().st_gid != gid:
        os.chown(path, -1, gid)
    if stat.S_IMODE(path.stat().st_mode) != mode:
        os.chmod(path, mode)


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def share_tree(root: Path, gid: int) -> int:
    """Give the job group read-write on everything under ``root`` (made before it was shared).

    Returns:
        How many entries were changed.
    """
    changed = 0
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files, ""]:
            path = os.path.join(folder, name) if name else folder
            with contextlib.suppress(FileNotFoundError):
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    continue
                want = (stat.S_IMODE(st.st_mode) | 0o070) & ~0o007
                if stat.S_ISDIR(st.st_mode):
                    want |= 0o2000
                if st.st_gid != gid:
                    os.chown(path, -1, gid)
                    changed += 1
                if stat.S_IMODE(st.st_mode) != want:
                    os.chmod(path, want)
                    changed += 1
    return changed


def prepare_home(settings: Settings, *, share: bool = False) -> JobIdentity | None:
    """Create the home and its folders with the modes above (safe to run at every start).

    Args:
        settings: Whose home.
        share: Also give the job group access to everything already in the lake (a walk of
            the whole warehouse: done by ``icefloe init`` and ``icefloe up``).

    Returns:
        The job identity the layout was made for (None: jobs run as the server's user).
    """
    ident = job_identity(settings)
    gid = ident.gid if ident else None
    home = settings.home
    _make_dir(home, 0o710 if ident else PRIVATE_DIR, gid)
    for private in ("logs", "builds"):
        _make_dir(home / private, PRIVATE_DIR, None)
    shared_mode = SHARED_DIR if ident else PRIVATE_DIR
    lake = settings.lake_dir
    if lake != home:
        _make_dir(lake, shared_mode, gid)
        if ident and share:
            share_tree(lake, ident.gid)
    root = settings.resolved_projects_root
    if _inside(root, home) or not root.exists():
        _make_dir(root, shared_mode, gid)
    for name in ("config.toml", "platform.db", "platform.db-wal", "platform.db-shm"):
        path = home / name
        if path.exists() and stat.S_IMODE(path.stat().st_mode) != PRIVATE_FILE:
            os.chmod(path, PRIVATE_FILE)
    return ident


def exposure(settings: Settings) -> list[str]:
    """What in the home other users can reach (for ``icefloe doctor``); empty is good."""
    problems: list[str] = []
    home = settings.home
    if not home.exists():
        return problems
    for path in [home, *sorted(home.iterdir())]:
        if path.is_symlink():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o007:
            problems.append(f"{path} is mode {mode:o}: other users can "
                            f"{'read' if mode & 0o004 else 'reach'} it (chmod o-rwx)")
    return problems

"""Secrets for the CLI, read where ``ps`` cannot see them.

A command line is readable by every user of the machine (``ps``, ``/proc/PID/cmdline``) and
stays in the shell history, so a key is read, in this order, from:

- ``--KEY -``: standard input (prompted without echo on a terminal);
- ``--KEY-file PATH``: a file (surrounding whitespace stripped);
- ``$ENVVAR``.

``--KEY VALUE`` still works, with a warning saying why and what to use instead. Every command
that takes a key resolves it here: :func:`resolve_secret` with one :class:`SecretSource`.
"""

from __future__ import annotations

import getpass
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from icefloe.cli.output import warning
from icefloe.errors import InvalidInputError

STDIN = "-"


@dataclass(frozen=True)
class SecretSource:
    """Where one kind of secret may come from."""

    what: str  # "API key"
    flag: str  # "--api-key"
    file_flag: str  # "--api-key-file"
    envvar: str  # "ICEFLOE_API_KEY"

    @property
    def ways(self) -> str:
        """The safe ways to give this secret, for messages."""
        return f"${self.envvar}, {self.file_flag} PATH or {self.flag} - (read from stdin)"


API_KEY = SecretSource("API key", "--api-key", "--api-key-file", "ICEFLOE_API_KEY")
ACCESS_KEY = SecretSource("model access key", "--access-key", "--access-key-file",
                          "ICEFLOE_ACCESS_KEY")


def resolve_secret(source: SecretSource, value: str | None, file: Path | None, *,
                   required: bool = False) -> str | None:
    """The secret from ``--flag -`` (stdin), ``--flag-file``, the environment or a literal.

    Args:
        source: Which secret, and its flags and variable.
        value: The ``--flag`` value: ``-`` reads stdin; anything else is a literal (warned).
        file: The ``--flag-file`` value.
        required: Refuse when none is given (else None: the caller's default applies).

    Raises:
        InvalidInputError: Both flags given, a file that cannot be read, an empty secret, or
            none at all when ``required``.
    """
    if value is not None and file is not None:
        raise InvalidInputError(f"give {source.flag} or {source.file_flag}, not both")
    if value == STDIN:
        return _from_stdin(source)
    if value is not None:
        warning(f"{source.flag} VALUE shows the {source.what} to every user of this machine "
                f"(ps, /proc) and keeps it in the shell history; use {source.ways} instead")
        if not value.strip():
            raise InvalidInputError(f"{source.flag} is empty")
        return value.strip()
    if file is not None:
        return _from_file(source, file)
    env = os.environ.get(source.envvar, "").strip()
    if env:
        return env
    if required:
        raise InvalidInputError(f"no {source.what}: set {source.ways}")
    return None


def _from_file(source: SecretSource, path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InvalidInputError(f"{source.file_flag}: {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InvalidInputError(f"{source.file_flag}: cannot read {path}: {reason}") from exc
    secret = text.strip()
    if not secret:
        raise InvalidInputError(f"{source.file_flag}: {path} holds no {source.what}")
    return secret


def _from_stdin(source: SecretSource) -> str:
    try:
        if sys.stdin is not None and sys.stdin.isatty():
            text = getpass.getpass(f"{source.what}: ", stream=sys.stderr)
        else:
            text = sys.stdin.read() if sys.stdin is not None else ""
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise InvalidInputError(f"{source.flag} -: cannot read stdin: {exc}") from exc
    secret = text.strip()
    if not secret:
        raise InvalidInputError(f"{source.flag} -: no {source.what} on stdin")
    return secret

"""The environment of a job run (pure): built from an allowlist, never the server's own.

A run sees PATH, HOME, the locale and time zone, the icefloe variables that tell it where the
control plane and the lakehouse are (with its run token as its API key), and the job's own
variables. Variables that change how programs load code (``LD_PRELOAD``, ``PYTHONPATH``...)
may not be set by a job, and a job's variables may not pose as icefloe's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from icefloe.errors import InvalidInputError

PASSED_FROM_SERVER = ("LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "LC_NUMERIC",
                      "LC_TIME", "TZ")
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_LOADER = re.compile(r"(LD_|DYLD_|_?JAVA_TOOL_OPTIONS$|JDK_JAVA_OPTIONS$|PYTHON(PATH|HOME|"
                     r"STARTUP|INSPECT|USERBASE|EXECUTABLE|BREAKPOINT)$|PERL5?LIB$|"
                     r"RUBYOPT$|NODE_OPTIONS$|BASH_ENV$|ENV$|IFS$)")
MAX_VARIABLES = 200
MAX_VALUE = 32_768


def check_variables(variables: Mapping[str, object], what: str = "environment") -> None:
    """Refuse job variables that are malformed, too large, or not a job's to set.

    Raises:
        InvalidInputError: naming the variable and why.
    """
    if len(variables) > MAX_VARIABLES:
        raise InvalidInputError(f"job field {what!r} has {len(variables)} variables; the "
                                f"limit is {MAX_VARIABLES}")
    for name, value in variables.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidInputError(f"job field {what!r}: {str(name)[:100]!r} is not a "
                                    "variable name (letters, digits and '_')")
        if not isinstance(value, str):
            raise InvalidInputError(f"job field {what!r}: {name} must be a string")
        if len(value) > MAX_VALUE or "\x00" in value:
            raise InvalidInputError(f"job field {what!r}: {name} is over {MAX_VALUE} "
                                    "characters or holds a NUL")
        if name.startswith("ICEFLOE_"):
            raise InvalidInputError(f"job field {what!r}: {name} is set by icefloe for every "
                                    "run; a job may not set ICEFLOE_* variables")
        if _LOADER.match(name):
            raise InvalidInputError(f"job field {what!r}: {name} changes how programs load "
                                    "code; a job may not set it")


def run_environment(server: Mapping[str, str], *, home: str, bin_dir: str,
                    icefloe: Mapping[str, str], job: Mapping[str, str],
                    secrets: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of a run.

    Args:
        server: The server's environment: only the locale and time zone are taken from it.
        home: The run's HOME (a scratch folder of its own).
        bin_dir: icefloe's interpreter folder, first on PATH (its ``python``, ``icefloe``).
        icefloe: ``ICEFLOE_*`` variables: URL, run token, run and job ids, lakehouse settings.
        job: The job's own variables.
        secrets: The job's secret variables, opened for this run.
    """
    env = {"PATH": f"{bin_dir}:{SAFE_PATH}", "HOME": home, "PYTHONUNBUFFERED": "1",
           "LANG": "C.UTF-8"}
    for name in PASSED_FROM_SERVER:
        if name in server:
            env[name] = server[name]
    env.update(job)
    env.update(secrets)
    env.update(icefloe)  # last: nothing a job says can replace where it reports to
    return env

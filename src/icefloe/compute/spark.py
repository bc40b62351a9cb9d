"""The Spark session factory: local mode by default, any master URL from the settings.

Starting a session takes seconds (a JVM boots); :func:`start_spark_session` does it in a
background thread so that the caller can do its own set-up meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icefloe.compute.java import find_java
from icefloe.compute.native import spark_config
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
    workers with this interpreter, keeps times in UTC and turns Arrow transfers on. When
    Iceberg's Spark runtime is fetched, the session has a catalog named like icefloe's
    (``settings.catalog_name``) over the same catalog database and warehouse, so Spark SQL
    reads and writes icefloe's tables natively (see :mod:`icefloe.compute.native`).

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
    # Spark's own Iceberg catalog over PyIceberg's database, when its jars are fetched.
    secrets: dict[str, str] = {}
    for key, value in {**spark_config(settings), **(config or {})}.items():
        if SECRET_CONF.search(key):
            secrets[key] = value
        else:
            builder = builder.config(key, value)
    with _secret_properties(scratch, secrets):
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


# pyspark starts its JVM with every setting on the command line, where any local user's
# `ps` reads it: secrets go in a private properties file instead, gone once Spark started.
SECRET_CONF = re.compile(r"(secret|password|token)", re.IGNORECASE)


@contextlib.contextmanager
def _secret_properties(folder: Path, secrets: dict[str, str]) -> Iterator[None]:
    if not secrets:
        yield
        return
    fd, path = tempfile.mkstemp(prefix="secrets-", suffix=".conf", dir=folder)  # 0600
    with os.fdopen(fd, "w") as out:
        for key, value in secrets.items():
            escaped = value.replace("\\", "\\\\").replace("\n", "\\n")  # Java properties
            out.write(f"{key}={escaped}\n")
    previous = os.environ.get("PYSPARK_SUBMIT_ARGS")
    os.environ["PYSPARK_SUBMIT_ARGS"] = f"--properties-file {path} pyspark-shell"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("PYSPARK_SUBMIT_ARGS", None)
        else:
            os.environ["PYSPARK_SUBMIT_ARGS"] = previous
        os.unlink(path)


class SparkStart:
    """A Spark session being started in a background (daemon) thread.

    Create it with :func:`start_spark_session`; :meth:`result` waits for the session.
    """

    def __init__(self, settings: Settings | None, kwargs: dict[str, Any]) -> None:
        self._session: SparkSession | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(settings, kwargs),
                                        name="icefloe-spark-start", daemon=True)
        self._thread.start()

    def _run(self, settings: Settings | None, kwargs: dict[str, Any]) -> None:
        try:
            self._session = spark_session(settings, **kwargs)
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc
        finally:
            self._done.set()

    def result(self) -> SparkSession:
        """The session, once started.

        Raises:
            Whatever starting it raised (e.g. ConfigError when there is no usable Java).
        """
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._session is not None
        _cancel_jobs_on_interrupt(self._session)
        return self._session


def start_spark_session(settings: Settings | None = None, **kwargs: Any) -> SparkStart:
    """Start :func:`spark_session` (same arguments) in a background thread; returns at once."""
    return SparkStart(settings, kwargs)


def _cancel_jobs_on_interrupt(spark: SparkSession) -> None:
    """Ctrl-C cancels the running Spark jobs, as PySpark arranges when the session is
    created in the main thread (it cannot from a background one)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return  # someone (PySpark itself, or the application) already chose a handler

    def cancel(signum: int, frame: Any) -> None:
        spark.sparkContext.cancelAllJobs()
        raise KeyboardInterrupt()

    signal.signal(signal.SIGINT, cancel)

"""Spark applications (pure): the ``spark-submit`` job kind's settings and its command.

A job of kind ``spark-submit`` runs its script as a Spark application on the configured
master (a standalone master plays CDE's virtual cluster) in client mode: the driver is the
run's own process, so the application's log is the run's log, its outcome is the run's
outcome, and stopping the run ends the application. Driver and executor settings come
from the job (``spark``) and, per run, from the runs API or CDE's ``overrides.spark``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from icefloe.errors import InvalidInputError

SIZE = re.compile(r"[1-9][0-9]{0,6}[kKmMgGtT]?")
CONF_KEY = re.compile(r"spark\.[A-Za-z0-9_.\-]{1,200}")
MAX_CONF = 100
MAX_CONF_VALUE = 4096
MAX_CORES = 1024
SIZES = ("driver_memory", "executor_memory")
COUNTS = ("driver_cores", "executor_cores", "num_executors")
SETTINGS = (*SIZES, *COUNTS, "conf")
# CDE's names for the same settings (its job API and ``overrides.spark``).
CDE_NAMES = {"driverMemory": "driver_memory", "executorMemory": "executor_memory",
             "driverCores": "driver_cores", "executorCores": "executor_cores",
             "numExecutors": "num_executors", "conf": "conf"}
# Set by icefloe for every application: where it runs and what it is called.
RESERVED_CONF = frozenset({"spark.master", "spark.submit.deployMode", "spark.app.name",
                           "spark.submit.pyFiles"})


def check_spark(value: Any, what: str = "spark") -> dict[str, Any]:
    """Spark settings checked and normalised (only those given).

    Args:
        value: ``{"driver_memory": "1g", "executor_cores": 2, "conf": {...}}``; None or
            ``{}`` for none.
        what: The field's name in error messages.

    Raises:
        InvalidInputError: An unknown setting or a value that breaks its rule, named.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"job field {what!r} must be an object of Spark settings")
    unknown = sorted(set(value) - set(SETTINGS))
    if unknown:
        raise InvalidInputError(f"job field {what!r}: unknown setting(s) "
                                f"{', '.join(map(str, unknown))[:300]}; known: "
                                f"{', '.join(SETTINGS)}")
    out: dict[str, Any] = {}
    for name in SIZES:
        if value.get(name) is not None:
            size = value[name]
            if not isinstance(size, str) or not SIZE.fullmatch(size):
                raise InvalidInputError(f"job field {what!r}: {name} must be a size like "
                                        f"'512m' or '2g', got {str(size)[:50]!r}")
            out[name] = size.lower()
    for name in COUNTS:
        if value.get(name) is not None:
            count = value[name]
            if not isinstance(count, int) or isinstance(count, bool) or \
                    not 1 <= count <= MAX_CORES:
                raise InvalidInputError(f"job field {what!r}: {name} must be an integer from "
                                        f"1 to {MAX_CORES}")
            out[name] = count
    if value.get("conf"):
        out["conf"] = _conf(value["conf"], what)
    return out


def _conf(conf: Any, what: str) -> dict[str, str]:
    if not isinstance(conf, Mapping) or len(conf) > MAX_CONF:
        raise InvalidInputError(f"job field {what!r}: conf must map at most {MAX_CONF} "
                                "Spark properties to string values")
    out: dict[str, str] = {}
    for key, val in conf.items():
        if not isinstance(key, str) or not CONF_KEY.fullmatch(key):
            raise InvalidInputError(f"job field {what!r}: {str(key)[:100]!r} is not a Spark "
                                    "property (spark.*: letters, digits, '.', '_', '-')")
        if key in RESERVED_CONF:
            raise InvalidInputError(f"job field {what!r}: {key} is set by icefloe for every "
                                    "application")
        if not isinstance(val, str | int | float) or isinstance(val, bool):
            raise InvalidInputError(f"job field {what!r}: {key} must be a string")
        text = str(val)
        if len(text) > MAX_CONF_VALUE or any(c in text for c in "\x00\n\r"):
            raise InvalidInputError(f"job field {what!r}: {key} is over {MAX_CONF_VALUE} "
                                    "characters or holds a line break or NUL")
        out[key] = text
    return out


def from_cde(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """CDE's ``overrides.spark`` settings (camelCase) under icefloe's names, checked."""
    return check_spark({CDE_NAMES[k]: v for k, v in overrides.items() if v is not None},
                       "overrides.spark")


def merged(job: Mapping[str, Any] | None, run: Mapping[str, Any] | None) -> dict[str, Any]:
    """A run's settings: the job's, with the run's own on top (``conf`` merged by key)."""
    out = {k: v for k, v in (job or {}).items() if k != "conf"}
    out.update({k: v for k, v in (run or {}).items() if k != "conf"})
    conf = {**(job or {}).get("conf", {}), **(run or {}).get("conf", {})}
    if conf:
        out["conf"] = conf
    return out


def application_name(job_name: str, run_id: str) -> str:
    """The name the master lists a run's application under."""
    return f"icefloe-{job_name}-{run_id}"


def submit_command(spark_submit: str, *, master: str, name: str, spark: Mapping[str, Any],
                   script: str, arguments: list[str]) -> list[str]:
    """The ``spark-submit`` argument list (exec'd as a list: no shell ever reads it)."""
    conf: dict[str, str] = {}
    if "executor_cores" in spark:
        conf["spark.executor.cores"] = str(spark["executor_cores"])
    if "num_executors" in spark:
        conf["spark.executor.instances"] = str(spark["num_executors"])
        # A standalone master knows no executor count: it caps cores instead.
        conf["spark.cores.max"] = str(spark["num_executors"] * spark.get("executor_cores", 1))
    if "driver_cores" in spark:
        conf["spark.driver.cores"] = str(spark["driver_cores"])
    conf.update(spark.get("conf", {}))
    command = [spark_submit, "--master", master, "--deploy-mode", "client", "--name", name]
    if "driver_memory" in spark:
        command += ["--driver-memory", spark["driver_memory"]]
    if "executor_memory" in spark:
        command += ["--executor-memory", spark["executor_memory"]]
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    return [*command, script, *arguments]

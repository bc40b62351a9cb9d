"""What a job may be (pure): the rules of its fields, checked once, with errors naming the
field.

The store applies the result and checks what needs the database (the parent exists in the
same project, no dependency cycle, a unique name); the REST bodies only describe the shapes
(types and lengths) for the OpenAPI document.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from icefloe.errors import InvalidInputError
from icefloe.jobs.environment import check_variables
from icefloe.jobs.submit import check_spark
from icefloe.names import valid_name

FIELDS = ("name", "script", "kernel", "arguments", "environment", "secret_environment",
          "cpu", "memory", "timeout", "retries", "parent_job_id", "schedule", "paused",
          "spark")
# python3 and spark run the script with icefloe's Python (spark: it makes its own session);
# spark-submit submits it as an application to the Spark master (see jobs.submit).
KERNELS = ("python3", "spark", "spark-submit")
COUNTS = ("cpu", "memory", "timeout", "retries")
MAX_TEXT = 10_000
MAX_INT = 2**31 - 1
MAX_SCRIPT = 1024
MAX_SCHEDULE = 255


def _script(script: Any) -> str:
    if not isinstance(script, str) or not script.strip():
        raise InvalidInputError("job field 'script' is required: a path inside the project")
    path = PurePosixPath(script)
    if len(script) > MAX_SCRIPT or path.is_absolute() or ".." in path.parts or "\\" in script \
            or "\x00" in script:
        raise InvalidInputError(
            f"job field 'script' must be a relative path inside the project, got "
            f"{script[:200]!r}")
    return script


def _schedule(value: Any) -> str:
    schedule = value or ""
    if not isinstance(schedule, str) or len(schedule) > MAX_SCHEDULE:
        raise InvalidInputError("job field 'schedule' must be a cron expression")
    if schedule:
        from croniter import croniter

        if not croniter.is_valid(schedule):
            raise InvalidInputError(f"job field 'schedule' is not a cron expression: "
                                    f"{schedule!r}")
    return schedule


def check_job_fields(fields: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """The given job fields checked and normalised (only those given).

    ``secret_environment`` is passed through as it is: it arrives sealed (see
    :mod:`icefloe.jobs.vault`), its names checked before sealing.

    Raises:
        InvalidInputError: An unknown field, a missing required one, or a value that breaks
            its rule; the message names the field.
    """
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise InvalidInputError(f"unknown job field(s): {', '.join(unknown)}")
    if creating:
        for required in ("name", "script"):
            if required not in fields:
                raise InvalidInputError(f"job field {required!r} is required")
    out: dict[str, Any] = {}
    if "name" in fields:
        out["name"] = valid_name("job", fields["name"])
    if "script" in fields:
        out["script"] = _script(fields["script"])
    if "kernel" in fields:
        if fields["kernel"] not in KERNELS:
            raise InvalidInputError(f"job field 'kernel' must be one of {', '.join(KERNELS)}")
        out["kernel"] = fields["kernel"]
    if "arguments" in fields:
        if not isinstance(fields["arguments"], str) or len(fields["arguments"]) > MAX_TEXT:
            raise InvalidInputError(f"job field 'arguments' must be a string of at most "
                                    f"{MAX_TEXT} characters")
        out["arguments"] = fields["arguments"]
    if "environment" in fields:
        env = fields["environment"] or {}
        if not isinstance(env, dict):
            raise InvalidInputError(
                "job field 'environment' must map variable names to string values")
        check_variables(env)
        out["environment"] = dict(env)
    if "secret_environment" in fields:
        out["secret_environment"] = fields["secret_environment"] or ""
    for field in COUNTS:
        if field in fields:
            value = fields[field]
            if not isinstance(value, int) or isinstance(value, bool) or not \
                    0 <= value <= MAX_INT:
                raise InvalidInputError(f"job field {field!r} must be an integer from 0 to "
                                        f"{MAX_INT}")
            out[field] = value
    if "schedule" in fields:
        out["schedule"] = _schedule(fields["schedule"])
    if "spark" in fields:
        out["spark"] = check_spark(fields["spark"])
    if "paused" in fields:
        out["paused"] = bool(fields["paused"])
    if "parent_job_id" in fields:
        out["parent_job_id"] = fields["parent_job_id"] or None
    return out

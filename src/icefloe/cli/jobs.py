"""``icefloe project ...`` and ``icefloe job ...``: the control plane from the shell.

These commands talk HTTP to a running ``icefloe up`` (``--url``/``$ICEFLOE_URL``; the API key
from ``$ICEFLOE_API_KEY``, ``--api-key-file`` or ``--api-key -``, see
:mod:`icefloe.cli.remote`). Projects and jobs can be named or given by id.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import typer

from icefloe.cli.output import err_console, error, print_json, print_rows, steps, success
from icefloe.cli.remote import JSON, KEY, KEY_FILE, URL, connect
from icefloe.client import TERMINAL, chain_failures
from icefloe.errors import InvalidInputError
from icefloe.jobs.environment import check_variables

RUN_COLUMNS = ["id", "status", "trigger", "triggered_by", "exit_code", "created_at",
               "finished_at"]

LOG_TAIL_LINES = 20
LOG_TAIL_BYTES = 64 * 1024
MAX_OFFSET = 2**53 - 1  # the largest offset the logs route takes: answers the size only

project_app = typer.Typer(help="Projects on the control plane.", no_args_is_help=True)
job_app = typer.Typer(help="Jobs and their runs on the control plane.", no_args_is_help=True)


@project_app.command("list")
def project_list(url: str | None = URL, api_key: str | None = KEY,
                 api_key_file: Path | None = KEY_FILE, as_json: bool = JSON) -> None:
    """List projects."""
    with connect(url, api_key, api_key_file) as client:
        rows = client.list_projects()
    if as_json:
        print_json(rows)
    else:
        print_rows(rows, ["id", "name", "path", "created_at"])


@project_app.command("create")
def project_create(name: str, path: str | None = typer.Option(
        None, "--path", help="Existing folder with the job scripts."),
        description: str = typer.Option("", "--description"),
        url: str | None = URL, api_key: str | None = KEY,
        api_key_file: Path | None = KEY_FILE, as_json: bool = JSON) -> None:
    """Create a project."""
    with connect(url, api_key, api_key_file) as client:
        project = client.create_project(name, path, description)
    if as_json:
        print_json(project)
    else:
        success(f"created project {project['name']} ({project['id']}) at {project['path']}")


@project_app.command("delete")
def project_delete(name: str = typer.Argument(..., metavar="NAME_OR_ID"),
                   url: str | None = URL, api_key: str | None = KEY,
                   api_key_file: Path | None = KEY_FILE, as_json: bool = JSON) -> None:
    """Delete a project with its jobs and runs; its folder stays on disk."""
    with connect(url, api_key, api_key_file) as client:
        project = client.project(name)
        client.delete_project(project["id"])
    if as_json:
        print_json({"id": project["id"], "name": project["name"], "path": project["path"],
                    "deleted": True, "folder_kept": True})
    else:
        success(f"deleted project {project['name']} ({project['id']}) with its jobs and runs; "
                f"its folder {project['path']} is kept on disk")


def _secret_environment(names: list[str]) -> dict[str, str]:
    """``--secret-env NAME``: each value from this process's environment, never argv."""
    secrets: dict[str, str] = {}
    for name in names:
        value = os.environ.get(name)
        if value is None:
            raise InvalidInputError(f"--secret-env {name}: the variable {name} is not set in "
                                    "this environment (export it, then run the command)")
        secrets[name] = value
    check_variables(secrets, "secret_environment")
    return secrets


def _spark_settings(driver_memory: str | None, executor_memory: str | None,
                    executor_cores: int | None, num_executors: int | None,
                    conf: list[str]) -> dict[str, Any]:
    """The ``--driver-memory``... options as a job's ``spark`` field (checked by the API)."""
    out: dict[str, Any] = {k: v for k, v in (
        ("driver_memory", driver_memory), ("executor_memory", executor_memory),
        ("executor_cores", executor_cores), ("num_executors", num_executors)) if v is not None}
    properties = {}
    for item in conf:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--conf {item!r}: expected spark.KEY=VALUE")
        properties[key] = value
    if properties:
        out["conf"] = properties
    return out


@job_app.command("create")
def job_create(
    project: str = typer.Option(..., "--project", "-p", help="Project name or id."),
    name: str = typer.Option(..., "--name"),
    script: str = typer.Option(..., "--script", help="Path of the script in the project."),
    arguments: str = typer.Option("", "--arguments"),
    env: list[str] = typer.Option([], "--env", help="NAME=VALUE (repeatable; not secret: "
                                                    "anyone who can read the job sees it)."),
    secret_env: list[str] = typer.Option(
        [], "--secret-env", metavar="NAME",
        help="Send the variable NAME of this shell's environment as a secret of the job "
             "(repeatable): stored encrypted, never shown by the API (listed as ***)."),
    timeout: int = typer.Option(0, "--timeout", help="Seconds; 0 = none."),
    retries: int = typer.Option(0, "--retries"),
    parent: str | None = typer.Option(None, "--parent", help="Parent job name or id."),
    schedule: str = typer.Option("", "--schedule", help="Cron expression."),
    kernel: str = typer.Option(
        "python3", "--kernel",
        help="python3, spark (the script makes its own Spark session) or spark-submit (the "
             "script is submitted to the Spark master as an application)."),
    driver_memory: str | None = typer.Option(None, "--driver-memory", help="spark-submit: "
                                             "e.g. 1g."),
    executor_memory: str | None = typer.Option(None, "--executor-memory",
                                               help="spark-submit: e.g. 2g."),
    executor_cores: int | None = typer.Option(None, "--executor-cores", help="spark-submit."),
    num_executors: int | None = typer.Option(None, "--num-executors", help="spark-submit."),
    spark_conf: list[str] = typer.Option([], "--conf", metavar="spark.KEY=VALUE",
                                         help="spark-submit: a Spark property (repeatable)."),
    url: str | None = URL, api_key: str | None = KEY, api_key_file: Path | None = KEY_FILE,
    as_json: bool = JSON,
) -> None:
    """Create a job (a parent's success starts it)."""
    environment = {}
    for item in env:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--env {item!r}: expected NAME=VALUE")
        environment[key] = value
    secrets = _secret_environment(secret_env)
    both = sorted(set(environment) & set(secrets))
    if both:
        raise InvalidInputError(f"{', '.join(both)}: given by both --env and --secret-env")
    fields: dict[str, Any] = {"secret_environment": secrets} if secrets else {}
    spark = _spark_settings(driver_memory, executor_memory, executor_cores, num_executors,
                            spark_conf)
    if spark:
        fields["spark"] = spark
    with connect(url, api_key, api_key_file) as client:
        pid = client.project(project)["id"]
        parent_id = client.job(pid, parent)["id"] if parent else None
        job = client.create_job(pid, name, script, arguments=arguments, environment=environment,
                                timeout=timeout, retries=retries, parent_job_id=parent_id,
                                schedule=schedule, kernel=kernel, **fields)
    if as_json:
        print_json(job)
    else:
        hidden = f"; secret variables: {', '.join(sorted(secrets))}" if secrets else ""
        success(f"created job {job['name']} ({job['id']}){hidden}")


@job_app.command("list")
def job_list(project: str = typer.Option(..., "--project", "-p"), url: str | None = URL,
             api_key: str | None = KEY, api_key_file: Path | None = KEY_FILE,
             as_json: bool = JSON) -> None:
    """List the jobs of a project."""
    with connect(url, api_key, api_key_file) as client:
        rows = client.list_jobs(client.project(project)["id"])
    if as_json:
        print_json(rows)
    else:
        print_rows(rows, ["id", "name", "script", "parent_id", "schedule", "timeout"])


@job_app.command("run")
def job_run(
    job: str,
    project: str = typer.Option(..., "--project", "-p"),
    wait: bool = typer.Option(False, "--wait", help="Wait and exit with the run's outcome."),
    url: str | None = URL, api_key: str | None = KEY, api_key_file: Path | None = KEY_FILE,
    as_json: bool = JSON,
) -> None:
    """Start a run of a job; with --wait, follow it and the runs it starts (children, retries)
    and exit 0 only if all of them end well: a failure prints its reason and log tail.

    While waiting, each run's status changes are shown on stderr as they happen; stdout has
    only the result."""
    with connect(url, api_key, api_key_file) as client:
        pid = client.project(project)["id"]
        jid = client.job(pid, job)["id"]
        run = client.create_run(pid, jid)
        if not wait:
            if as_json:
                print_json(run)
            else:
                success(f"run {run['id']} of {job}: {run['status']} (not waiting)")
            return
        names = {j["id"]: j["name"] for j in client.list_jobs(pid)}

        def ended(done: dict) -> None:
            line = f"run {done['id']} of {names.get(done['job_id'], done['job_id'])}: " \
                   f"{done['status']}"
            if done["status"] == "ENGINE_SUCCEEDED":
                success(line)
                return
            error(f"{line}: {done['reason'] or 'no reason recorded'}", label="failed:")
            size = client.run_logs(pid, done["job_id"], done["id"], offset=MAX_OFFSET)["size"]
            tail = client.run_logs(pid, done["job_id"], done["id"],
                                   offset=max(0, size - LOG_TAIL_BYTES))
            lines = tail["content"].splitlines()[-LOG_TAIL_LINES:]
            if lines:
                err_console.print(f"  last {len(lines)} log lines:")
                for text in lines:
                    err_console.print(f"  | {text}")

        with steps("job run") as step:
            def changed(now: dict) -> None:
                if now["status"] not in TERMINAL:  # the end is reported by ended()
                    step(f"run {now['id']} of {names.get(now['job_id'], now['job_id'])}: "
                         f"{now['status']}")

            step(f"started run {run['id']} of {job}; following it and the runs it starts")
            runs = client.wait_chain(pid, jid, run["id"], on_end=ended, on_status=changed)
    failures = chain_failures(runs)
    if as_json:
        print_json(runs[0] if len(runs) == 1 else {"run": runs[0], "chain": runs,
                                                   "failed": [r["id"] for r in failures]})
    if failures:
        raise typer.Exit(1)


@job_app.command("runs")
def job_runs(job: str, project: str = typer.Option(..., "--project", "-p"),
             url: str | None = URL, api_key: str | None = KEY,
             api_key_file: Path | None = KEY_FILE, as_json: bool = JSON) -> None:
    """List the runs of a job, newest first."""
    with connect(url, api_key, api_key_file) as client:
        pid = client.project(project)["id"]
        rows = client.list_runs(pid, client.job(pid, job)["id"])
    if as_json:
        print_json(rows)
    else:
        print_rows(rows, RUN_COLUMNS)


@job_app.command("logs")
def job_logs(
    job: str, run: str = typer.Option(..., "--run", help="Run id."),
    project: str = typer.Option(..., "--project", "-p"),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until it ends."),
    url: str | None = URL, api_key: str | None = KEY, api_key_file: Path | None = KEY_FILE,
) -> None:
    """Print a run's log (stdout and stderr) as it is, optionally following it."""
    with connect(url, api_key, api_key_file) as client:
        pid = client.project(project)["id"]
        jid = client.job(pid, job)["id"]
        offset = 0
        while True:
            chunk = client.run_logs(pid, jid, run, offset)
            sys.stdout.write(chunk["content"])  # raw text: never Rich markup
            sys.stdout.flush()
            offset = chunk["next_offset"]
            if not follow or (chunk["status"] in TERMINAL and not chunk["content"]):
                break
            time.sleep(0.5)


@job_app.command("stop")
def job_stop(job: str, run: str = typer.Option(..., "--run"),
             project: str = typer.Option(..., "--project", "-p"),
             url: str | None = URL, api_key: str | None = KEY,
             api_key_file: Path | None = KEY_FILE, as_json: bool = JSON) -> None:
    """Stop a run (its whole process group)."""
    with connect(url, api_key, api_key_file) as client:
        pid = client.project(project)["id"]
        result = client.stop_run(pid, client.job(pid, job)["id"], run)
    if as_json:
        print_json(result)
    elif result["status"] == "ENGINE_STOPPED":
        success(f"run {run}: stopped")
    else:
        err_console.print(f"run {run} had already ended: {result['status']}")


def register(app: typer.Typer) -> None:
    """Add ``project`` and ``job`` to the root app."""
    app.add_typer(project_app, name="project")
    app.add_typer(job_app, name="job")

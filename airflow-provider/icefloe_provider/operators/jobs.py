"""Run an icefloe job from Airflow and wait for it (the CML/CDE job operators' role).

The run request carries an idempotency key made of the DAG id, the DAG run id, the task id
and the map index (not the try number): a retried task, or one whose worker restarted,
re-attaches to the run an earlier try started, if it is still going or succeeded, instead
of starting a second one. A run that failed, was stopped or timed out is not re-attached
to: the retry starts the next run (its key gets ``#2``, ``#3``... so each generation is
found again in turn).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from icefloe_provider.compat import AirflowException, BaseOperator, BaseOperatorLink, XCom
from icefloe_provider.hooks.icefloe import IcefloeApiError, IcefloeHook
from icefloe_provider.triggers.runs import ENDED, IcefloeRunTrigger

RUN_URL_KEY = "icefloe_run_url"
MAX_LOG_READS = 50  # chunks per poll: a chatty run cannot hold the task in one poll
MAX_KEY = 240  # the server keeps 255 characters; room for "#<generation>"
UNSUCCESSFUL = ENDED - {"ENGINE_SUCCEEDED"}
MAX_GENERATIONS = 1000


def idempotency_key(context: Any) -> str:
    """``airflow:<dag id>:<run id>:<task id>:<map index>`` of a task instance (hashed when
    longer than the server keeps, so long ids never lose the map index)."""
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    key = f"airflow:{ti.dag_id}:{ti.run_id}:{ti.task_id}:{map_index}"
    if len(key) > MAX_KEY:
        key = "airflow:sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


class IcefloeRunLink(BaseOperatorLink):
    """The task's run in icefloe's web UI (its page: status, trigger, the log tailed live)."""

    name = "icefloe run"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        """The URL the task pushed when it started (or found) its run."""
        return str(XCom.get_value(ti_key=ti_key, key=RUN_URL_KEY) or "")


class IcefloeJobRunOperator(BaseOperator):
    """Run an icefloe job by project and job name, stream its log and wait for it.

    Args:
        project: The project's name (or id).
        job: The job's name (or id) in that project.
        arguments: The run's arguments instead of the job's (templated).
        env: Variables added to the job's for this run (templated).
        wait: Wait for the run to end; the task fails unless it succeeded.
        timeout: Seconds to wait before the run is stopped and the task fails (None: no
            limit).
        poll_interval: Seconds between status checks.
        deferrable: Wait in the triggerer instead of a worker slot.
        icefloe_conn_id: The ``icefloe`` connection.

    The run id is the task's return value (XCom); the run's URL is the ``icefloe run``
    link. Killing the task stops the run.
    """

    template_fields: Sequence[str] = ("project", "job", "arguments", "env")
    operator_extra_links = (IcefloeRunLink(),)
    ui_color = "#d6eaf8"

    def __init__(self, *, project: str, job: str, arguments: str | None = None,
                 env: dict[str, str] | None = None, wait: bool = True,
                 timeout: float | None = None, poll_interval: float = 10,
                 deferrable: bool = False, icefloe_conn_id: str = IcefloeHook.default_conn_name,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.project = project
        self.job = job
        self.arguments = arguments
        self.env = env
        self.wait = wait
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.deferrable = deferrable
        self.icefloe_conn_id = icefloe_conn_id
        self._ids: tuple[str, str, str] | None = None
        self._ended = False

    @property
    def hook(self) -> IcefloeHook:
        """The hook over this task's connection."""
        return IcefloeHook(self.icefloe_conn_id)

    def _what(self) -> str:
        return f"job {self.job!r} in project {self.project!r}"

    def execute(self, context: Any) -> str:
        """Start (or re-attach to) the run, then wait for it unless ``wait`` is off."""
        hook = self.hook
        project_id = hook.project_id(self.project)
        job_id = hook.job_id(project_id, self.job, self.project)
        base = idempotency_key(context)
        key, generation = base, 1
        while True:
            run, started = hook.start_run(project_id, job_id, arguments=self.arguments,
                                          environment=self.env, idempotency_key=key,
                                          what=self._what())
            if started or run["status"] not in UNSUCCESSFUL or generation >= MAX_GENERATIONS:
                break
            self.log.info("run %s of an earlier try ended %s: starting the next run",
                          run["id"], run["status"])
            generation += 1
            key = f"{base}#{generation}"
        run_id = str(run["id"])
        self._ids = (project_id, job_id, run_id)
        url = f"{hook.base_url}/ui/runs/{run_id}"
        context["ti"].xcom_push(key=RUN_URL_KEY, value=url)
        if started:
            self.log.info("started run %s of %s: %s", run_id, self._what(), url)
        else:
            self.log.info("re-attached to run %s of %s, started by an earlier try of this "
                          "task (now %s): %s", run_id, self._what(), run["status"], url)
        if not self.wait:
            return run_id
        if self.deferrable and run["status"] not in ENDED:
            deadline = time.time() + self.timeout if self.timeout else None
            self.defer(trigger=IcefloeRunTrigger(self.icefloe_conn_id, project_id, job_id,
                                                 run_id, self.poll_interval, deadline),
                       method_name="execute_complete",
                       # The trigger's own deadline ends the wait; this one is a backstop.
                       timeout=timedelta(seconds=self.timeout * 2 + 60) if self.timeout
                       else None)
        try:
            return self._wait(hook)
        except BaseException as exc:
            # Interrupted while waiting (execution_timeout, SIGTERM): the run must not go
            # on without its task. An unreachable server cannot be asked to stop it.
            if not self._ended and not isinstance(exc, IcefloeApiError):
                self.on_kill()
            raise

    def _wait(self, hook: IcefloeHook) -> str:
        assert self._ids is not None
        offset = 0
        deadline = time.monotonic() + self.timeout if self.timeout else None
        while True:
            offset = self._stream_log(hook, offset)
            run = hook.get_run(*self._ids)
            if run["status"] in ENDED:
                self._stream_log(hook, offset)
                return self._outcome(run)
            if deadline is not None and time.monotonic() >= deadline:
                self._give_up(hook)
            time.sleep(self.poll_interval)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> str:
        """Back from the trigger: print the run's log, then succeed or fail as it did."""
        hook = self.hook
        if event.get("status") == "error":
            ids = event.get("ids")
            if ids:  # the task fails: its run must not go on without it
                self._ids = (str(ids[0]), str(ids[1]), str(ids[2]))
                try:
                    self.on_kill()
                except AirflowException as exc:
                    self.log.warning("could not stop run %s: %s", ids[2], exc)
            raise AirflowException(f"waiting for the run of {self._what()} failed: "
                                   f"{event.get('message')}")
        run = event["run"]
        self._ids = (str(run["project_id"]), str(run["job_id"]), str(run["id"]))
        if event["status"] == "timeout":
            self._give_up(hook)
        self._stream_log(hook, 0)
        return self._outcome(run)

    def _stream_log(self, hook: IcefloeHook, offset: int) -> int:
        """Copy the run's new log lines into the task log; returns the next offset."""
        assert self._ids is not None
        for _ in range(MAX_LOG_READS):
            chunk = hook.run_logs(*self._ids, offset=offset)
            for line in chunk["content"].splitlines():
                self.log.info("[run %s] %s", self._ids[2][:8], line)
            offset = chunk["next_offset"]
            if offset >= chunk["size"] or not chunk["content"]:
                break
        return offset

    def _outcome(self, run: dict[str, Any]) -> str:
        self._ended = True
        if run["status"] != "ENGINE_SUCCEEDED":
            reason = run.get("reason") or f"exit code {run.get('exit_code')}"
            raise AirflowException(f"run {run['id']} of {self._what()} ended "
                                   f"{run['status']}: {reason}")
        self.log.info("run %s of %s succeeded", run["id"], self._what())
        return str(run["id"])

    def _give_up(self, hook: IcefloeHook) -> None:
        assert self._ids is not None
        hook.stop_run(*self._ids)
        self._ended = True
        raise AirflowException(f"run {self._ids[2]} of {self._what()} did not end within "
                               f"{self.timeout:g} s; it was stopped")

    def on_kill(self) -> None:
        """The task was killed: stop the run it is waiting for."""
        if self._ids is not None and not self._ended:
            self._ended = True
            self.log.info("stopping run %s of %s", self._ids[2], self._what())
            self.hook.stop_run(*self._ids)

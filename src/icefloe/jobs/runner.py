"""Running jobs: subprocesses in their own process groups, logs, timeouts, stop, children,
retries, cron ticks, and recovery after a control-plane restart.

One :class:`Runner` lives in each control plane (a node, see :mod:`icefloe.cluster.nodes`);
its :meth:`tick` is called by a background thread. All run state lives in the platform DB:
a queued run is claimed by exactly one node (a conditional update), the node renews its
lease by heartbeat, and when a node's lease runs out (it died, or was restarted) the others
fail its runs, retrying them when the job says so. A run stopped through another node is
ended by the node that runs it.

A run is untrusted code. It starts under :mod:`icefloe.jobs.launcher` (which stops the run
if the control plane dies), as the job user when the server is root, in an environment
built from an allowlist (:mod:`icefloe.jobs.environment`), with a run token as its only
credential; the token ends with the run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from icefloe.auth import keys
from icefloe.cluster import nodes
from icefloe.config import Settings
from icefloe.errors import ConfigError, IcefloeError
from icefloe.happenings import Actor, Happening, emit
from icefloe.home import job_identity, unreachable
from icefloe.jobs import folders, launcher, states, submit, vault
from icefloe.jobs.environment import run_environment
from icefloe.store import repo
from icefloe.store.db import Database
from icefloe.store.orm import Job, Project, Run
from icefloe.timefmt import stored_utc

log = logging.getLogger(__name__)
KILL_GRACE_S = 3.0
RETRY_BACKOFF_S = 1.0


@dataclass
class _Live:
    run_id: str
    job_id: str
    process: subprocess.Popen[bytes]
    deadline: float | None
    log_file: BinaryIO
    scratch: str
    stop_requested: bool = False


# How a run's end is told on the happenings bus.
_HAPPENING_STATE = {states.SUCCEEDED: "COMPLETE", states.FAILED: "FAIL",
                    states.TIMEDOUT: "FAIL", states.STOPPED: "ABORT"}


def run_happening(run: Run, job_name: str, state: str) -> Happening:
    """The ``job.run`` happening of a run: START when it runs, then COMPLETE, FAIL or ABORT;
    its parent is the Airflow task that started it (from the idempotency key the Airflow
    provider sets), else the run that triggered it."""
    from icefloe.lineage.nodes import airflow_parts

    task = airflow_parts(run.idempotency_key)
    parent: dict[str, object] | None = None
    if task is not None:
        parent = {"kind": "airflow", "dag_id": task[0], "run_id": task[1], "task_id": task[2],
                  "map_index": task[3]}
    elif run.parent_run_id:
        parent = {"kind": "job.run", "run_id": run.parent_run_id}
    subject = {"project_id": run.project_id, "job": job_name, "job_id": run.job_id,
               "trigger": run.trigger, "triggered_by": run.triggered_by,
               "attempt": run.attempt, "status": run.status, "exit_code": run.exit_code}
    if state in ("FAIL", "ABORT") and run.reason:
        subject["error"] = run.reason
    return Happening("job.run", state, run.id, parent=parent, subject=subject,
                     actor=Actor(user=run.run_as or run.triggered_by or "system",
                                 run_id=run.id))


def _described(s: Session, run: Run, state: str) -> Happening | None:
    """:func:`run_happening` of a run read in session ``s``; None if it cannot be made
    (recording never fails the run's bookkeeping)."""
    try:
        job = s.get(Job, run.job_id)
        return run_happening(run, job.name if job is not None else "", state)
    except Exception:  # noqa: BLE001
        log.warning("describing run %s for the happenings bus failed", run.id, exc_info=True)
        return None


def _kill_group(pid: int, grace: float = KILL_GRACE_S) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after ``grace`` seconds."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    end = time.monotonic() + grace
    while time.monotonic() < end:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


class Runner:
    """Starts queued runs, watches running ones and fires schedules.

    Args:
        db: The platform DB.
        settings: For the logs folder and the environment handed to jobs.
        max_concurrent: Runs allowed at once; the rest wait in ENGINE_SCHEDULING.
        api_url: Base URL of this control plane, handed to jobs as ICEFLOE_URL.
    """

    def __init__(self, db: Database, settings: Settings, *, max_concurrent: int = 4,
                 api_url: str = "") -> None:
        self.db = db
        self.settings = settings
        self.max_concurrent = max_concurrent
        self.api_url = api_url
        self.instance = uuid.uuid4().hex[:12]  # this node's id
        self._next_takeover = 0.0
        self._heart: threading.Thread | None = None
        self._heart_stop = threading.Event()
        # Runs this node killed when it could not renew its lease: failed once it can.
        self._fenced: set[str] = set()
        self.logs = settings.home.resolve() / "logs" / "runs"
        self.logs.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.on_run_end: list[Callable[[str], None]] = []  # e.g. forget the run's token
        self._live: dict[str, _Live] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def recover(self) -> int:
        """Fail the runs of nodes that are gone: a node whose lease ran out, and at once an
        earlier life of this node (same URL); retry them when their job says so.

        A run of an earlier life of this node is killed here if anything of it is left (its
        launcher stops it when its control plane dies, this is the second line).
        """
        count = 0
        told: list[Happening | None] = []
        fenced = set(self._fenced)
        with self.db.session() as s:
            known = nodes.all_nodes(s)
            living = {n.id for n in nodes.alive(s)} | {self.instance}
            earlier = {n.id for n in known if self.api_url and n.url == self.api_url
                       and n.id != self.instance}
            for run in repo.runs_in(s, {states.STARTING, states.RUNNING}):
                if run.owner in living and run.owner not in earlier and run.id not in fenced:
                    continue
                # Only a single node knows its earlier life ran here: with several, a pid
                # may be another machine's (the launcher stopped the run anyway).
                if run.owner in earlier and run.pid and not self.settings.multi_node:
                    _kill_group(run.pid, grace=0.5)
                failed = repo.move_run(s, run.id, states.FAILED, reason=(
                    f"the control plane stopped while this run was active (pid {run.pid}, "
                    f"node {run.owner or 'unknown'}: its lease ran out)"))
                if failed is None:
                    continue  # another node took it over first
                keys.end_run_token(s, run.id)
                repo.audit(s, "system", "run.recover", f"run/{run.id}", "failed",
                           f"node {run.owner}")
                self._follow_up(s, failed, states.FAILED)
                told.append(_described(s, failed, "FAIL"))
                count += 1
            for node_id in earlier:
                nodes.leave(s, node_id)
            nodes.forget_dead(s)  # rows of nodes gone for an hour
        self._fenced -= fenced
        for happening in told:
            emit(lambda h=happening: h)  # type: ignore[misc]
        return count

    def start(self, interval: float = 0.2) -> None:
        """Join the nodes, recover, then tick in a background thread until
        :meth:`shutdown`; a second thread renews this node's lease."""
        if self.settings.multi_node and self.api_url:
            self._check_url_is_ours()
        with self.db.session() as s:
            nodes.join(s, self.instance, self.api_url)
        self.recover()
        self._heart = threading.Thread(target=self._heartbeat, name="icefloe-heartbeat",
                                       daemon=True)
        self._heart.start()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.tick()
                except Exception:  # keep the loop alive; the next tick retries
                    log.exception("runner tick failed")
                self._stop.wait(interval)

        self._thread = threading.Thread(target=loop, name="icefloe-runner", daemon=True)
        self._thread.start()

    def _check_url_is_ours(self) -> None:
        """Refuse to join when another live node has this node's URL (an earlier life of
        this node stops renewing its lease; another node goes on).

        Raises:
            ConfigError: Two nodes with one URL would take each other's runs for their own.
        """
        def beats() -> dict[str, object]:
            with self.db.session() as s:
                return {n.id: n.heartbeat_at for n in nodes.alive(s) if n.url == self.api_url}

        before = beats()
        if not before:
            return
        time.sleep(2.5 * nodes.HEARTBEAT_S)
        after = beats()
        if any(after.get(node) not in (None, at) for node, at in before.items()):
            raise ConfigError(f"another live node already has the URL {self.api_url}: give "
                              "each node its own node_url")

    def shutdown(self) -> None:
        """Stop the loop and every running job (they end ENGINE_STOPPED)."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        for run_id in list(self._live):
            self.stop(run_id, reason="the control plane shut down")
        self._reap()
        self._heart_stop.set()  # only now: the lease holds while the runs are stopped
        if self._heart is not None:
            self._heart.join(timeout=10)
            with contextlib.suppress(Exception), self.db.session() as s:
                nodes.leave(s, self.instance)  # the others need not wait for its lease

    def _heartbeat(self) -> None:
        """Renew the lease every second; stop this node's runs if it could not in time."""
        renewed = time.monotonic()
        while not self._heart_stop.wait(nodes.HEARTBEAT_S):
            try:
                with self.db.session() as s:
                    if not nodes.beat(s, self.instance):
                        nodes.join(s, self.instance, self.api_url)
                renewed = time.monotonic()
            except Exception:  # the database is away: the lease may run out
                log.warning("renewing node %s's lease failed", self.instance, exc_info=True)
            # Alone, a node keeps its runs through a database outage; one of several must
            # stop them, as the others take them for failed and retry them.
            if self.settings.multi_node and self._live and \
                    time.monotonic() - renewed > nodes.LEASE_S - nodes.HEARTBEAT_S:
                log.error("node %s could not renew its lease: stopping its %d run(s), which "
                          "other nodes take for failed", self.instance, len(self._live))
                for live in list(self._live.values()):
                    self._fenced.add(live.run_id)  # failed here once the database is back
                    self._drop(live)

    # -- the loop ------------------------------------------------------------------------

    def tick(self) -> None:
        """One pass: reap finished processes, enforce timeouts, fire schedules, start runs."""
        self._reap()
        self._ended_elsewhere()
        if time.monotonic() >= self._next_takeover:
            self._next_takeover = time.monotonic() + nodes.HEARTBEAT_S
            self.recover()
        self._fire_schedules()
        self._launch_queued()

    def _ended_elsewhere(self) -> None:
        """End the processes of runs another node ended (stopped through it, or failed when
        it took this node for dead)."""
        if not self._live:
            return
        with self.db.session() as s:
            ended = set(s.scalars(select(Run.id).where(Run.id.in_(list(self._live)),
                                                       Run.status.in_(states.TERMINAL))))
        for run_id in ended:
            live = self._live.get(run_id)
            if live is not None:
                self._drop(live)

    def _drop(self, live: _Live) -> None:
        """Kill a run's process group and clean up after it, leaving its state as it is."""
        with self._lock:
            if self._live.pop(live.run_id, None) is None:
                return
        _kill_group(live.process.pid)
        live.process.wait()
        live.log_file.close()
        shutil.rmtree(live.scratch, ignore_errors=True)
        with contextlib.suppress(Exception), self.db.session() as s:
            keys.end_run_token(s, live.run_id)
        self._ended(live.run_id)

    def _reap(self) -> None:
        for _run_id, live in list(self._live.items()):
            code = live.process.poll()
            timed_out = live.deadline is not None and time.monotonic() > live.deadline
            if code is None and not timed_out:
                continue
            if code is None:
                _kill_group(live.process.pid)
                live.process.wait()
                self._finish(live, states.TIMEDOUT, None, "the run exceeded its timeout")
            elif live.stop_requested:
                self._finish(live, states.STOPPED, code, "stopped")
            else:
                status = states.SUCCEEDED if code == 0 else states.FAILED
                self._finish(live, status, code, "" if code == 0 else f"exit code {code}")

    def _finish(self, live: _Live, status: str, code: int | None, reason: str) -> None:
        with self._lock:
            self._live.pop(live.run_id, None)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(live.process.pid, signal.SIGKILL)  # nothing of the run may outlive it
        live.log_file.close()
        shutil.rmtree(live.scratch, ignore_errors=True)
        told: Happening | None = None
        with self.db.session() as s:
            keys.end_run_token(s, live.run_id)
            run = repo.move_run(s, live.run_id, status, exit_code=code, reason=reason)
            if run is not None:
                self._follow_up(s, run, status)
                told = _described(s, run, _HAPPENING_STATE.get(status, "FAIL"))
        # Told once the transaction is over: subscribers write to the same DB.
        emit(lambda: told)
        self._ended(live.run_id)

    def _follow_up(self, s: Session, run: Run, status: str) -> None:
        """Start the children of a succeeded run, or the retry of a failed one."""
        job = s.get(Job, run.job_id)
        repo.audit(s, "system", "run.end", f"run/{run.id}", status)
        if job is None:
            return
        if states.starts_children(status):
            for child in repo.child_jobs(s, job):
                started = repo.create_run(s, child, "parent", f"run/{run.id}",
                                          parent_run_id=run.id, run_as=run.run_as)
                repo.audit(s, "system", "run.create", f"run/{started.id}", "ok",
                           f"child of run/{run.id}")
        elif status in (states.FAILED, states.TIMEDOUT) and run.attempt <= job.retries:
            retry = repo.create_run(s, job, "retry", f"run/{run.id}",
                                    parent_run_id=run.parent_run_id,
                                    attempt=run.attempt + 1, run_as=run.run_as,
                                    arguments=run.arguments, environment=run.environment,
                                    spark=run.spark)
            # Exponential backoff: the retry waits in the queue until its time comes.
            retry.created_at = repo.now() + timedelta(
                seconds=min(RETRY_BACKOFF_S * 2 ** (run.attempt - 1), 300))
            retry.reason = f"retry {run.attempt} of {job.retries}"
            repo.audit(s, "system", "run.create", f"run/{retry.id}", "ok",
                       f"retry of run/{run.id}")

    def _ended(self, run_id: str) -> None:
        for callback in self.on_run_end:
            try:
                callback(run_id)
            except Exception:
                log.exception("a run-end callback failed for run %s", run_id)

    def _fire_schedules(self) -> None:
        from croniter import croniter

        now = datetime.now(UTC)
        with self.db.session() as s:
            jobs = list(s.scalars(select(Job).where(Job.schedule != "", Job.paused.is_(False))))
            for job in jobs:
                tick = croniter(job.schedule, now).get_prev(datetime)
                last = stored_utc(job.last_schedule_tick or job.created_at)
                if tick <= last:
                    continue
                # Claim the tick with a conditional update, so it fires once even if two
                # control planes (or a restart) look at it.
                claimed = s.execute(  # type: ignore[attr-defined]
                    update(Job).where(Job.id == job.id,
                                      Job.last_schedule_tick.is_(None) if job.last_schedule_tick
                                      is None else Job.last_schedule_tick == job.last_schedule_tick)
                    .values(last_schedule_tick=tick)
                    .execution_options(synchronize_session=False)
                ).rowcount
                if claimed:
                    run = repo.create_run(s, job, "schedule", f"cron {job.schedule}",
                                          run_as=job.created_by)
                    repo.audit(s, "system", "run.create", f"run/{run.id}", "ok",
                               f"schedule {job.schedule}")

    def _launch_queued(self) -> None:
        with self.db.session() as s:
            active = sum(r.owner == self.instance
                         for r in repo.runs_in(s, {states.STARTING, states.RUNNING}))
            due = datetime.now(UTC)
            queued = [r for r in repo.runs_in(s, {states.SCHEDULING})
                      if stored_utc(r.created_at) <= due]
        for run in queued[: max(0, self.max_concurrent - active)]:
            self._launch(run.id)

    def _icefloe_variables(self, run: Run, token: str, scratch: str) -> dict[str, str]:
        """Where a run finds the control plane and the lakehouse; never the platform DB."""
        st = self.settings
        variables = {
            "ICEFLOE_API_KEY": token, "ICEFLOE_RUN_TOKEN": token,
            "ICEFLOE_RUN_ID": run.id, "ICEFLOE_JOB_ID": run.job_id,
            "ICEFLOE_RUN_USER": run.run_as or run.triggered_by,
            "ICEFLOE_PROJECT_ID": run.project_id, "ICEFLOE_HOME": scratch,
            "ICEFLOE_CATALOG_URI": st.job_catalog_uri,
            "ICEFLOE_CATALOG_NAME": st.catalog_name, "ICEFLOE_WAREHOUSE": st.warehouse_path,
            "ICEFLOE_MLFLOW_URI": st.job_mlflow_uri,
            "ICEFLOE_MLFLOW_ARTIFACTS": st.mlflow_artifacts_uri,
            "ICEFLOE_SPARK_MASTER": st.spark_master, "ICEFLOE_JAVA": st.java,
            "ICEFLOE_SPARK_DRIVER_MEMORY": st.spark_driver_memory,
            "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
        }
        # The object store of s3:// tables and artifacts: a run writes them with its own
        # readers and writers (PyIceberg, Spark, MLflow).
        for name in ("s3_endpoint", "s3_access_key_id", "s3_secret_access_key", "s3_region"):
            if getattr(st, name):
                variables[f"ICEFLOE_{name.upper()}"] = getattr(st, name)
        if self.api_url:
            variables["ICEFLOE_URL"] = self.api_url
        return variables

    def _fail_to_start(self, run_id: str, log_file: BinaryIO, log_path: Path,
                       reason: str) -> None:
        log_file.write(f"icefloe: cannot start the run: {reason}\n".encode())
        log_file.close()
        told: Happening | None = None
        with self.db.session() as s:
            keys.end_run_token(s, run_id)
            run = repo.move_run(s, run_id, states.FAILED, reason=reason, log_path=str(log_path))
            repo.audit(s, "system", "run.start", f"run/{run_id}", "failed", reason)
            if run is not None:
                told = _described(s, run, "FAIL")
        emit(lambda: told)
        self._ended(run_id)

    def _launch(self, run_id: str) -> None:
        with self.db.session() as s:
            run = repo.claim_run(s, run_id, self.instance)
            if run is None:
                return  # another node claimed it
            job = s.get(Job, run.job_id)
            project = s.get(Project, run.project_id)
            assert job is not None and project is not None
            token = keys.issue_run_token(s, run, job.timeout)
            # A run may carry its own arguments and extra variables (the runs API's body,
            # CDE's variables and overrides).
            job_snapshot = (job.script,
                            job.arguments if run.arguments is None else run.arguments,
                            {**job.environment, **(run.environment or {})}, job.timeout,
                            job.secret_environment)
            application = (submit.application_name(job.name, run.id),
                           submit.merged(job.spark, run.spark)) \
                if job.kernel == "spark-submit" else None
            project_path = project.path
            icefloe_run = Run(id=run.id, job_id=run.job_id, project_id=run.project_id,
                              run_as=run.run_as, triggered_by=run.triggered_by)
        script, arguments, environment, timeout, sealed = job_snapshot
        log_path = self.logs / f"{run_id}.log"
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        log_file = os.fdopen(fd, "ab", buffering=0)
        scratch = ""
        try:
            ident = job_identity(self.settings)
            folder = folders.check_at_run(self.settings, project_path)
            script_path = (folder / script).resolve()
            if not script_path.is_relative_to(folder):
                raise FileNotFoundError(f"script {script!r} is outside the project")
            if not script_path.is_file():
                raise FileNotFoundError(f"script {script!r} not found in {folder}")
            program = [sys.executable, str(script_path)]
            extra: dict[str, str] = {}
            if application is not None:
                program, extra = self._application(application, script_path)
            if ident is not None:
                for needed in (script_path, Path(sys.executable), Path(launcher.__file__),
                               Path(program[0])):
                    why = unreachable(needed, ident)
                    if why:
                        raise PermissionError(f"job user {ident.name} cannot read {needed} "
                                              f"({why})")
            scratch = tempfile.mkdtemp(prefix=f"icefloe-run-{run_id[:8]}-")
            if ident is not None:
                os.chown(scratch, ident.uid, ident.gid)
            env = run_environment(os.environ, home=scratch,
                                  bin_dir=os.path.dirname(sys.executable),
                                  icefloe={**self._icefloe_variables(icefloe_run, token,
                                                                     scratch), **extra},
                                  job=environment, secrets=vault.unseal(self.settings, sealed))
            # No shell: the script path and arguments go to exec as a list.
            command = [sys.executable, "-I", "-S", launcher.__file__, str(os.getpid()),
                       *program, *shlex.split(arguments)]
            process = subprocess.Popen(
                command, cwd=folder, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
                umask=0o007 if ident else 0o077,
                # extra_groups=[] drops the server's supplementary groups too.
                user=ident.uid if ident else None, group=ident.gid if ident else None,
                extra_groups=[] if ident else None)
        except (OSError, ValueError, IcefloeError) as exc:
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)
            reason = exc.message if isinstance(exc, IcefloeError) else str(exc)
            self._fail_to_start(run_id, log_file, log_path, reason)
            return
        live = _Live(run_id, icefloe_run.job_id, process,
                     time.monotonic() + timeout if timeout else None, log_file, scratch)
        with self._lock:
            self._live[run_id] = live
        told: Happening | None = None
        with self.db.session() as s:
            run = repo.move_run(s, run_id, states.RUNNING, pid=process.pid,
                                log_path=str(log_path))
            if run is not None:
                told = _described(s, run, "START")
        emit(lambda: told)

    def _application(self, application: tuple[str, dict[str, object]],
                     script_path: Path) -> tuple[list[str], dict[str, str]]:
        """``spark-submit`` and its options for a spark-submit run (the script's arguments
        follow), and the variables Spark's launcher needs."""
        from icefloe.compute.java import find_java

        name, spark = application
        found = importlib.util.find_spec("pyspark")
        if found is None or found.origin is None:
            raise FileNotFoundError("spark-submit jobs need pyspark: pip install 'pyspark>=3.5'")
        spark_submit = Path(found.origin).parent / "bin" / "spark-submit"
        program = submit.submit_command(str(spark_submit), master=self.settings.spark_master,
                                        name=name, spark=spark, script=str(script_path),
                                        arguments=[])
        java = find_java(self.settings.java)
        return program, {"JAVA_HOME": java.home, "PYSPARK_PYTHON": sys.executable,
                         "PYSPARK_DRIVER_PYTHON": sys.executable}

    # -- requests ------------------------------------------------------------------------

    def stop(self, run_id: str, reason: str = "stopped") -> bool:
        """Stop a run: kill its process group, or cancel it while it waits. True if stopped."""
        with self._lock:
            live = self._live.get(run_id)
        if live is not None:
            live.stop_requested = True
            _kill_group(live.process.pid)
            live.process.wait()
            self._finish(live, states.STOPPED, live.process.returncode, reason)
            return True
        with self.db.session() as s:
            return repo.move_run(s, run_id, states.STOPPED, reason=reason) is not None

    def log_path(self, run: Run) -> Path:
        """Where a run's log is written."""
        return Path(run.log_path) if run.log_path else self.logs / f"{run.id}.log"

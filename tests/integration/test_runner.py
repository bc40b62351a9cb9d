"""The runner in-process, on a real DB and real subprocesses: schedules, limits, shutdown."""

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from icefloe.home import prepare_home
from icefloe.jobs import states
from icefloe.jobs.runner import Runner
from icefloe.store import repo
from icefloe.store.db import Database
from icefloe.store.orm import Job
from tests.postgres import home_settings


def _setup(tmp_path: Path, script: str = "import time; time.sleep(30)\n"):
    settings = home_settings(tmp_path / "home")
    prepare_home(settings)
    db = Database(settings.resolved_platform_db_url)
    folder = settings.resolved_projects_root / "proj"
    folder.mkdir()
    (folder / "job.py").write_text(script)
    with db.session() as s:
        project = repo.create_project(s, "p", str(folder))
        job = repo.create_job(s, project.id, {"name": "j", "script": "job.py"})
        ids = (project.id, job.id)
    return settings, db, ids


def _runs(db: Database, project_id: str, job_id: str) -> list:
    with db.session() as s:
        return repo.list_runs(s, project_id, job_id)[0]


def test_cron_fires_once_per_tick_even_across_restarts(tmp_path: Path) -> None:
    settings, db, (pid, jid) = _setup(tmp_path, "print('tick')\n")
    with db.session() as s:
        job = s.get(Job, jid)
        job.schedule = "*/1 * * * *"
        job.created_at = datetime.now(UTC) - timedelta(minutes=3)
    first = Runner(db, settings)
    first._fire_schedules()
    first._fire_schedules()
    Runner(db, settings)._fire_schedules()  # a restarted control plane
    runs = _runs(db, pid, jid)
    assert len(runs) == 1 and runs[0].trigger == "schedule"
    with db.session() as s:
        s.get(Job, jid).paused = True
        s.get(Job, jid).last_schedule_tick = datetime.now(UTC) - timedelta(minutes=5)
    first._fire_schedules()
    assert len(_runs(db, pid, jid)) == 1  # paused jobs do not fire


def test_concurrency_limit_queues_and_shutdown_stops(tmp_path: Path) -> None:
    settings, db, (pid, jid) = _setup(tmp_path)
    runner = Runner(db, settings, max_concurrent=1)
    with db.session() as s:
        job = repo.get_job(s, pid, jid)
        first = repo.create_run(s, job, "api", "t").id
        second = repo.create_run(s, job, "api", "t").id
    runner.tick()  # starts the first run (its script sleeps 30 s)
    runner.tick()  # the limit is reached: the second waits
    with db.session() as s:
        assert repo.get_run(s, pid, jid, first).status == states.RUNNING
        assert repo.get_run(s, pid, jid, second).status == states.SCHEDULING
    runner.shutdown()
    with db.session() as s:
        assert repo.get_run(s, pid, jid, first).status == states.STOPPED
        assert repo.get_run(s, pid, jid, first).reason == "the control plane shut down"


def test_missing_script_fails_the_run_with_a_reason(tmp_path: Path) -> None:
    settings, db, (pid, jid) = _setup(tmp_path)
    (settings.resolved_projects_root / "proj" / "job.py").unlink()
    runner = Runner(db, settings)
    with db.session() as s:
        run_id = repo.create_run(s, repo.get_job(s, pid, jid), "api", "t").id
    runner.tick()
    with db.session() as s:
        run = repo.get_run(s, pid, jid, run_id)
        assert run.status == states.FAILED and "not found" in run.reason


def test_retries_rerun_a_failed_job(tmp_path: Path) -> None:
    settings, db, (pid, jid) = _setup(tmp_path, "raise SystemExit(2)\n")
    with db.session() as s:
        s.get(Job, jid).retries = 1
        repo.create_run(s, s.get(Job, jid), "api", "t")
    runner = Runner(db, settings)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        runner.tick()
        runs = _runs(db, pid, jid)
        if len(runs) == 2 and all(r.status in states.TERMINAL for r in runs):
            break
        time.sleep(0.1)
    runs = sorted(_runs(db, pid, jid), key=lambda r: r.attempt)
    assert [(r.attempt, r.status, r.exit_code) for r in runs] == [
        (1, states.FAILED, 2), (2, states.FAILED, 2)]
    # the retry waited for its backoff before it started
    assert runs[1].started_at.replace(tzinfo=None) >= runs[0].ended_at.replace(tzinfo=None) + \
        timedelta(seconds=0.9)

"""Job runs are untrusted code: a real `icefloe up` runs them isolated from the control plane.

As root (CI and these machines), runs execute as the unprivileged job user; as anyone else
they run as that same user (the laptop case) and only the environment and token checks
apply.
"""

import json
import os
import signal
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_control_plane import ControlPlane
from tests.servers import alive

AS_ROOT = os.geteuid() == 0
SPY = r'''
import json, os, sys
from icefloe.client import Client

home, other_log, server_pid = sys.argv[1:4]
out = {"uid": os.getuid(), "env": sorted(os.environ)}
for name, path in (("shadow", "/etc/shadow"), ("platform_db", f"{home}/platform.db"),
                   ("config", f"{home}/config.toml"), ("secrets_key", f"{home}/secrets.key"),
                   ("server_environ", f"/proc/{server_pid}/environ"),
                   ("other_log", other_log)):
    try:
        with open(path, "rb") as fh:
            fh.read(1)
        out[name] = "read"
    except OSError as exc:
        out[name] = type(exc).__name__
with Client() as client:  # no arguments: the run's own URL and token
    out["own_jobs"] = [j["name"] for j in client.list_jobs(os.environ["ICEFLOE_PROJECT_ID"])]
    out["projects"] = [p["name"] for p in client.list_projects()]
    for what, call in (("other_project", lambda: client.list_jobs(sys.argv[4])),
                       ("create_project", lambda: client.create_project("mine")),
                       ("create_key", lambda: client.create_key("eve", "admin")),
                       ("audit", lambda: client.audit())):
        try:
            call()
            out[what] = "allowed"
        except Exception as exc:
            out[what] = type(exc).__name__
print("SPY " + json.dumps(out), flush=True)
print("TOKEN " + os.environ["ICEFLOE_API_KEY"], flush=True)
'''


@pytest.fixture
def plane(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ControlPlane]:
    # Something only the server's environment holds: a run must never see it.
    monkeypatch.setenv("SERVER_ONLY_SECRET", "do-not-leak")
    monkeypatch.setenv("LD_PRELOAD", "")
    plane = ControlPlane(tmp_path / "home")
    plane.start()
    yield plane
    plane.stop()


def _spy_on(cp: ControlPlane) -> tuple[dict, str, str]:
    """Run the spy job in one project while another project exists; its report and token."""
    other = cp.project("other")
    other_job = cp.job(other, "noise", "ok.py")
    other_run = cp.run(other, other_job)
    cp.wait(other, other_job, other_run)
    other_log = cp.client.get(f"/projects/{other}/jobs/{other_job}/runs/{other_run}").json()
    p = cp.project("spy")
    folder = Path(cp.client.get(f"/projects/{p}").json()["path"])
    (folder / "spy.py").write_text(SPY)
    log_path = cp.home / "logs" / "runs" / f"{other_log['id']}.log"
    args = f"{cp.home.resolve()} {log_path} {cp.proc.pid} {other}"
    job = cp.job(p, "spy", "spy.py", arguments=args, secret_environment={"S": "x"})
    run = cp.run(p, job)
    final = cp.wait(p, job, run)
    log = cp.client.get(f"/projects/{p}/jobs/{job}/runs/{run}/logs").json()["content"]
    assert final["status"] == "ENGINE_SUCCEEDED", log
    report = json.loads(log.split("SPY ", 1)[1].splitlines()[0])
    token = log.split("TOKEN ", 1)[1].split()[0]
    return report, token, p


def test_a_run_cannot_reach_the_control_plane_or_the_server(plane: ControlPlane) -> None:
    report, token, project = _spy_on(plane)
    # Its environment is the allowlist: nothing of the server's.
    assert "SERVER_ONLY_SECRET" not in report["env"] and "LD_PRELOAD" not in report["env"]
    assert {"ICEFLOE_URL", "ICEFLOE_API_KEY", "ICEFLOE_RUN_ID", "PATH", "HOME"} <= set(
        report["env"])
    assert not any(name.startswith("ICEFLOE_PLATFORM") for name in report["env"])
    # Its token reaches its own project and nothing else.
    assert report["own_jobs"] == ["spy"] and report["projects"] == ["spy"]
    assert report["other_project"] == "NotFoundError"
    assert report["create_project"] == report["create_key"] == report["audit"] == \
        "ForbiddenError"
    if AS_ROOT:
        assert report["uid"] != 0
        for secret_file in ("shadow", "platform_db", "config", "secrets_key",
                            "server_environ", "other_log"):
            assert report[secret_file] == "PermissionError", (secret_file, report)
    # The token ended with the run.
    r = httpx.get(f"{plane.url}/projects/{project}/jobs",
                  headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    runs = plane.client.get(f"/projects/{project}/jobs").json()["jobs"]
    assert runs and plane.runs(project, runs[0]["id"])[0]["run_as"] == "admin"


@pytest.mark.skipif(not AS_ROOT, reason="switching users needs root; CI runs as root")
def test_jobs_never_run_as_root_unless_allowed(tmp_path: Path) -> None:
    from icefloe.config import load_settings
    from icefloe.errors import ConfigError
    from icefloe.home import job_identity

    ident = job_identity(load_settings(env={}, home=tmp_path))
    assert ident is not None and ident.uid != 0
    with pytest.raises(ConfigError, match="refusing to run jobs as root"):
        job_identity(load_settings(env={}, home=tmp_path, job_user="root"))
    assert job_identity(load_settings(env={}, home=tmp_path, job_user="root",
                                      allow_root_jobs=True)) is None
    with pytest.raises(ConfigError, match="does not exist"):
        job_identity(load_settings(env={}, home=tmp_path, job_user="no-such-user-x"))


def test_secret_variables_reach_the_run_and_nothing_else(plane: ControlPlane) -> None:
    p = plane.project()
    folder = Path(plane.client.get(f"/projects/{p}").json()["path"])
    (folder / "secret.py").write_text(
        "import os\nv = os.environ.get('DB_PASSWORD', '')\n"
        "print('len', len(v), 'match', v == 'hunter2-x', flush=True)\n")
    r = plane.client.post(f"/projects/{p}/jobs", json={
        "name": "s", "script": "secret.py", "environment": {"PLAIN": "1"},
        "secret_environment": {"DB_PASSWORD": "hunter2-x"}})
    assert r.status_code == 201, r.text
    assert r.json()["secret_environment"] == {"DB_PASSWORD": "***"}
    job = r.json()["id"]
    assert "hunter2" not in plane.client.get(f"/projects/{p}/jobs/{job}").text
    assert "hunter2" not in plane.client.get(f"/projects/{p}/jobs").text
    with sqlite3.connect(plane.home / "platform.db") as db:
        stored = db.execute("SELECT secret_environment FROM jobs WHERE id = ?",
                            (job,)).fetchone()[0]
    assert "hunter2" not in stored and "DB_PASSWORD" in stored
    run = plane.run(p, job)
    assert plane.wait(p, job, run)["status"] == "ENGINE_SUCCEEDED"
    log = plane.client.get(f"/projects/{p}/jobs/{job}/runs/{run}/logs").json()["content"]
    assert "len 9 match True" in log
    for bad in ({"LD_PRELOAD": "/tmp/x.so"}, {"PYTHONPATH": "/tmp"},
                {"ICEFLOE_API_KEY": "mine"}, {"1X": "y"}):
        r = plane.client.post(f"/projects/{p}/jobs", json={
            "name": "bad", "script": "ok.py", "environment": bad})
        assert r.status_code == 422 and next(iter(bad)) in r.json()["error"]["message"]


def test_project_folders_stay_inside_the_projects_root(plane: ControlPlane) -> None:
    root = plane.home.resolve() / "projects"
    (root / "escape").symlink_to("/")
    (root / "real").mkdir()
    editor = plane.client.post("/keys", json={"user": "ed", "role": "editor"}).json()
    as_editor = httpx.Client(base_url=plane.url,
                             headers={"Authorization": f"Bearer {editor['api_key']}"})
    for path in ("/", "/etc", "../../etc", "escape", str(root / "escape" / "etc"),
                 str(root), "real/../../.."):
        r = as_editor.post("/projects", json={"name": "p", "path": path})
        assert r.status_code == 422, (path, r.text)
        assert path in r.json()["error"]["message"]
    assert as_editor.get("/projects").json()["projects"] == []
    made = as_editor.post("/projects", json={"name": "p", "path": "real"})
    assert made.status_code == 201 and made.json()["path"] == str(root / "real")
    # A project folder swapped for a symlink out of the root later is refused at run time.
    pid = made.json()["id"]
    job = plane.job(pid, "j", "ok.py")
    (root / "real").rmdir()
    (root / "real").symlink_to("/etc")
    run = plane.wait(pid, job, plane.run(pid, job))
    assert run["status"] == "ENGINE_FAILED" and "projects root" in run["reason"]
    events = plane.client.get("/audit").json()["events"]
    assert any(e["action"] == "run.start" and e["outcome"] == "failed" for e in events)


def test_a_run_stops_when_its_control_plane_is_killed(plane: ControlPlane) -> None:
    p = plane.project()
    folder = Path(plane.client.get(f"/projects/{p}").json()["path"])
    (folder / "stubborn.py").write_text(
        "import signal, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)'])\n"
        "print('child', child.pid, flush=True)\n"
        "time.sleep(120)\n")
    slow = plane.job(p, "slow", "stubborn.py")
    run = plane.run(p, slow)
    plane.wait_running(p, slow, run)
    log = plane.client.get(f"/projects/{p}/jobs/{slow}/runs/{run}/logs").json()["content"]
    child = int(log.split("child ")[1].split()[0])
    assert alive(child)
    plane.stop(signal.SIGKILL)
    deadline = time.monotonic() + 15
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child), "the run outlived its control plane"


def test_nothing_in_a_used_home_is_open_to_other_users(plane: ControlPlane) -> None:
    p = plane.project()
    job = plane.job(p, "A", "ok.py")
    plane.wait(p, job, plane.run(p, job))
    from tests.conftest import run_cli

    data = plane.home.parent / "t.csv"
    data.write_text("a,b\n1,x\n")
    run_cli(["table", "load", "ns.t", str(data)], plane.home, check=True)
    opened = []
    projects = plane.home / "projects"
    for folder, dirs, files in os.walk(plane.home):
        if Path(folder).is_relative_to(projects) and Path(folder) != projects:
            continue  # the scripts this test wrote there, with its own umask
        for name in [*dirs, *files]:
            path = Path(folder) / name
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and mode & 0o007:
                opened.append(f"{path} {stat.S_IMODE(mode):o}")
    assert opened == []
    mode = stat.S_IMODE(plane.home.stat().st_mode)
    assert mode in (0o700, 0o710)
    for private in ("platform.db", "config.toml", "secrets.key"):
        if (plane.home / private).exists():
            assert stat.S_IMODE((plane.home / private).stat().st_mode) == 0o600, private


def test_doctor_warns_about_a_home_others_can_read(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    home = tmp_path / "home"
    run_cli(["init"], home, check=True)
    clean = json.loads(run_cli(["doctor", "--json"], home).stdout)
    assert not any("other users" in w for w in clean["warnings"])
    home.chmod(0o755)
    (home / "config.toml").chmod(0o644)
    proc = run_cli(["doctor", "--json"], home)
    warned = json.loads(proc.stdout)["warnings"]
    assert any(str(home) in w and "755" in w for w in warned), warned
    assert any("config.toml" in w and "644" in w for w in warned), warned
    text = run_cli(["doctor"], home)
    assert "warning:" in text.stderr and "chmod o-rwx" in text.stderr
    run_cli(["init"], home, check=True)  # init makes it private again
    assert not any("other users" in w
                   for w in json.loads(run_cli(["doctor", "--json"], home).stdout)["warnings"])


def test_secret_variable_names_follow_the_same_rules(plane: ControlPlane) -> None:
    p = plane.project()
    for bad in ({"LD_PRELOAD": "/tmp/x.so"}, {"ICEFLOE_URL": "http://evil"}, {"a-b": "1"}):
        r = plane.client.post(f"/projects/{p}/jobs", json={
            "name": "bad", "script": "ok.py", "secret_environment": bad})
        assert r.status_code == 422, r.text
        assert "secret_environment" in r.json()["error"]["message"]
    assert plane.client.get(f"/projects/{p}/jobs").json()["jobs"] == []

"""The control plane as users run it: `icefloe up` on 127.0.0.1, real job subprocesses."""

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import run_cli
from tests.servers import Server, alive

SCRIPTS = {
    "ok.py": "import sys\nprint('hello from', sys.argv[1:])\n",
    "fail.py": "import sys\nprint('about to fail')\nsys.exit(3)\n",
    "sleepy.py": (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "print('child', child.pid, flush=True)\n"
        "time.sleep(120)\n"
    ),
}
TERMINAL = {"ENGINE_SUCCEEDED", "ENGINE_FAILED", "ENGINE_STOPPED", "ENGINE_TIMEDOUT"}


class ControlPlane(Server):
    """A running `icefloe up` with helpers for projects, jobs and runs."""

    def project(self, name: str = "demo") -> str:
        r = self.client.post("/projects", json={"name": name})
        assert r.status_code == 201, r.text
        folder = Path(r.json()["path"])
        for file, text in SCRIPTS.items():
            (folder / file).write_text(text)
        return r.json()["id"]

    def job(self, project: str, name: str, script: str, **fields) -> str:
        r = self.client.post(f"/projects/{project}/jobs",
                             json={"name": name, "script": script, **fields})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def run(self, project: str, job: str) -> str:
        r = self.client.post(f"/projects/{project}/jobs/{job}/runs")
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def runs(self, project: str, job: str) -> list[dict]:
        return self.client.get(f"/projects/{project}/jobs/{job}/runs").json()["job_runs"]

    def wait(self, project: str, job: str, run: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self.client.get(f"/projects/{project}/jobs/{job}/runs/{run}").json()
            if body["status"] in TERMINAL:
                return body
            time.sleep(0.2)
        raise AssertionError(f"run {run} did not end: {body}")

    def wait_running(self, project: str, job: str, run: str, timeout: float = 30) -> None:
        """Wait until the run's process is up (and has had a moment to print)."""
        deadline = time.monotonic() + timeout
        while self.client.get(f"/projects/{project}/jobs/{job}/runs/{run}").json()[
                "status"] != "ENGINE_RUNNING":
            assert time.monotonic() < deadline, f"run {run} did not start"
            time.sleep(0.1)
        time.sleep(0.5)

    def wait_for_run_of(self, project: str, job: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs(project, job)
            if runs and runs[0]["status"] in TERMINAL:
                return runs[0]
            time.sleep(0.2)
        raise AssertionError(f"job {job} did not run")


def running(home: Path) -> Iterator[ControlPlane]:
    """A started control plane in ``home``, stopped afterwards (for fixtures to yield from)."""
    plane = ControlPlane(home)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlane]:
    yield from running(tmp_path / "home")


def test_chain_runs_in_order_and_failure_stops_it(cp: ControlPlane) -> None:
    p = cp.project()
    a = cp.job(p, "A", "ok.py", arguments="--step a")
    b = cp.job(p, "B", "ok.py", parent_job_id=a)
    c = cp.job(p, "C", "ok.py", parent_job_id=b)
    run_a = cp.run(p, a)
    assert cp.wait(p, a, run_a)["status"] == "ENGINE_SUCCEEDED"
    rb = cp.wait_for_run_of(p, b)
    rc = cp.wait_for_run_of(p, c)
    assert rb["status"] == rc["status"] == "ENGINE_SUCCEEDED"
    assert rb["parent_run_id"] == run_a and rc["parent_run_id"] == rb["id"]
    assert rb["created_at"] >= cp.wait(p, a, run_a)["finished_at"]
    logs = cp.client.get(f"/projects/{p}/jobs/{a}/runs/{run_a}/logs").json()
    assert "hello from ['--step', 'a']" in logs["content"]

    cp.client.patch(f"/projects/{p}/jobs/{b}", json={"script": "fail.py"})
    run_a2 = cp.run(p, a)
    cp.wait(p, a, run_a2)
    deadline = time.monotonic() + 30
    while len(cp.runs(p, b)) < 2 or cp.runs(p, b)[0]["status"] not in TERMINAL:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    failed = cp.runs(p, b)[0]
    assert failed["status"] == "ENGINE_FAILED" and failed["exit_code"] == 3
    # Children are created in the same transaction that ends their parent's run: with B
    # failed, C not starting again is already decided, no need to wait and see.
    assert len(cp.runs(p, c)) == 1


def test_timeout_and_stop_kill_the_whole_group(cp: ControlPlane) -> None:
    p = cp.project()
    slow = cp.job(p, "slow", "sleepy.py", timeout=2)
    run = cp.run(p, slow)
    started = time.monotonic()
    ended = cp.wait(p, slow, run, timeout=30)
    assert ended["status"] == "ENGINE_TIMEDOUT" and time.monotonic() - started < 15
    log = cp.client.get(f"/projects/{p}/jobs/{slow}/runs/{run}/logs").json()["content"]
    child = int(log.split("child ")[1].split()[0])
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)

    held = cp.job(p, "held", "sleepy.py")
    run2 = cp.run(p, held)
    cp.wait_running(p, held, run2)
    stopped = cp.client.post(f"/projects/{p}/jobs/{held}/runs/{run2}:stop").json()
    assert stopped["status"] == "ENGINE_STOPPED"


def test_sigkill_during_a_run_then_restart(cp: ControlPlane) -> None:
    p = cp.project()
    slow = cp.job(p, "slow", "sleepy.py")
    after = cp.job(p, "after", "ok.py", parent_job_id=slow)
    run = cp.run(p, slow)
    cp.wait_running(p, slow, run)
    cp.stop(signal.SIGKILL)
    cp.start()
    body = cp.wait(p, slow, run, timeout=10)
    assert body["status"] == "ENGINE_FAILED" and "control plane stopped" in body["reason"]
    assert cp.runs(p, after) == []
    ok = cp.job(p, "fresh", "ok.py")
    assert cp.wait(p, ok, cp.run(p, ok))["status"] == "ENGINE_SUCCEEDED"


def test_keys_roles_and_audit(cp: ControlPlane) -> None:
    p = cp.project()
    job = cp.job(p, "A", "ok.py")
    viewer = cp.client.post("/keys", json={"user": "vic", "role": "viewer"}).json()
    editor = cp.client.post("/keys", json={"user": "ed", "role": "editor"}).json()
    cp.client.delete(f"/keys/{editor['id']}")
    bodies = set()
    for headers in ({}, {"Authorization": "Bearer nope"},
                    {"Authorization": f"Bearer {editor['api_key']}"},
                    {"Authorization": "Basic abc"}):
        r = httpx.get(f"{cp.url}/projects", headers=headers)
        assert r.status_code == 401
        bodies.add(r.text)
    assert len(bodies) == 1
    as_viewer = httpx.Client(base_url=cp.url,
                             headers={"Authorization": f"Bearer {viewer['api_key']}"})
    assert as_viewer.get("/projects").status_code == 200
    for method, path in (("post", f"/projects/{p}/jobs/{job}/runs"),
                         ("post", f"/projects/{p}/jobs"),
                         ("delete", f"/projects/{p}/jobs/{job}"),
                         ("get", "/audit")):
        r = as_viewer.request(method.upper(), path, json={"name": "x", "script": "ok.py"})
        assert r.status_code == 403, (path, r.text)
    assert cp.runs(p, job) == []
    assert [j["name"] for j in cp.client.get(f"/projects/{p}/jobs").json()["jobs"]] == ["A"]
    events = cp.client.get("/audit").json()["events"]
    actions = {(e["actor"], e["action"], e["outcome"]) for e in events}
    assert ("admin", "job.create", "ok") in actions
    assert any(e["actor"] == "vic" and e["outcome"] == "denied" for e in events)


def test_cml_style_automation_client(cp: ControlPlane) -> None:
    """Written the way CML automation is: names, POST a run, poll the status."""
    p = cp.project("ml-pipeline")
    cp.job(p, "TrainModel", "ok.py")
    api, headers = cp.url, {"Authorization": f"Bearer {cp.key}"}
    projects = httpx.get(f"{api}/projects", headers=headers,
                         params={"search": "ml-pipeline", "page_size": 50}).json()["projects"]
    project = next(x for x in projects if x["name"] == "ml-pipeline")
    jobs = httpx.get(f"{api}/projects/{project['id']}/jobs", headers=headers).json()["jobs"]
    job = next(x for x in jobs if x["name"] == "TrainModel")
    run = httpx.post(f"{api}/projects/{project['id']}/jobs/{job['id']}/runs",
                     headers=headers).json()
    status = run["status"]
    while status in ("ENGINE_SCHEDULING", "ENGINE_STARTING", "ENGINE_RUNNING"):
        time.sleep(1)
        status = httpx.get(f"{api}/projects/{project['id']}/jobs/{job['id']}/runs/{run['id']}",
                           headers=headers).json()["status"]
    assert status == "ENGINE_SUCCEEDED"


def test_errors_have_one_shape(cp: ControlPlane) -> None:
    p = cp.project()
    r = cp.client.get(f"/projects/{p}/jobs/nope")
    assert r.status_code == 404 and "nope" in r.json()["error"]["message"]
    r = cp.client.post(f"/projects/{p}/jobs", json={"name": "x", "script": "../../etc/passwd"})
    assert r.status_code == 422 and "relative path" in r.json()["error"]["message"]
    r = cp.client.post(f"/projects/{p}/jobs", json={"name": "x"})
    assert r.status_code == 422 and "script" in r.json()["error"]["message"]
    a = cp.job(p, "A", "ok.py")
    b = cp.job(p, "B", "ok.py", parent_job_id=a)
    r = cp.client.patch(f"/projects/{p}/jobs/{a}", json={"parent_job_id": b})
    assert r.status_code == 409 and "cycle" in r.json()["error"]["message"]
    r = cp.client.post("/projects", json={"name": "demo"})
    assert r.status_code == 409
    r = cp.client.post("/projects", json={"name": "ghost", "path": "/no/such/folder"})
    assert r.status_code == 422 and "projects root" in r.json()["error"]["message"]
    assert cp.client.get("/projects", params={"search": "ghost"}).json()["projects"] == []


def test_sdk_and_cli(cp: ControlPlane, tmp_path: Path) -> None:
    from icefloe.client import Client
    from icefloe.errors import AuthError, NotFoundError

    cp.project("shop")
    env = {"ICEFLOE_URL": cp.url.removesuffix("/api/v2"), "ICEFLOE_API_KEY": cp.key}
    created = run_cli(["job", "create", "-p", "shop", "--name", "hello", "--script", "ok.py",
                       "--arguments", "x y", "--json"], cp.home, env=env, check=True)
    assert json.loads(created.stdout)["arguments"] == "x y"
    run_cli(["job", "create", "-p", "shop", "--name", "boom", "--script", "fail.py"],
            cp.home, env=env, check=True)
    ok = run_cli(["job", "run", "hello", "-p", "shop", "--wait", "--json"], cp.home, env=env)
    assert ok.returncode == 0 and json.loads(ok.stdout)["status"] == "ENGINE_SUCCEEDED"
    run_id = json.loads(ok.stdout)["id"]
    logs = run_cli(["job", "logs", "hello", "-p", "shop", "--run", run_id, "--follow"],
                   cp.home, env=env, check=True)
    assert "hello from ['x', 'y']" in logs.stdout
    bad = run_cli(["job", "run", "boom", "-p", "shop", "--wait"], cp.home, env=env)
    assert bad.returncode == 1 and "ENGINE_FAILED: exit code 3" in bad.stderr
    assert "| about to fail" in bad.stderr  # the tail of its log
    runs = json.loads(run_cli(["job", "runs", "hello", "-p", "shop", "--json"], cp.home,
                              env=env, check=True).stdout)
    assert [r["id"] for r in runs] == [run_id]
    # A chain whose child fails: the command follows it and fails too, naming the child.
    run_cli(["job", "create", "-p", "shop", "--name", "after", "--script", "fail.py",
             "--parent", "hello"], cp.home, env=env, check=True)
    chain = run_cli(["job", "run", "hello", "-p", "shop", "--wait"], cp.home, env=env)
    assert chain.returncode == 1, chain.stderr
    assert "of hello: ENGINE_SUCCEEDED" in chain.stderr
    assert "of after: ENGINE_FAILED: exit code 3" in chain.stderr
    chained = json.loads(run_cli(["job", "runs", "after", "-p", "shop", "--json"], cp.home,
                                 env=env, check=True).stdout)
    assert len(chained) == 1 and chained[0]["trigger"] == "parent"
    denied = run_cli(["project", "list"], cp.home, env={**env, "ICEFLOE_API_KEY": "wrong"})
    assert denied.returncode == 9 and "invalid API key" in denied.stderr

    with Client(env["ICEFLOE_URL"], cp.key) as client:
        project = client.project("shop")
        assert [j["name"] for j in client.list_jobs(project["id"])] == ["after", "boom",
                                                                        "hello"]
        with pytest.raises(NotFoundError):
            client.get_job(project["id"], "missing")
        key = client.create_key("robot", "editor")
        assert key["api_key"].startswith("ifk_")
    with Client(env["ICEFLOE_URL"], "ifk_000000000000_nope") as client, \
            pytest.raises(AuthError):
        client.list_projects()


def test_sigterm_stops_running_jobs(cp: ControlPlane) -> None:
    p = cp.project()
    slow = cp.job(p, "slow", "sleepy.py")
    run = cp.run(p, slow)
    cp.wait_running(p, slow, run)
    log = cp.client.get(f"/projects/{p}/jobs/{slow}/runs/{run}/logs").json()["content"]
    child = int(log.split("child ")[1].split()[0])
    cp.stop(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal, as servers conventionally do
    assert cp.proc is not None and cp.proc.returncode in (0, -signal.SIGTERM)
    assert not alive(child)
    cp.start()
    body = cp.client.get(f"/projects/{p}/jobs/{slow}/runs/{run}").json()
    assert body["status"] == "ENGINE_STOPPED" and "shut down" in body["reason"]


@pytest.mark.spark
def test_deploy_predict_and_metrics_from_cli_and_sdk(cp: ControlPlane, spark) -> None:
    from icefloe.client import Client
    from icefloe.config import load_settings
    from icefloe.demo.loans import NUMERIC_FEATURES, generate_loans
    from icefloe.lakehouse import Lakehouse
    from icefloe.ml.spec import LabelSpec, TrainSpec
    from icefloe.ml.train import train

    settings = load_settings(env={}, home=cp.home)
    Lakehouse(settings).write("lending.loans", generate_loans(1200, 8), "create")
    train(TrainSpec(table="lending.loans", label=LabelSpec(
        "loan_status", ("Charged Off", "Default")), model_name="loan-default"), settings,
        spark=spark)
    env = {"ICEFLOE_URL": cp.url.removesuffix("/api/v2"), "ICEFLOE_API_KEY": cp.key}
    dep = json.loads(run_cli(["model", "deploy", "loan-default/1", "--json"], cp.home, env=env,
                             check=True).stdout)
    assert dep["endpoint"].endswith("/model") and dep["access_key"].startswith("m")
    record = {name: 1.0 for name in NUMERIC_FEATURES}
    out = run_cli(["predict", "--access-key", dep["access_key"], "--data", json.dumps(record)],
                  cp.home, env=env, check=True)
    first = json.loads(out.stdout)["response"]
    with Client(env["ICEFLOE_URL"], cp.key) as client:
        answer = client.call_model(dep["access_key"], record)["response"]
        assert answer["probability"] == pytest.approx(first["probability"])
        client.track_delayed_metrics({"final_label": 1}, answer["uuid"])
        deadline = time.monotonic() + 10
        while True:
            rows = client.read_metrics(dep["id"])["metrics"]
            if len(rows) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert {r["predictionUuid"] for r in rows} == {first["uuid"], answer["uuid"]}
    truth = next(r for r in rows if r["predictionUuid"] == answer["uuid"])
    assert truth["metrics"]["final_label"] == 1
    listed = json.loads(run_cli(["deployments", "--json"], cp.home, env=env, check=True).stdout)
    assert [d["id"] for d in listed] == [dep["id"]]
    run_cli(["deployment", "stop", dep["id"]], cp.home, env=env, check=True)
    gone = run_cli(["predict", "--access-key", dep["access_key"], "--data", json.dumps(record)],
                   cp.home, env=env)
    assert gone.returncode == 9

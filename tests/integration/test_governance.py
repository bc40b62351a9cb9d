"""Users and projects are the unit of permission, on a real `icefloe up` with real runs.

Two users in two projects each see only their own jobs, runs and logs (others answer 404,
as if they did not exist); a viewer changes nothing; a run's token acts as its trigger in
its project only and stops working when the run ends; members are managed by owners.
"""

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import run_cli
from tests.integration.test_control_plane import ControlPlane

PROBE = r'''
import json, os, sys
from icefloe.client import Client

with Client() as client:  # the run's own URL and token
    me = client.me()
    out = {"user": me["name"], "projects": [p["name"] for p in me["projects"]],
           "jobs": [j["name"] for j in client.list_jobs(os.environ["ICEFLOE_PROJECT_ID"])]}
    try:
        client.list_jobs(sys.argv[1])
        out["other"] = "allowed"
    except Exception as exc:
        out["other"] = type(exc).__name__
    # What a run reports is checked: no kinds only the server records, no hidden tables.
    for what, told in (("server_kind", {"kind": "deployment"}),
                       ("hidden_table", {"kind": "table.read",
                                         "inputs": [{"name": "secret.t"}]})):
        try:
            client.report_happening(told)
            out[what] = "allowed"
        except Exception as exc:
            out[what] = type(exc).__name__
print("PROBE " + json.dumps(out), flush=True)
print("TOKEN " + os.environ["ICEFLOE_API_KEY"], flush=True)
'''


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path / "home")
    cp.start()
    yield cp
    cp.stop()


def _person(cp: ControlPlane, name: str, role: str = "editor") -> httpx.Client:
    assert cp.client.post("/users", json={"name": name}).status_code == 201
    key = cp.client.post("/keys", json={"user": name, "role": role})
    assert key.status_code == 201, key.text
    return httpx.Client(base_url=cp.url, timeout=30,
                        headers={"Authorization": f"Bearer {key.json()['api_key']}"})


def _own_project(person: httpx.Client, name: str) -> str:
    """``person`` makes a project (owning it) with the probe script in its folder."""
    made = person.post("/projects", json={"name": name})
    assert made.status_code == 201, made.text
    project = made.json()["id"]
    (Path(made.json()["path"]) / "probe.py").write_text(PROBE)
    return project


def _run(cp: ControlPlane, person: httpx.Client, project: str, other: str) -> tuple[str, str]:
    job = person.post(f"/projects/{project}/jobs",
                      json={"name": "probe", "script": "probe.py", "arguments": other})
    assert job.status_code == 201, job.text
    run = person.post(f"/projects/{project}/jobs/{job.json()['id']}/runs")
    assert run.status_code == 201, run.text
    final = cp.wait(project, job.json()["id"], run.json()["id"])
    assert final["status"] == "ENGINE_SUCCEEDED", final
    return job.json()["id"], run.json()["id"]


def test_two_users_in_two_projects_see_only_their_own(plane: ControlPlane) -> None:
    alice, bob = _person(plane, "alice"), _person(plane, "bob")
    carol = _person(plane, "carol")
    a = _own_project(alice, "team-a")
    b = _own_project(bob, "team-b")
    a_job, a_run = _run(plane, alice, a, b)
    b_job, b_run = _run(plane, bob, b, a)

    # Each lists only their own project, and everything of the other is 404.
    assert [p["name"] for p in alice.get("/projects").json()["projects"]] == ["team-a"]
    assert [p["name"] for p in bob.get("/projects").json()["projects"]] == ["team-b"]
    cde = plane.url.replace("/api/v2", "")
    for path in (f"/projects/{a}", f"/projects/{a}/jobs", f"/projects/{a}/jobs/{a_job}",
                 f"/projects/{a}/jobs/{a_job}/runs",
                 f"/projects/{a}/jobs/{a_job}/runs/{a_run}",
                 f"/projects/{a}/jobs/{a_job}/runs/{a_run}/logs",
                 f"/projects/{a}/members"):
        r = bob.get(path)
        assert r.status_code == 404, (path, r.text)
        assert r.json()["error"]["type"] == "NotFoundError"
    cde_info = bob.get(f"{cde}/cde/{a}/api/v1/info")
    assert cde_info.status_code == 404
    assert bob.post(f"/projects/{a}/jobs/{a_job}/runs").status_code == 404
    assert bob.delete(f"/projects/{a}").status_code == 404
    assert alice.get(f"/projects/{b}/jobs/{b_job}/runs/{b_run}/logs").status_code == 404
    # A project may not take over another's folder, nor the default project's name.
    folder = alice.get(f"/projects/{a}").json()["path"]
    taken = bob.post("/projects", json={"name": "copycat", "path": folder})
    assert taken.status_code == 409 and "another project's folder" in taken.text
    assert bob.post("/projects", json={"name": "default"}).status_code == 403
    # The admin sees both.
    names = {p["name"] for p in plane.client.get("/projects").json()["projects"]}
    assert {"team-a", "team-b"} <= names

    # The run acted as alice, in team-a only; its token died with the run.
    log = alice.get(f"/projects/{a}/jobs/{a_job}/runs/{a_run}/logs").json()["content"]
    probe = json.loads(log.split("PROBE ", 1)[1].splitlines()[0])
    assert probe == {"user": "alice", "projects": ["team-a"], "jobs": ["probe"],
                     "other": "NotFoundError", "server_kind": "ForbiddenError",
                     "hidden_table": "NotFoundError"}
    # People do not report happenings: job runs do (with their run token).
    told = alice.post("/happenings", json={"kind": "table.read"})
    assert told.status_code == 403 and "run token" in told.json()["error"]["message"]
    # Lineage answers for what you reach only.
    assert alice.get(f"/lineage/run:{a_run}").status_code == 200
    assert bob.get(f"/lineage/run:{a_run}").status_code == 404
    token = log.split("TOKEN ", 1)[1].split()[0]
    assert httpx.get(f"{plane.url}/projects/{a}/jobs",
                     headers={"Authorization": f"Bearer {token}"}).status_code == 401

    # A viewer of team-a reads it and changes nothing, not even through the CDE route.
    assert alice.put(f"/projects/{a}/members/carol", json={"role": "viewer"}).status_code == 200
    assert [j["name"] for j in carol.get(f"/projects/{a}/jobs").json()["jobs"]] == ["probe"]
    assert carol.get(f"/projects/{a}/jobs/{a_job}/runs/{a_run}/logs").status_code == 200
    for method, path, body in (
            ("POST", f"/projects/{a}/jobs", {"name": "x", "script": "probe.py"}),
            ("PATCH", f"/projects/{a}/jobs/{a_job}", {"arguments": "x"}),
            ("POST", f"/projects/{a}/jobs/{a_job}/runs", None),
            ("POST", f"/projects/{a}/jobs/{a_job}/runs/{a_run}:stop", None),
            ("DELETE", f"/projects/{a}/jobs/{a_job}", None),
            ("PUT", f"/projects/{a}/members/carol", {"role": "owner"}),
            ("DELETE", f"/projects/{a}", None),
            (None, f"{cde}/cde/{a}/api/v1/jobs/probe/run", {})):
        r = (carol.post(path, json=body) if method is None
             else carol.request(method, path, json=body))
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["error"]["type"] == "ForbiddenError"
    assert len(alice.get(f"/projects/{a}/jobs/{a_job}/runs").json()["job_runs"]) == 1

    # Owners manage members; a project keeps an owner; only admins list users.
    assert carol.get("/users").status_code == 403
    assert alice.delete(f"/projects/{a}/members/alice").status_code == 409
    assert alice.put(f"/projects/{a}/members/nobody", json={"role": "viewer"}).status_code == 404
    assert alice.put(f"/projects/{a}/members/bob", json={"role": "boss"}).status_code == 422
    assert alice.put(f"/projects/{a}/members/bob", json={"role": "editor"}).status_code == 200
    assert bob.get(f"/projects/{a}/jobs/{a_job}/runs/{a_run}").status_code == 200
    assert alice.delete(f"/projects/{a}/members/bob").status_code == 204
    assert bob.get(f"/projects/{a}").status_code == 404
    members = alice.get(f"/projects/{a}/members").json()["members"]
    assert {(m["user"], m["role"]) for m in members} == {("alice", "owner"), ("carol", "viewer")}
    # Only admins grant namespaces; members read their project's grants.
    assert alice.put(f"/projects/{a}/grants/lending", json={"access": "write"}).status_code == 403
    granted = plane.client.put(f"/projects/{a}/grants/lending", json={"access": "read"})
    assert granted.status_code == 200 and granted.json()["project"] == "team-a"
    assert plane.client.put(f"/projects/{a}/grants/bad-name",
                            json={"access": "read"}).status_code == 422
    assert [(g["namespace"], g["access"]) for g in
            carol.get(f"/projects/{a}/grants").json()["grants"]] == [("lending", "read")]
    assert bob.get(f"/projects/{a}/grants").status_code == 404
    # Who read a table: its granted project's owners and admins see it, viewers do not,
    # and for a caller no grant reaches the table does not exist.
    report = "/access/tables/lending.loans"
    assert alice.get(report).status_code == 200 and plane.client.get(report).status_code == 200
    assert carol.get(report).status_code == 403 and bob.get(report).status_code == 404
    assert plane.client.delete(f"/projects/{a}/grants/lending").status_code == 204
    assert plane.client.delete(f"/projects/{a}/grants/lending").status_code == 404
    users = {u["name"]: u for u in plane.client.get("/users").json()["users"]}
    assert users["carol"]["projects"] == [{"id": a, "name": "team-a", "role": "viewer"}]
    assert users["admin"]["admin"] is True and users["alice"]["admin"] is False
    me = carol.get("/users/me").json()
    assert me["name"] == "carol" and me["projects"][0]["role"] == "viewer"
    for client in (alice, bob, carol):
        client.close()


def test_people_from_the_command_line(plane: ControlPlane) -> None:
    env = {"ICEFLOE_URL": plane.url.removesuffix("/api/v2"), "ICEFLOE_API_KEY": plane.key}

    def icefloe(*args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(list(args), plane.home,
                       env={**env, **({"ICEFLOE_API_KEY": key} if key else {})})

    made = icefloe("user", "create", "dana", "--key-role", "viewer", "--json")
    assert made.returncode == 0, made.stderr
    dana = json.loads(made.stdout)["key"]["api_key"]
    assert icefloe("project", "create", "team-d").returncode == 0
    steps = [("project", "member", "team-d", "dana", "--role", "viewer"),
             ("project", "grant", "team-d", "lending", "--access", "read")]
    for args in steps:
        done = icefloe(*args)
        assert done.returncode == 0, (args, done.stderr)
    members = json.loads(icefloe("project", "members", "team-d", "--json").stdout)
    assert {(m["user"], m["role"]) for m in members} == {("admin", "owner"), ("dana", "viewer")}
    grants = json.loads(icefloe("project", "grants", "team-d", "--json").stdout)
    assert [(g["namespace"], g["access"]) for g in grants] == [("lending", "read")]
    me = json.loads(icefloe("whoami", "--json", key=dana).stdout)
    assert me["name"] == "dana" and me["projects"][0]["role"] == "viewer"
    assert me["key_role"] == "viewer"
    listed = icefloe("user", "list")
    assert listed.returncode == 0 and "team-d (viewer)" in listed.stdout
    # Refusals name the problem and exit non-zero: a viewer may not grant, nor a user listing.
    refused = icefloe("project", "grant", "team-d", "reports", "--access", "write", key=dana)
    assert refused.returncode != 0 and "(viewer) only reads" in refused.stderr
    assert icefloe("user", "list", key=dana).returncode != 0
    neither = icefloe("project", "member", "team-d", "dana")
    assert neither.returncode == 2 and "--role" in neither.stderr
    for args in (("project", "grant", "team-d", "lending", "--remove"),
                 ("project", "member", "team-d", "dana", "--remove")):
        done = icefloe(*args)
        assert done.returncode == 0, (args, done.stderr)
    assert icefloe("whoami", "--json", key=dana).stdout.count("team-d") == 0

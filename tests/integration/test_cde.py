"""What Airflow operators written for CDP and CML send, against a real `icefloe up`.

The token route (OAuth2 client credentials), a project's jobs as a CDE virtual cluster, and
idempotent run requests on the CML routes. The same requests from the real Airflow packages
run in tests/airflow.
"""

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_control_plane import ControlPlane, running

TOKEN = "/api/v0/auth/access-keys/token"
ENV_SCRIPT = ("import os, sys\n"
              "print('args', sys.argv[1:])\n"
              "print('BATCH', os.environ.get('BATCH'), 'MODE', os.environ.get('MODE'))\n")


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlane]:
    yield from running(tmp_path / "home")


def root(cp: ControlPlane) -> str:
    return cp.url.removesuffix("/api/v2")


def key_id(cp: ControlPlane) -> str:
    keys = cp.client.get("/keys").json()["keys"]
    return next(k["id"] for k in keys if cp.key.split("_")[1] == k["prefix"])


def token_for(cp: ControlPlane, client_id: str, secret: str) -> httpx.Response:
    return httpx.post(f"{root(cp)}/api/v0/auth/access-keys/token", auth=(client_id, secret),
                      data={"grant_type": "client_credentials"})


def test_token_route_exchanges_a_key_for_a_token_that_dies_with_the_key(
        cp: ControlPlane) -> None:
    made = cp.client.post("/keys", json={"user": "airflow", "role": "editor"}).json()
    before = time.time() * 1000
    r = token_for(cp, made["id"], made["api_key"])
    assert r.status_code == 200, r.text
    body = r.json()
    token = body["access_token"]
    # CDE's shape: the expiry as epoch milliseconds, about an hour ahead.
    assert before + 3500_000 < body["expires_in"] < before + 3700_000
    assert r.headers["cache-control"] == "no-store"
    as_token = httpx.Client(base_url=cp.url, headers={"Authorization": f"Bearer {token}"})
    assert as_token.get("/projects").status_code == 200
    assert as_token.post("/projects", json={"name": "by-token"}).status_code == 201

    bad_key = httpx.get(cp.url + "/projects", headers={"Authorization": "Bearer nope"})
    wrong = token_for(cp, made["id"], made["api_key"] + "x")
    other_id = token_for(cp, key_id(cp), made["api_key"])  # a live key, but not this id
    for refused in (wrong, other_id):
        assert refused.status_code == 401
        assert refused.json() == bad_key.json()  # one body for every bad credential
    swapped = token_for(cp, made["api_key"], made["id"])  # login and password swapped
    assert swapped.status_code == 401
    no_grant = httpx.post(root(cp) + TOKEN, auth=(made["id"], made["api_key"]),
                          data={"grant_type": "password"})
    assert no_grant.status_code == 422 and "grant_type" in no_grant.text

    assert cp.client.delete(f"/keys/{made['id']}").status_code == 204
    assert as_token.get("/projects").status_code == 401
    assert token_for(cp, made["id"], made["api_key"]).status_code == 401
    audit = cp.client.get("/audit", params={"page_size": 1000}).text
    assert "token.issue" in audit and token not in audit and made["api_key"] not in audit
    as_token.close()


def test_cml_runs_answer_a_repeated_idempotency_key_with_the_same_run(
        cp: ControlPlane) -> None:
    p = cp.project()
    (Path(cp.client.get(f"/projects/{p}").json()["path"]) / "env.py").write_text(ENV_SCRIPT)
    job = cp.job(p, "Env", "env.py", arguments="--job-args", environment={"MODE": "job"})
    key = {"Idempotency-Key": "dag#run1#task#-1"}
    body = {"arguments": "--batch 7", "environment": {"BATCH": "b7"}}
    first = cp.client.post(f"/projects/{p}/jobs/{job}/runs", json=body, headers=key)
    again = cp.client.post(f"/projects/{p}/jobs/{job}/runs", json=body, headers=key)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert len(cp.runs(p, job)) == 1
    run = first.json()["id"]
    assert cp.wait(p, job, run)["status"] == "ENGINE_SUCCEEDED"
    log = cp.client.get(f"/projects/{p}/jobs/{job}/runs/{run}/logs").json()["content"]
    assert "args ['--batch', '7']" in log and "BATCH b7 MODE job" in log
    # A finished run is found again too; a new key, or none, starts a new run.
    assert cp.client.post(f"/projects/{p}/jobs/{job}/runs", headers=key,
                          json=body).json()["id"] == run
    assert cp.client.post(f"/projects/{p}/jobs/{job}/runs",
                          headers={"Idempotency-Key": "other"}).status_code == 201
    assert cp.client.post(f"/projects/{p}/jobs/{job}/runs").status_code == 201
    assert len(cp.runs(p, job)) == 3
    bad = cp.client.post(f"/projects/{p}/jobs/{job}/runs",
                         json={"environment": {"1BAD": "x"}})
    assert bad.status_code == 422 and "1BAD" in bad.text
    quotes = cp.client.post(f"/projects/{p}/jobs/{job}/runs", json={"arguments": "--a 'b"})
    assert quotes.status_code == 422 and "arguments" in quotes.text
    # The same key with another request is a mistake, not the same run.
    other = cp.client.post(f"/projects/{p}/jobs/{job}/runs", headers=key,
                           json={"arguments": "--batch 8"})
    assert other.status_code == 422 and "other arguments, environment" in other.text
    assert len(cp.runs(p, job)) == 3


def test_a_project_is_a_cde_virtual_cluster(cp: ControlPlane) -> None:
    p = cp.project("lending")
    (Path(cp.client.get(f"/projects/{p}").json()["path"]) / "env.py").write_text(ENV_SCRIPT)
    etl = cp.job(p, "etl", "env.py")
    cp.job(p, "broken", "fail.py")
    cp.job(p, "slow", "sleepy.py")
    other = cp.project("elsewhere")
    api = httpx.Client(base_url=f"{root(cp)}/cde/{p}/api/v1", timeout=30,
                       headers={"Authorization": f"Bearer {cp.key}"})
    assert api.get("/info").json()["appName"] == "lending"

    request = {"variables": {"BATCH": "2026-11"}, "requestID": "dag#r#load#1#0",
               "overrides": {"spark": {"args": ["--rows", "10"]}}}
    base = root(cp)
    started = api.post(f"{base}/cde/{p}/api/v1/jobs/etl/run", json=request)
    assert started.status_code == 201, started.text
    number = started.json()["id"]
    assert isinstance(number, int)
    repeated = api.post("/jobs/etl/run", json=request)
    assert repeated.status_code == 409 and repeated.json()["id"] == number
    assert "exists: job run" in repeated.json()["error"]["message"]
    # The Idempotency-Key header the CML routes take works here too.
    by_header = [api.post("/jobs/etl/run", json={}, headers={"Idempotency-Key": "k1"})
                 for _ in range(2)]
    assert [r.status_code for r in by_header] == [201, 409]
    assert by_header[0].json()["id"] == by_header[1].json()["id"] != number

    def wait(n: int) -> dict:
        deadline = time.monotonic() + 60
        while (body := api.get(f"/job-runs/{n}").json())["status"] in ("starting", "running"):
            assert time.monotonic() < deadline, body
            time.sleep(0.2)
        return body

    done = wait(number)
    assert done["status"] == "succeeded" and done["job"] == "etl"
    log = cp.client.get(f"/projects/{p}/jobs/{etl}/runs/{done['icefloeRunId']}/logs"
                        ).json()["content"]
    assert "args ['--rows', '10']" in log and "BATCH 2026-11" in log

    failed = api.post("/jobs/broken/run", json={}).json()["id"]
    assert wait(failed)["status"] == "failed"
    slow = api.post("/jobs/slow/run", json={}).json()["id"]
    while api.get(f"/job-runs/{slow}").json()["status"] != "running":
        time.sleep(0.1)
    assert api.post(f"{base}/cde/{p}/api/v1/job-runs/{slow}/kill").status_code == 204
    assert wait(slow)["status"] == "killed"
    assert api.post(f"/job-runs/{slow}/kill").status_code == 409

    assert api.post("/jobs/nope/run", json={}).status_code == 404
    unknown = api.post("/jobs/etl/run", json={"overrides": {"spark": {"jars": ["x.jar"]}}})
    assert unknown.status_code == 422 and "jars" in unknown.text
    not_spark = api.post("/jobs/etl/run", json={"overrides": {"spark": {"conf": {"a": "b"}}}})
    assert not_spark.status_code == 422
    assert "overrides.spark" in not_spark.json()["error"]["message"] and "'a'" in not_spark.text
    # Another project's run numbers are not this cluster's.
    elsewhere = httpx.get(f"{root(cp)}/cde/{other}/api/v1/job-runs/{number}",
                          headers={"Authorization": f"Bearer {cp.key}"})
    assert elsewhere.status_code == 404
    api.close()

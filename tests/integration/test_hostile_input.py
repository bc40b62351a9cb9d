"""Hostile input gets 422 (or 413) naming the problem and changes nothing (in-process ASGI).

Integers too large for a float, a 5,000-digit integer, lone surrogates in any string (the
access key included), 100,000 nested lists and 5,000 nested objects, on every kind of REST
body and on model calls to a real deployment; query parameters out of range; bodies over
the size limit; text over its length limit. Each answer is our JSON error shape, nothing is
written (no project, job, key, audit event, metric or prediction) and nothing is logged as
an error: in-process, a server error would raise out of the call and fail the test.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from icefloe.api.app import create_app
from icefloe.api.limits import BodyLimits
from icefloe.auth import keys as api_keys
from icefloe.config import Settings, load_settings
from icefloe.store import repo
from icefloe.store.db import Database
from icefloe.store.orm import (
    AggregateMetric,
    ApiKey,
    AuditEvent,
    Build,
    Deployment,
    Job,
    Prediction,
    Project,
)

# Raw JSON values, spliced into bodies as text (a 5,000-digit integer cannot even be written
# by Python's json module), with the words the answer must use.
HOSTILE = {
    "integer too large for a float": ("1" + "0" * 400, "too large for a floating-point"),
    "5,000-digit integer": ("1" + "0" * 4999, "more than 4300 digits"),
    "lone high surrogate": ('"ab\\ud800"', "lone surrogate"),
    "lone low surrogate": ('"\\udc00"', "lone surrogate"),
    "surrogate field name": ('{"\\ud83d": 1}', "lone surrogate"),
    "100,000 nested lists": ("[" * 100_000 + "]" * 100_000, "nested deeper than 64 levels"),
    "5,000 nested objects": ('{"a":' * 5000 + "1" + "}" * 5000, "nested deeper than 64"),
    "number overflowing to infinity": ("1e400", "out of range"),
    "NUL character": ('"a\\u0000b"', "NUL character"),  # Postgres text refuses it
}
TABLES = (Project, Job, ApiKey, AuditEvent, AggregateMetric, Build, Deployment, Prediction)


def _call(app: Any, requests: list[tuple[str, str, dict[str, Any]]]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)  # raises what the app raises: no 500 hides
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [await client.request(method, path, **kwargs)
                    for method, path, kwargs in requests]
    return asyncio.run(go())


def _counts(db: Database) -> dict[str, int]:
    with db.session() as s:
        return {t.__tablename__: s.scalar(select(func.count()).select_from(t)) or 0
                for t in TABLES}


def _refused(response: httpx.Response, status: int, *fragments: str) -> None:
    assert response.status_code == status, (response.status_code, response.text[:300])
    error = response.json()["error"]
    assert set(error) == {"type", "message"}, error
    for fragment in fragments:
        assert fragment in error["message"], (fragment, error["message"])


@pytest.fixture
def rest(settings: Settings, caplog: pytest.LogCaptureFixture) -> Iterator[dict[str, Any]]:
    app = create_app(settings, start_runner=False)
    db = app.state.db
    with db.session() as s:
        _, admin = api_keys.create_api_key(s, "admin", "admin")
        project = repo.create_project(s, "base", str(settings.home / "projects" / "base"))
        job = repo.create_job(s, project.id, {"name": "job", "script": "job.py"})
        run = repo.create_run(s, job, "api", "admin")
        build = Build(id=repo.new_id(), model_name="m", model_version=1, status="BUILD_FAILED",
                      created_at=repo.now())
        s.add(build)
        s.flush()
        dep = Deployment(id=repo.new_id(), build_id=build.id, model_name="m", model_version=1,
                         access_key_hash="0" * 64, status="STOPPED", created_at=repo.now(),
                         updated_at=repo.now())
        s.add(dep)
        ids = {"project": project.id, "job": job.id, "run": run.id, "deployment": dep.id}
    log = app.state.runner.log_path(run)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("hello\n")
    caplog.set_level(logging.WARNING)
    try:
        yield {"app": app, "db": db, "auth": {"Authorization": f"Bearer {admin}"}, **ids}
    finally:
        app.state.supervisor.close()
        app.state.prediction_log.close()
    # No traceback, no error in the server log for anything a caller sent.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], \
        [r.getMessage() for r in caplog.records]


def _bodies(ids: dict[str, str]) -> list[tuple[str, str, str]]:
    """(method, path, body with ``@`` where the hostile value goes) on every body route."""
    p, j = ids["project"], ids["job"]
    return [
        ("POST", "/api/v2/projects", '{"name": "evil", "description": @}'),
        ("POST", "/api/v2/projects", '{"name": @}'),
        ("POST", "/api/v2/projects", '{"name": "evil", "path": @}'),
        ("POST", f"/api/v2/projects/{p}/jobs", '{"name": "j2", "script": "a.py", "cpu": @}'),
        ("POST", f"/api/v2/projects/{p}/jobs",
         '{"name": "j2", "script": "a.py", "environment": {"A": @}}'),
        ("PATCH", f"/api/v2/projects/{p}/jobs/{j}", '{"timeout": @}'),
        ("PATCH", f"/api/v2/projects/{p}/jobs/{j}", '{"secret_environment": {"S": @}}'),
        ("POST", "/api/v2/keys", '{"user": @, "role": "viewer"}'),
        ("POST", "/api/v2/models/builds", '{"model": @}'),
        ("POST", "/api/v2/models/deployments", '{"build_id": @}'),
        ("POST", "/api/v2/metrics/delayed", '{"prediction_uuid": @, "metrics": {"a": 1}}'),
        ("POST", "/api/v2/metrics/aggregate",
         '{"model_deployment_crn": "' + ids["deployment"] + '", "start_timestamp_ms": 0, '
         '"end_timestamp_ms": 10, "metrics": {"accuracy": @}}'),
    ]


def test_hostile_values_in_every_rest_body_get_422_and_change_nothing(
        rest: dict[str, Any], settings: Settings) -> None:
    before = _counts(rest["db"])
    root = settings.resolved_projects_root
    folders = sorted(root.rglob("*"))
    cases = [(method, path, template.replace("@", raw), name, fragment)
             for method, path, template in _bodies(rest)
             for name, (raw, fragment) in HOSTILE.items()]
    responses = _call(rest["app"], [
        (method, path, {"headers": {**rest["auth"], "content-type": "application/json"},
                        "content": body.encode()})
        for method, path, body, _, _ in cases])
    for (method, path, _, name, fragment), response in zip(cases, responses, strict=True):
        assert response.status_code == 422, (name, method, path, response.text[:300])
        _refused(response, 422, fragment)
    assert _counts(rest["db"]) == before  # no row anywhere, no audit event
    assert sorted(root.rglob("*")) == folders  # no project folder either


def test_the_problem_is_named_with_its_field(rest: dict[str, Any]) -> None:
    p = rest["project"]
    auth = {"headers": {**rest["auth"], "content-type": "application/json"}}
    answers = _call(rest["app"], [
        ("POST", "/api/v2/projects", {**auth, "content": b'{"name": "x", "description": '
                                                         b'"ok\\udfffok"}'}),
        ("POST", f"/api/v2/projects/{p}/jobs", {**auth, "content": (
            b'{"name": "j", "script": "a.py", "environment": {"A": "1"}, "cpu": 1'
            + b"0" * 400 + b"}")}),
        ("POST", "/api/v2/keys", {**auth, "content": b'{"user": "u", "role": "viewer", '
                                                     b'"tags": [[[[[[' + b"[" * 70
                                                     + b"]" * 76 + b"}"}),
    ])
    _refused(answers[0], 422, "field 'description'", "lone surrogate")
    _refused(answers[1], 422, "field 'cpu'", "401 digits", "too large")
    _refused(answers[2], 422, "nested deeper than 64 levels at tags")


def test_query_parameters_out_of_range_get_422(rest: dict[str, Any]) -> None:
    p, j, r = rest["project"], rest["job"], rest["run"]

    def token(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).decode()

    logs = f"/api/v2/projects/{p}/jobs/{j}/runs/{r}/logs"
    cases = [
        (f"/api/v2/projects?page_token={token('9' * 30)}", "page_token"),
        (f"/api/v2/projects?page_token={token('-5')}", "page_token"),
        (f"/api/v2/projects?page_token={token('1' + '0' * 5000)}", "page_token"),
        (f"/api/v2/projects/{p}/jobs?page_token={token(str(2**63))}", "page_token"),
        (f"/api/v2/projects/{p}/jobs/{j}/runs?page_token={token(str(2**40))}", "page_token"),
        (f"/api/v2/audit?page_token={token(str(2**64))}", "page_token"),
        (f"/api/v2/projects?page_size={2**64}", "page_size"),
        ("/api/v2/audit?page_size=0", "page_size"),
        (f"{logs}?offset={2**63 - 1}", "offset"),
        (f"{logs}?offset={2**64}", "offset"),
        (f"{logs}?offset=-1", "offset"),
        (f"/api/v2/metrics?model_deployment_crn={rest['deployment']}"
         f"&end_timestamp_ms={2**63}", "end_timestamp_ms"),
        (f"/api/v2/metrics?model_deployment_crn={rest['deployment']}"
         f"&start_timestamp_ms={10**30}", "start_timestamp_ms"),
        (f"/api/v2/metrics?model_deployment_crn={rest['deployment']}"
         f"&start_timestamp_ms=-1", "start_timestamp_ms"),
    ]
    answers = _call(rest["app"], [("GET", url, {"headers": rest["auth"]}) for url, _ in cases])
    for (url, name), response in zip(cases, answers, strict=True):
        assert response.status_code == 422, (url[:120], response.text[:300])
        _refused(response, 422, name)
    # In range they work: a log offset past the end reads nothing, a far window is empty.
    ok = _call(rest["app"], [
        ("GET", f"{logs}?offset={2**53 - 1}", {"headers": rest["auth"]}),
        ("GET", f"{logs}?offset=2", {"headers": rest["auth"]}),
        ("GET", f"/api/v2/metrics?model_deployment_crn={rest['deployment']}"
                f"&start_timestamp_ms=0&end_timestamp_ms={2**53 - 1}", {"headers": rest["auth"]}),
    ])
    assert [r.status_code for r in ok] == [200, 200, 200], [r.text for r in ok]
    assert ok[0].json()["content"] == "" and ok[1].json()["content"] == "llo\n"
    aggregate = _call(rest["app"], [("POST", "/api/v2/metrics/aggregate", {
        "headers": rest["auth"], "json": {"model_deployment_crn": rest["deployment"],
                                          "start_timestamp_ms": 0,
                                          "end_timestamp_ms": 2**63, "metrics": {"a": 1}}})])
    _refused(aggregate[0], 422, "end_timestamp_ms")


def test_bodies_over_the_limit_get_413_before_the_app_reads_them(
        rest: dict[str, Any], tmp_path: Path) -> None:
    before = _counts(rest["db"])
    big = b'{"name": "big", "description": "' + b"x" * (1024 * 1024) + b'"}'

    async def stream() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        for _ in range(64):
            yield b"x" * 65536

    answers = _call(rest["app"], [
        ("POST", "/api/v2/projects", {"headers": rest["auth"], "content": big}),
        ("POST", "/api/v2/projects", {"headers": rest["auth"], "content": stream()}),
        ("PATCH", f"/api/v2/projects/{rest['project']}/jobs/{rest['job']}",
         {"headers": rest["auth"], "content": big}),
        # Unauthenticated: 401 before a byte of the body is read.
        ("POST", "/api/v2/projects", {"content": big}),
    ])
    _refused(answers[0], 413, f"{len(big):,} bytes", "the limit is 1 MB")
    _refused(answers[1], 413, "the limit is 1 MB")
    _refused(answers[2], 413, "the limit is 1 MB")
    assert answers[3].status_code == 401
    assert _counts(rest["db"]) == before

    # A setting raises the limit: a 2 MB job (200 variables of 10,000 characters) fits.
    env = {f"V{i}": "v" * 10_000 for i in range(200)}
    raised = load_settings(env={}, home=tmp_path / "raised", max_body_bytes=4 * 1024 * 1024)
    for settings, status in ((raised, 201), (load_settings(env={}, home=tmp_path / "plain"),
                                             413)):
        app = create_app(settings, start_runner=False)
        try:
            with app.state.db.session() as s:
                _, admin = api_keys.create_api_key(s, "admin", "admin")
                project = repo.create_project(s, "p", str(tmp_path / "p"))
            made = _call(app, [("POST", f"/api/v2/projects/{project.id}/jobs", {
                "headers": {"Authorization": f"Bearer {admin}"},
                "json": {"name": "big", "script": "a.py", "environment": env}})])[0]
            assert made.status_code == status, made.text[:300]
        finally:
            app.state.supervisor.close()
            app.state.prediction_log.close()


def test_the_limit_reads_no_more_than_it_must() -> None:
    """A declared length over the limit is refused unread; an undeclared stream is read only
    up to the limit (memory stays flat), then refused; the app behind never runs."""
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])

    limits = BodyLimits(app, max_bytes=1000)
    sent: list[dict[str, Any]] = []
    pulls = 0

    async def endless() -> dict[str, Any]:
        nonlocal pulls
        pulls += 1
        return {"type": "http.request", "body": b"x" * 300, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    def scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
        return {"type": "http", "method": "POST", "path": "/api/v2/projects",
                "headers": headers}

    asyncio.run(limits(scope([(b"content-length", b"1000000000000")]), endless, send))
    assert pulls == 0 and sent[0]["status"] == 413
    asyncio.run(limits(scope([]), endless, send))
    assert pulls == 4 and sent[2]["status"] == 413  # 1,200 bytes read of an endless body
    assert b"the limit is 1,000 bytes" in sent[3]["body"] and not reached


def test_text_fields_have_length_limits_and_projects_can_be_deleted(
        rest: dict[str, Any]) -> None:
    p = rest["project"]
    before = _counts(rest["db"])
    auth = {"headers": rest["auth"]}
    long_cases = [
        ("POST", "/api/v2/projects", {"name": "n" * 256}, "name"),
        ("POST", "/api/v2/projects", {"name": "ok", "description": "d" * 10_001},
         "description"),
        ("POST", "/api/v2/projects", {"name": "ok", "path": "p" * 5000}, "path"),
        ("POST", "/api/v2/projects", {"name": "ok", "path": "p" * 300}, "File name too long"),
        ("POST", f"/api/v2/projects/{p}/jobs", {"name": "j", "script": "s" * 1025}, "script"),
        ("POST", f"/api/v2/projects/{p}/jobs",
         {"name": "j", "script": "a.py", "arguments": "a" * 10_001}, "arguments"),
        ("POST", f"/api/v2/projects/{p}/jobs",
         {"name": "j", "script": "a.py", "environment": {"A" * 300: "1"}}, "environment"),
        ("PATCH", f"/api/v2/projects/{p}/jobs/{rest['job']}", {"schedule": "*" * 300},
         "schedule"),
        ("POST", "/api/v2/keys", {"user": "u" * 256}, "user"),
        ("POST", "/api/v2/metrics/delayed", {"prediction_uuid": "u" * 65, "metrics": {"a": 1}},
         "prediction_uuid"),
    ]
    answers = _call(rest["app"], [(m, path, {**auth, "json": body})
                                  for m, path, body, _ in long_cases])
    for (_, _, _, field), response in zip(long_cases, answers, strict=True):
        _refused(response, 422, field)
    assert _counts(rest["db"]) == before

    made, = _call(rest["app"], [("POST", "/api/v2/projects", {**auth, "json": {"name": "gone"}})])
    assert made.status_code == 201, made.text
    pid = made.json()["id"]
    deleted, again, listed = _call(rest["app"], [
        ("DELETE", f"/api/v2/projects/{pid}", auth),
        ("GET", f"/api/v2/projects/{pid}", auth),
        ("GET", "/api/v2/projects", auth)])
    assert deleted.status_code == 204 and again.status_code == 404
    assert [x["name"] for x in listed.json()["projects"]] == ["base"]


# -- model calls on a real deployment ----------------------------------------------------

ROW = {**{f: 1.0 for f in ("acc_now_delinq", "acc_open_past_24mths", "annual_inc",
                           "avg_cur_bal", "funded_amnt", "int_rate", "dti", "term_months",
                           "delinq_2yrs", "revol_util", "emp_length")},
       "annual_inc": 65000.0, "int_rate": 13.5, "term_months": 36, "home_ownership": "RENT",
       "purpose": "credit_card"}


@pytest.mark.spark
def test_hostile_model_calls_get_422_and_record_nothing(
        spark: Any, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    import json

    from icefloe.demo.loans import generate_loans
    from icefloe.lakehouse import Lakehouse
    from icefloe.ml.spec import LabelSpec, TrainSpec
    from icefloe.ml.train import train

    Lakehouse(settings).write("lending.loans", generate_loans(1000, 5, bad_batch=True), "create")
    train(TrainSpec(table="lending.loans", label=LabelSpec("loan_status",
                                                           ("Charged Off", "Default")),
                    model_name="loan-default", pipeline="categorical"), settings, spark=spark)
    caplog.set_level(logging.WARNING)
    db = Database(settings.resolved_platform_db_url)
    with db.session() as s:
        _, admin = api_keys.create_api_key(s, "admin", "admin")
    app = create_app(settings, db=db, start_runner=False)
    auth = {"Authorization": f"Bearer {admin}", "content-type": "application/json"}
    try:
        build = _call(app, [("POST", "/api/v2/models/builds", {
            "headers": auth, "json": {"model": "loan-default/1"}})])[0]
        assert build.json()["status"] == "BUILD_READY", build.text
        dep = _call(app, [("POST", "/api/v2/models/deployments", {
            "headers": auth, "json": {"build_id": build.json()["id"]}})])[0].json()
        key = dep["access_key"]
        good = json.dumps(ROW)

        def one(record: str, access_key: str = json.dumps(key)) -> bytes:
            return f'{{"accessKey": {access_key}, "request": {record}}}'.encode()

        def batch(*records: str) -> bytes:
            return ('{"accessKey": "' + key + '", "requests": [' + ", ".join(records)
                    + "]}").encode()

        def with_field(name: str, raw: str) -> str:
            return good[:-1] + f', "{name}": {raw}}}' if name not in ROW else \
                good.replace(f'"{name}": {json.dumps(ROW[name])}', f'"{name}": {raw}')

        cases: list[tuple[str, bytes, tuple[str, ...]]] = [
            ("/model", one(with_field("annual_inc", "1" + "0" * 400)),
             ("'annual_inc'", "out of range")),
            ("/model", one(with_field("annual_inc", "4" + "0" * 38)),
             ("'annual_inc'", "out of range")),
            ("/model", one(with_field("annual_inc", "-1e39")), ("'annual_inc'", "out of range")),
            ("/model", one(with_field("dti", "1" + "0" * 4999)), ("more than 4300 digits",)),
            ("/model", one(with_field("purpose", '"car\\ud800"')),
             ("'request.purpose'", "lone surrogate")),
            ("/model", one(with_field("\\udc00", "1")), ("lone surrogate",)),
            ("/model", one(good, access_key='"' + key + '\\ud800"'),
             ("'accessKey'", "lone surrogate")),
            ("/model", b"[" * 100_000 + b"]" * 100_000, ("nested deeper than 64 levels",)),
            ("/model", one(with_field("home_ownership", '{"a":' * 5000 + "1" + "}" * 5000)),
             ("nested deeper than 64 levels",)),
            ("/model/batch", batch(good, with_field("dti", "1" + "0" * 400)),
             ("record 1", "'dti'", "out of range")),
            ("/model/batch", batch(good, with_field("purpose", '"\\udfff"')),
             ("requests[1].purpose", "lone surrogate")),
        ]
        answers = _call(app, [("POST", path, {"headers": auth, "content": body})
                              for path, body, _ in cases])
        for (path, body, fragments), response in zip(cases, answers, strict=True):
            assert response.status_code == 422, (path, body[-200:], response.text[:300])
            assert response.json()["success"] is False
            _refused(response, 422, *fragments)
        # The same bodies from a caller without a key: 401, the body unread.
        anonymous = _call(app, [("POST", path, {"content": body}) for path, body, _ in cases])
        assert {r.status_code for r in anonymous} == {401}

        ok = _call(app, [("POST", "/model", {"headers": auth, "content": one(good)})])[0]
        assert ok.status_code == 200, ok.text
        app.state.prediction_log.flush()
        with db.session() as s:
            recorded = s.scalars(select(Prediction.uuid)).all()
        assert recorded == [ok.json()["response"]["uuid"]]  # the good call, nothing else
        # The replicas took it all in their stride (read before they are stopped).
        logs = list((settings.home / "logs" / "replicas").glob("*.log"))
        assert logs and not [log for log in logs if "Traceback" in log.read_text()
                             or "replica error" in log.read_text()]
    finally:
        app.state.supervisor.close()
        app.state.prediction_log.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], \
        [r.getMessage() for r in caplog.records]

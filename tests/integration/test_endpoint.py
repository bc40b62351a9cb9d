"""POST /model on the control plane (in-process ASGI): auth, validation, log, ground truth."""

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from icefloe.api.app import create_app
from icefloe.auth import keys as api_keys
from icefloe.config import Settings
from icefloe.demo.loans import generate_loans
from icefloe.governance import membership
from icefloe.lakehouse import Lakehouse
from icefloe.ml.spec import LabelSpec, TrainSpec
from icefloe.ml.train import train
from icefloe.store.db import Database
from tests.people import member_of

pytestmark = pytest.mark.spark


def _call(app, requests: list[tuple[str, str, dict]]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            out = []
            for method, path, kwargs in requests:
                out.append(await client.request(method, path, **kwargs))
            return out
    return asyncio.run(go())


def test_model_endpoint(spark, settings: Settings, tmp_path: Path) -> None:
    lh = Lakehouse(settings)
    lh.write("lending.loans", generate_loans(1500, 5, bad_batch=True), "create")
    train(TrainSpec(table="lending.loans", label=LabelSpec("loan_status",
                                                           ("Charged Off", "Default")),
                    model_name="loan-default", pipeline="categorical"), settings, spark=spark)
    db = Database(settings.resolved_platform_db_url)
    with db.session() as s:
        _, admin = api_keys.create_api_key(s, "admin", "admin")
        _, viewer = api_keys.create_api_key(s, "vic", "viewer")
        _, outsider = api_keys.create_api_key(s, "otto", "editor")
        # The admin's build lands in the default project: vic views it, otto is elsewhere.
        member_of(s, "vic", membership.default_project(s, settings).name, "viewer")
        member_of(s, "otto", "elsewhere")
    app = create_app(settings, db=db, start_runner=False)
    try:
        _endpoint_story(app, admin, viewer, outsider)
    finally:
        app.state.supervisor.close()


def _endpoint_story(app, admin: str, viewer: str, outsider: str) -> None:
    auth = {"headers": {"Authorization": f"Bearer {admin}"}}
    build = _call(app, [("POST", "/api/v2/models/builds", {**auth,
                                                          "json": {"model": "loan-default/1"}})])[0]
    assert build.status_code == 201 and build.json()["status"] == "BUILD_READY", build.text
    dep = _call(app, [("POST", "/api/v2/models/deployments",
                       {**auth, "json": {"build_id": build.json()["id"]}})])[0].json()
    key = dep["access_key"]
    row = {f: 1.0 for f in ("acc_now_delinq", "acc_open_past_24mths", "annual_inc",
                            "avg_cur_bal", "funded_amnt", "int_rate", "dti", "term_months",
                            "delinq_2yrs", "revol_util", "emp_length")}
    row.update(annual_inc=65000.0, int_rate=13.5, term_months=36, home_ownership="RENT",
               purpose="credit_card")
    as_viewer = {"headers": {"Authorization": f"Bearer {viewer}"}}
    ok = _call(app, [("POST", "/model", {**as_viewer, "json": {"accessKey": key,
                                                              "request": row}})])[0]
    assert ok.status_code == 200, ok.text
    answer = ok.json()["response"]
    assert ok.json()["success"] is True and 0 <= answer["probability"] <= 1
    assert answer["model_version"] == 1 and answer["build"] == build.json()["id"]

    bad_cases = [
        ({"json": {"accessKey": key, "request": row}}, 401, None),
        ({"headers": {"Authorization": "Bearer wrong"},
          "json": {"accessKey": key, "request": row}}, 401, None),
        ({**as_viewer, "json": {"accessKey": "m" + "0" * 32, "request": row}}, 401, None),
        ({**as_viewer, "json": {"accessKey": key, "request": {**row, "int_rate": "high"}}},
         422, "'int_rate' must be a number"),
        ({**as_viewer, "json": {"accessKey": key,
                                "request": {k: v for k, v in row.items() if k != "dti"}}},
         422, "missing field 'dti'"),
        ({**as_viewer, "json": {"accessKey": key, "request": {**row, "colour": "red"}}},
         422, "'colour'"),
        ({**as_viewer, "content": b'{"accessKey": "' + key.encode() + b'", "request": '
          b'{"dti": NaN}}'}, 422, "NaN"),
        ({**as_viewer, "content": b'{"accessKey": '}, 422, "malformed JSON"),
        ({**as_viewer, "content": b" " * (5 * 1024 * 1024 + 10)}, 413, "5 MB"),
    ]
    responses = _call(app, [("POST", "/model", kw) for kw, _, _ in bad_cases])
    for (_, status, fragment), response in zip(bad_cases, responses, strict=True):
        assert response.status_code == status, response.text
        if fragment:
            assert fragment in response.json()["error"]["message"]
    # A valid key of someone outside the deployment's project: the call is refused like an
    # unknown key, and the deployment, its build and model do not exist for them.
    as_outsider = {"headers": {"Authorization": f"Bearer {outsider}"}}
    dep_id, build_id = dep["id"], build.json()["id"]
    outside = _call(app, [
        ("POST", "/model", {**as_outsider, "json": {"accessKey": key, "request": row}}),
        ("GET", f"/api/v2/models/deployments/{dep_id}", as_outsider),
        ("GET", f"/api/v2/models/builds/{build_id}", as_outsider),
        ("GET", "/api/v2/models/loan-default/versions", as_outsider),
        ("GET", f"/api/v2/models/deployments/{dep_id}/monitoring", as_outsider),
        ("GET", f"/api/v2/metrics?model_deployment_crn={dep_id}", as_outsider),
        ("POST", f"/api/v2/models/deployments/{dep_id}:stop", as_outsider),
        ("GET", "/api/v2/models/deployments", as_outsider),
        ("GET", "/api/v2/models/builds", as_outsider),
        ("GET", "/api/v2/models", as_outsider),
        ("POST", f"/api/v2/models/deployments/{dep_id}:stop", as_viewer)])
    assert [r.status_code for r in outside] == [401] + [404] * 6 + [200] * 3 + [403], \
        [r.text[:200] for r in outside]
    assert outside[7].json()["deployments"] == outside[8].json()["builds"] == []
    assert outside[9].json()["models"] == []
    assert all(r.json()["error"]["type"] == "NotFoundError" for r in outside[1:7])
    batch = _call(app, [("POST", "/model/batch", {**as_viewer, "json": {
        "accessKey": key, "requests": [row] * 100}})])[0]
    uuids = [r["uuid"] for r in batch.json()["responses"]]
    assert len(set(uuids)) == 100

    unseen = _call(app, [("POST", "/model", {**as_viewer, "json": {
        "accessKey": key, "request": {**row, "purpose": "moon_trip"}}})])[0]
    assert unseen.status_code == 200, unseen.text
    now = int(time.time() * 1000)
    aggregate = {"model_deployment_crn": dep["id"], "start_timestamp_ms": now - 60_000,
                 "end_timestamp_ms": now, "metrics": {"accuracy": 0.75}}
    stored, backwards, nowhere = _call(app, [
        ("POST", "/api/v2/metrics/aggregate", {**auth, "json": aggregate}),
        ("POST", "/api/v2/metrics/aggregate", {**auth, "json": {
            **aggregate, "start_timestamp_ms": now + 1}}),
        ("POST", "/api/v2/metrics/aggregate", {**auth, "json": {
            **aggregate, "model_deployment_crn": "nope"}})])
    assert (stored.status_code, backwards.status_code, nowhere.status_code) == (201, 422, 404)

    app.state.prediction_log.close()  # flush, as the server does on shutdown
    truths = [("POST", "/api/v2/metrics/delayed",
               {**auth, "json": {"prediction_uuid": u, "metrics": {"final_label": i % 2}}})
              for i, u in enumerate(uuids)]
    assert all(r.status_code == 200 for r in _call(app, truths))
    again, unknown = _call(app, [truths[0], ("POST", "/api/v2/metrics/delayed",
                                             {**auth, "json": {"prediction_uuid": "nope",
                                                               "metrics": {"x": 1}}})])
    assert again.status_code == 409 and unknown.status_code == 404
    foreign = _call(app, [("POST", "/api/v2/metrics/delayed", {
        **as_outsider, "json": {"prediction_uuid": uuids[1], "metrics": {"x": 1}}})])[0]
    assert foreign.status_code == 404 and uuids[1] in foreign.json()["error"]["message"]
    read = _call(app, [("GET", "/api/v2/metrics", {**auth, "params": {
        "model_deployment_crn": dep["id"], "start_timestamp_ms": 0,
        "end_timestamp_ms": int(time.time() * 1000) + 1000}})])[0].json()["metrics"]
    # one single call, 100 in the batch, one unseen category, no invalid ones; the aggregate
    assert len(read) == 103 and read[-1]["predictionUuid"] is None
    assert read[-1]["metrics"] == {"accuracy": 0.75}
    joined = {m["predictionUuid"]: m["metrics"] for m in read}
    assert joined[unseen.json()["response"]["uuid"]]["unseen_categories"] == ["purpose"]
    assert "unseen_categories" not in joined[uuids[0]]
    assert all(joined[u]["final_label"] == i % 2 and "probability" in joined[u]["output"]
               for i, u in enumerate(uuids))

    stopped = _call(app, [("POST", f"/api/v2/models/deployments/{dep['id']}:stop", auth),
                          ("POST", "/model", {**as_viewer, "json": {"accessKey": key,
                                                                   "request": row}})])
    assert stopped[0].json()["status"] == "STOPPED" and stopped[1].status_code == 401

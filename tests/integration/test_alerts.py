"""Alert rules on a real `icefloe up` with real replicas: a drift rule fires once when one
feature shifts and a new category appears, and its signed webhook reaches a local receiver
exactly once; an accuracy rule fires as wrong ground truth arrives and resolves (one
resolved notification) when truth is right again; webhooks to metadata, private or loopback
addresses are refused with 422 before any request."""

import hashlib
import hmac
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from icefloe.demo.loans import CATEGORICAL_FEATURES, NUMERIC_FEATURES, generate_loans
from tests.servers import Server

pytestmark = pytest.mark.spark

SECRET = "a-webhook-secret-of-some-length"


class Receiver:
    """A webhook endpoint on 127.0.0.1 that keeps what it receives."""

    def __init__(self) -> None:
        self.received: list[tuple[dict, str, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((json.loads(body), self.headers["X-Icefloe-Signature"],
                                       body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def states(self) -> list[tuple[str, str]]:
        return [(p["rule"], p["state"]) for p, _, _ in self.received]


@pytest.fixture(scope="module")
def plane(spark, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from icefloe.config import load_settings
    from icefloe.lakehouse import Lakehouse
    from icefloe.ml.spec import LabelSpec, TrainSpec
    from icefloe.ml.train import train

    server = Server(tmp_path_factory.mktemp("alerts") / "home")
    settings = load_settings(env={}, home=server.home)
    Lakehouse(settings).write("lending.loans", generate_loans(3000, 21, bad_batch=True),
                              "create")
    train(TrainSpec(table="lending.loans", label=LabelSpec("loan_status",
                                                           ("Charged Off", "Default")),
                    model_name="loan-default", pipeline="categorical"), settings, spark=spark)
    # The receiver is on 127.0.0.1: only the allowlist lets a webhook go there.
    os.environ["ICEFLOE_WEBHOOK_ALLOWLIST"] = "127.0.0.1"
    os.environ["ICEFLOE_MONITOR_INTERVAL"] = "0"  # evaluated on demand by the test
    try:
        server.start()
    finally:
        del os.environ["ICEFLOE_WEBHOOK_ALLOWLIST"], os.environ["ICEFLOE_MONITOR_INTERVAL"]
    yield server
    server.stop()


def _records(seed: int, n: int) -> tuple[list[dict], list[int]]:
    rows = [r for r in generate_loans(2 * n, seed, bad_batch=True).to_pylist()
            if all(r[k] is not None for k in NUMERIC_FEATURES)][:n]
    records = [{k: r[k] for k in (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES)} for r in rows]
    return records, [int(r["loan_status"] in ("Charged Off", "Default")) for r in rows]


def _send(plane: Server, key: str, records: list[dict]) -> list[dict]:
    base = plane.url.removesuffix("/api/v2")
    r = plane.client.post(f"{base}/model/batch", json={"accessKey": key, "requests": records})
    assert r.status_code == 200, r.text
    return r.json()["responses"]


def _truth(plane: Server, answers: list[dict], labels: list[int]) -> None:
    for answer, label in zip(answers, labels, strict=True):
        r = plane.client.post("/metrics/delayed", json={"prediction_uuid": answer["uuid"],
                                                         "metrics": {"final_label": label}})
        assert r.status_code in (200, 201), r.text


def _evaluate(plane: Server, dep: str) -> list[dict]:
    r = plane.client.post(f"/models/deployments/{dep}/rules:evaluate", timeout=300)
    assert r.status_code == 200, r.text
    return r.json()["changes"]


def test_drift_and_accuracy_rules_fire_and_resolve_once_each(plane: Server) -> None:
    build = plane.client.post("/models/builds", json={"model": "loan-default/1"}).json()["id"]
    dep = plane.client.post("/models/deployments", json={"build_id": build}).json()
    receiver = Receiver()
    rule = {"window": "500", "min_samples": 100, "target": receiver.url, "secret": SECRET}
    drift = plane.client.post(f"/models/deployments/{dep['id']}/rules", json={
        **rule, "metric": "psi", "feature": "dti", "comparison": ">", "threshold": 0.25})
    assert drift.status_code == 201, drift.text
    assert "secret" not in drift.json() and SECRET not in drift.text
    accuracy = plane.client.post(f"/models/deployments/{dep['id']}/rules", json={
        **rule, "metric": "accuracy", "comparison": "<", "threshold": 0.6}).json()

    calm, labels = _records(31, 500)
    _truth(plane, _send(plane, dep["access_key"], calm), labels)
    assert _evaluate(plane, dep["id"]) == []  # like the training data, and mostly right
    assert receiver.received == []

    shifted, labels = _records(32, 500)
    spread = float(np.std([r["dti"] for r in calm]))
    for r in shifted:
        r["dti"] += 2 * spread
        r["purpose"] = "crypto"
    answers = _send(plane, dep["access_key"], shifted)
    _truth(plane, answers, [1 - a["prediction"] for a in answers])  # every answer wrong
    changes = _evaluate(plane, dep["id"])
    assert sorted((c["rule"], c["to"]) for c in changes) == sorted(
        [(drift.json()["id"], "FIRING"), (accuracy["id"], "FIRING")])
    assert _evaluate(plane, dep["id"]) == []  # still firing: not notified again
    assert sorted(receiver.states()) == sorted((c["rule"], "FIRING") for c in changes)
    for payload, signature, body in receiver.received:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(signature, expected) and payload["deployment"] == dep["id"]
    fired = next(p for p, _, _ in receiver.received if p["metric"] == "psi")
    assert fired["feature"] == "dti" and fired["value"] > 0.25 and fired["samples"] == 500

    right, labels = _records(33, 500)  # back to normal, truth right again
    answers = _send(plane, dep["access_key"], right)
    _truth(plane, answers, [a["prediction"] for a in answers])
    changes = _evaluate(plane, dep["id"])
    assert sorted(c["to"] for c in changes) == ["RESOLVED", "RESOLVED"]
    assert sorted(s for _, s in receiver.states()) == ["FIRING", "FIRING", "RESOLVED",
                                                       "RESOLVED"]
    events = plane.client.get(f"/rules/{accuracy['id']}/events").json()["events"]
    assert [(e["from"], e["to"], e["delivered"]) for e in events] == [
        ("OK", "FIRING", True), ("FIRING", "RESOLVED", True)]
    listed = plane.client.get(f"/models/deployments/{dep['id']}/rules").json()["rules"]
    assert {r["state"] for r in listed} == {"RESOLVED"}
    receiver.server.shutdown()


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data",
                                    "http://10.0.0.1/hook", "http://[::1]:9/hook",
                                    "ftp://example.org/hook", "http://u:p@example.org/hook"])
def test_webhooks_to_internal_addresses_are_refused(plane: Server, target: str) -> None:
    build = plane.client.post("/models/builds", json={"model": "loan-default/1"}).json()["id"]
    dep = plane.client.post("/models/deployments", json={"build_id": build}).json()
    r = plane.client.post(f"/models/deployments/{dep['id']}/rules", json={
        "metric": "accuracy", "comparison": "<", "threshold": 0.5, "target": target,
        "secret": SECRET})
    assert r.status_code == 422, r.text
    assert plane.client.get(f"/models/deployments/{dep['id']}/rules").json()["rules"] == []
    plane.client.post(f"/models/deployments/{dep['id']}:stop")


def test_rules_from_the_cli_and_the_window_over_rest(plane: Server, tmp_path) -> None:
    import subprocess

    from icefloe.client import Client
    from tests.conftest import ICEFLOE

    build = plane.client.post("/models/builds", json={"model": "loan-default/1"}).json()["id"]
    dep = plane.client.post("/models/deployments", json={"build_id": build}).json()
    _send(plane, dep["access_key"], _records(41, 150)[0])
    receiver = Receiver()
    secret = tmp_path / "secret"
    secret.write_text(SECRET + "\n")
    env = {**os.environ, "ICEFLOE_URL": plane.url.removesuffix("/api/v2"),
           "ICEFLOE_API_KEY": plane.key, "COLUMNS": "200"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*ICEFLOE, *args], env=env, capture_output=True, text=True,
                              timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        return done

    made = json.loads(cli("monitor", "rule", "create", dep["id"], "--metric", "requests",
                          "--above", "100", "--window", "1h", "--min-samples", "1",
                          "--webhook", receiver.url, "--secret-file", str(secret),
                          "--json").stdout)
    assert made["comparison"] == ">" and made["state"] == "OK"
    listed = cli("monitor", "rule", "list", dep["id"])
    assert made["id"] in listed.stdout and SECRET not in listed.stdout
    fired = json.loads(cli("monitor", "evaluate", dep["id"], "--json").stdout)
    assert [(c["rule"], c["to"]) for c in fired] == [(made["id"], "FIRING")]
    assert receiver.states() == [(made["id"], "FIRING")]
    events = json.loads(cli("monitor", "rule", "events", made["id"], "--json").stdout)
    assert [(e["to"], e["delivered"]) for e in events] == [("FIRING", True)]

    with Client(plane.url.removesuffix("/api/v2"), plane.key) as client:
        window = client.monitoring(dep["id"], "1h", min_samples=100)
        requests = next(f for f in window["figures"] if f["metric"] == "requests")
        assert requests["value"] == 150 and window["reference"]["table"] == "lending.loans"
    cli("monitor", "rule", "delete", made["id"])
    assert plane.client.get(f"/rules/{made['id']}").status_code == 404

    drift = json.loads(cli("monitor", "rule", "create", dep["id"], "--metric", "psi",
                           "--feature", "dti", "--above", "0.25", "--window", "1h",
                           "--webhook", receiver.url, "--secret-file", str(secret),
                           "--json").stdout)
    assert (drift["metric"], drift["feature"], drift["threshold"]) == ("psi", "dti", 0.25)
    with Client(plane.url.removesuffix("/api/v2"), plane.key) as client:
        assert [r["id"] for r in client.rules(dep["id"])] == [drift["id"]]
        client.delete_rule(drift["id"])
        assert client.rules(dep["id"]) == []
    receiver.server.shutdown()

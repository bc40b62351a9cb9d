"""Alert rules on a real `icefloe up` with real replicas: a drift rule fires once when one
feature shifts and a new category appears, and its signed webhook reaches a local receiver
exactly once; an accuracy rule fires as wrong ground truth arrives and resolves (one
resolved notification) when truth is right again; webhooks to metadata, private or loopback
addresses are refused with 422 before any request."""

import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterator

import numpy as np
import pytest

from icefloe.demo.loans import CATEGORICAL_FEATURES, NUMERIC_FEATURES, generate_loans
from tests.servers import Receiver, Server

pytestmark = pytest.mark.spark

SECRET = "a-webhook-secret-of-some-length"


class Mailbox:
    """A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps the messages it accepts."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        from tests.servers import free_port

        self.messages: list[tuple[str, list[str], str]] = []
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802
                outer.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                                       envelope.content.decode("utf-8", "replace")))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def subjects(self) -> list[str]:
        return [next(line for line in text.splitlines() if line.startswith("Subject:"))
                for _, _, text in self.messages]


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    yield box
    box.controller.stop()


@pytest.fixture(scope="module")
def plane(spark, mailbox: Mailbox, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Server]:
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
    extra = {"ICEFLOE_WEBHOOK_ALLOWLIST": "127.0.0.1",
             "ICEFLOE_MONITOR_INTERVAL": "0",  # evaluated on demand by the test
             "ICEFLOE_SMTP_HOST": "127.0.0.1", "ICEFLOE_SMTP_PORT": str(mailbox.port)}
    os.environ.update(extra)
    try:
        server.start()
    finally:
        for name in extra:
            del os.environ[name]
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


def test_drift_and_accuracy_rules_fire_and_resolve_once_each(plane: Server,
                                                            mailbox: Mailbox) -> None:
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
    by_mail = plane.client.post(f"/models/deployments/{dep['id']}/rules", json={
        "metric": "psi", "feature": "dti", "comparison": ">", "threshold": 0.25,
        "window": "500", "channel": "email", "target": "ops@example.org"})
    assert by_mail.status_code == 201, by_mail.text
    mailbox.messages.clear()

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
        [(drift.json()["id"], "FIRING"), (accuracy["id"], "FIRING"),
         (by_mail.json()["id"], "FIRING")])
    assert _evaluate(plane, dep["id"]) == []  # still firing: not notified again
    assert sorted(receiver.states()) == sorted(
        (c["rule"], "FIRING") for c in changes if c["rule"] != by_mail.json()["id"])
    (subject,) = mailbox.subjects()  # one e-mail, to the address of the rule
    assert "FIRING: psi of dti" in subject and mailbox.messages[0][1] == ["ops@example.org"]
    for payload, signature, body in receiver.received:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(signature, expected) and payload["deployment"] == dep["id"]
    fired = next(p for p, _, _ in receiver.received if p["metric"] == "psi")
    assert fired["feature"] == "dti" and fired["value"] > 0.25 and fired["samples"] == 500

    right, labels = _records(33, 500)  # back to normal, truth right again
    answers = _send(plane, dep["access_key"], right)
    _truth(plane, answers, [a["prediction"] for a in answers])
    changes = _evaluate(plane, dep["id"])
    assert sorted(c["to"] for c in changes) == ["RESOLVED", "RESOLVED", "RESOLVED"]
    assert len(mailbox.messages) == 2 and "RESOLVED: psi of dti" in mailbox.subjects()[1]
    assert sorted(s for _, s in receiver.states()) == ["FIRING", "FIRING", "RESOLVED",
                                                       "RESOLVED"]
    events = plane.client.get(f"/rules/{accuracy['id']}/events").json()["events"]
    assert [(e["from"], e["to"], e["delivered"]) for e in events] == [
        ("OK", "FIRING", True), ("FIRING", "RESOLVED", True)]
    listed = plane.client.get(f"/models/deployments/{dep['id']}/rules").json()["rules"]
    assert {r["state"] for r in listed} == {"RESOLVED"}
    assert {r["channel"] for r in listed} == {"webhook", "email"}
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
        base = plane.url.removesuffix("/api/v2")
        for _ in range(10):  # refused by the build's schema: errors of this deployment
            bad = plane.client.post(f"{base}/model", json={"accessKey": dep["access_key"],
                                                           "request": {"dti": "high"}})
            assert bad.status_code == 422
        deadline = time.monotonic() + 60
        while True:  # counted by the gateway, written by the log's writer within seconds
            figures = client.monitoring(dep["id"], "1h", min_samples=1)["figures"]
            rate = next(f for f in figures if f["metric"] == "error_rate")
            if rate["samples"] == 160 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert (rate["samples"], round(rate["value"], 4)) == (160, round(10 / 160, 4))
        page = client.report(dep["id"], "1h")
        assert page.startswith("<!doctype html>") and page.count("<svg") == 3
        assert "<script" not in page and dep["id"] in page
    served = plane.client.get(f"/models/deployments/{dep['id']}/report")
    assert served.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in served.headers["content-security-policy"]
    assert plane.client.get("/models/deployments/nope/report").status_code == 404
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

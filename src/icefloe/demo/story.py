"""The acceptance story, narrated: land, explore, train with lineage, evolve, reproduce.

Only this module and :mod:`icefloe.demo.loans` know the loan columns; the platform does not.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console

from icefloe.cli.output import print_arrow
from icefloe.config import Settings, mask_password, write_default_config
from icefloe.demo.loans import LABEL_COLUMN, POSITIVE_STATUSES, generate_loans, write_loans
from icefloe.errors import ConflictError, SchemaMismatchError, TrainingError
from icefloe.home import prepare_home
from icefloe.lakehouse import Lakehouse
from icefloe.registry.mlflow_registry import ModelRegistry
from icefloe.registry.reproduce import reproduce_training_data

TABLE = "lending.loans"
PROJECT_DIR = Path(__file__).with_name("project")
MODEL = "loan-default"
DEMO_PROPERTY = "icefloe.demo"
console = Console(highlight=False)


def _step(number: int, title: str) -> None:
    console.rule(f"[bold cyan]{number}. {title}")


def _cmd(text: str) -> None:
    console.print(f"[dim]$ {text}[/dim]")


def _reset_demo_table(lh: Lakehouse) -> None:
    """Drop the table left by an earlier demo run; never touch a table the demo did not make."""
    if TABLE not in {t["table"] for t in lh.tables()}:
        return
    if lh.table(TABLE).properties.get(DEMO_PROPERTY) != "true":
        raise ConflictError(
            f"{TABLE} exists and was not created by the demo; "
            "run the demo with another home (--home or ICEFLOE_HOME)"
        )
    console.print(f"replacing {TABLE} from an earlier demo run")
    lh.drop(TABLE)
    registry = ModelRegistry(lh.settings)
    if any(m["name"] == MODEL for m in registry.list_models()) and all(
        v["table"] == TABLE for v in registry.versions(MODEL)
    ):
        console.print(f"replacing model {MODEL} from an earlier demo run")
        registry.client.delete_registered_model(MODEL)


def run_story(
    settings: Settings, *, rows: int = 5000, bad_rows: int = 1000, seed: int = 42
) -> dict[str, int]:
    """Run the story so far and return the snapshot ids it made (s1, s2)."""
    started = time.monotonic()
    prepare_home(settings, share=True)
    lh = Lakehouse(settings)

    _step(1, "Set up the icefloe home")
    write_default_config(settings)
    _cmd("icefloe init")
    console.print(f"home {settings.home.resolve()}  catalog "
                  f"{mask_password(settings.resolved_catalog_uri)}", markup=False)
    _reset_demo_table(lh)

    _step(2, "Generate the loan book and a 'bad batch' with new categorical columns")
    data_dir = settings.home / "demo"
    base_file = write_loans(generate_loans(rows, seed), data_dir / "loans.parquet")
    bad_file = write_loans(
        generate_loans(bad_rows, seed, bad_batch=True), data_dir / "loans_bad_batch.parquet"
    )
    _cmd(f"icefloe data generate --rows {rows} --seed {seed} --output {base_file}")
    _cmd(f"icefloe data generate --rows {bad_rows} --seed {seed} --bad-batch --output {bad_file}")

    _step(3, f"Land the raw data in the Iceberg table {TABLE} (snapshot S1)")
    _cmd(f"icefloe table load {TABLE} {base_file}")
    s1 = lh.load_file(TABLE, base_file, "create", table_properties={DEMO_PROPERTY: "true"})
    console.print(f"S1 = {s1.snapshot.snapshot_id}: {s1.snapshot.total_rows:,} rows")
    lh.tag(TABLE, "s1-base", s1.snapshot.snapshot_id)
    _cmd(f"icefloe table tag {TABLE} s1-base")

    _step(4, "Explore: class balance and column summaries (DuckDB SQL over the snapshot)")
    balance = f"""
        SELECT {LABEL_COLUMN}, count(*) AS loans,
               round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS pct
        FROM {TABLE} GROUP BY 1 ORDER BY 2 DESC"""
    _cmd(f'icefloe sql "SELECT {LABEL_COLUMN}, count(*) ... FROM {TABLE} GROUP BY 1"')
    print_arrow(lh.sql(balance), title="class balance")
    summary = lh.sql(
        f"SELECT column_name, column_type, min, max, round(avg::DOUBLE, 2) AS avg, "
        f"null_percentage FROM (SUMMARIZE {TABLE})"
    )
    print_arrow(summary, title="column summaries")

    _step(5, "Train the baseline model on S1 and register it with its lineage")
    from icefloe.compute import spark_session
    from icefloe.ml.spec import LabelSpec, TrainSpec
    from icefloe.ml.train import train

    spark = spark_session(settings, app_name="icefloe-demo")
    spec = TrainSpec(table=TABLE, label=LabelSpec(LABEL_COLUMN, POSITIVE_STATUSES),
                     model_name=MODEL, pipeline="baseline", seed=seed)
    _cmd(f'icefloe train --table {TABLE} --label {LABEL_COLUMN} '
         f'--positive "{",".join(POSITIVE_STATUSES)}" --pipeline baseline --model {MODEL}')
    v1 = train(spec, settings, spark=spark)
    v1_ref = f"{MODEL}/{v1.version}"
    console.print(f"registered [bold]{v1_ref}[/bold]")
    for line in v1.summary_lines():
        console.print(line, markup=False)
    console.print("steps: " + ", ".join(f"{k} {v:.1f}s" for k, v in v1.timings.items()))

    _step(6, "A new batch brings columns the table does not have")
    _cmd(f"icefloe table load {TABLE} {bad_file} --mode append")
    try:
        lh.load_file(TABLE, bad_file, "append")
        raise AssertionError("the bad batch was accepted without --evolve")
    except SchemaMismatchError as exc:
        console.print(f"[red]refused:[/red] {exc.message}")
    current = lh.current_snapshot(TABLE)
    assert current is not None
    console.print(f"the table is untouched: still at S1 ({current.snapshot_id})")
    _cmd(f"icefloe table load {TABLE} {bad_file} --mode append --evolve")
    s2 = lh.load_file(TABLE, bad_file, "append", evolve=True)
    console.print(
        f"S2 = {s2.snapshot.snapshot_id}: {s2.snapshot.total_rows:,} rows, "
        f"new columns {', '.join(s2.new_columns)}"
    )

    _step(7, "Time travel: the same query at S1 and at S2")
    count_sql = f"SELECT count(*) AS loans, count(home_ownership) AS with_home FROM {TABLE}"
    s1_id, s2_id = s1.snapshot.snapshot_id, s2.snapshot.snapshot_id
    _cmd(f'icefloe sql "SELECT count(*) FROM {TABLE}" --at {TABLE}=s1-base')
    print_arrow(lh.sql(f"SELECT count(*) AS loans FROM {TABLE}", {TABLE: "s1-base"}),
                title="at S1 (tag s1-base)")
    print_arrow(lh.sql(count_sql, {TABLE: s2_id}), title="at S2")

    _step(8, f"The baseline cannot learn from the new batch; {v1_ref} knows its data")
    _cmd(f"icefloe train --table {TABLE} ... --pipeline baseline")
    try:
        train(spec, settings, spark=spark)
        raise AssertionError("baseline training accepted string columns")
    except TrainingError as exc:
        console.print(f"[red]training failed:[/red] {exc.message}")
    _cmd(f"icefloe lineage {v1_ref}")
    console.print(f"{v1_ref} was trained on {TABLE}@{s1_id}; the table is now at {s2_id}")
    _cmd(f"icefloe data reproduce {v1_ref} --output {data_dir / 'v1_training.parquet'}")
    repro = reproduce_training_data(settings, v1_ref, data_dir / "v1_training.parquet")
    console.print(f"reproduced {repro['rows']:,} rows; fingerprint matches the training data")

    _step(9, "Roll the table back to the model's snapshot; S2 stays in the history")
    _cmd(f"icefloe table rollback {TABLE} --to-model {v1_ref}")
    lh.rollback(TABLE, v1.lineage.snapshot_id)
    print_arrow(lh.sql(f"SELECT count(*) AS loans FROM {TABLE}"), title="current (S1)")
    console.print(f"S2 still reads {lh.read(TABLE, snapshot_id=s2_id).num_rows:,} rows")
    _cmd(f"icefloe table snapshots {TABLE}")
    for snap in lh.snapshots(TABLE):
        marker = "*" if snap.current else " "
        console.print(
            f" {marker} {snap.snapshot_id}  {snap.time}  {snap.operation:<9} "
            f"{snap.total_rows:>6,} rows  {', '.join(snap.tags)}"
        )

    _step(10, "Jobs through the API: LoadBatch -> TrainModel on the control plane")
    _run_job_chain(settings)

    console.rule("[bold green]done")
    console.print(f"the story so far ran in {time.monotonic() - started:.1f} s. Try:")
    for line in (
        f"icefloe lineage {v1_ref}",
        f"icefloe model versions {MODEL}",
        f"icefloe table snapshots {TABLE}",
        f"icefloe table show {TABLE} --snapshot {s2_id} --limit 5",
        f"icefloe table rollback {TABLE} --to {s2_id}   # roll forward again",
        f'icefloe sql "SELECT purpose, count(*) FROM {TABLE} GROUP BY 1" --at {TABLE}={s2_id}',
    ):
        console.print(f"  {line}")
    return {"s1": s1_id, "s2": s2_id}


def _run_job_chain(settings: Settings) -> None:
    """Start a control plane, create the demo project and jobs over HTTP, run the chain."""
    import dataclasses
    import socket
    import threading

    import uvicorn

    from icefloe.api.app import create_app
    from icefloe.auth import keys as api_keys
    from icefloe.client import Client
    from icefloe.errors import ConflictError as Exists
    from icefloe.jobs.runner import Runner
    from icefloe.store.db import Database

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    db = Database(settings.resolved_platform_db_url)
    with db.session() as s:
        demo_key, key = api_keys.create_api_key(s, "demo", "admin")
        demo_key_id = demo_key.id
    # The demo's own webhook receiver is on 127.0.0.1; its rules are evaluated on demand.
    served = dataclasses.replace(settings, webhook_allowlist="127.0.0.1", monitor_interval=0)
    app = create_app(served, db=db, runner=Runner(db, served, api_url=url), api_url=url)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    _cmd(f"icefloe up --port {port}   # here: in the demo process")
    try:
        with Client(url, key) as client:
            try:
                project = client.create_project("lending-demo", None,
                                                "the demo's job scripts")
            except Exists:
                project = client.project("lending-demo")
            pid = project["id"]
            _copy_scripts(Path(project["path"]))
            jobs = {j["name"]: j for j in client.list_jobs(pid)}
            if "LoadBatch" not in jobs:
                jobs["LoadBatch"] = client.create_job(pid, "LoadBatch", "load_batch.py",
                                                      arguments="--rows 500 --seed 7",
                                                      timeout=600)
            if "TrainModel" not in jobs:
                jobs["TrainModel"] = client.create_job(
                    pid, "TrainModel", "train.py", arguments="--pipeline categorical",
                    parent_job_id=jobs["LoadBatch"]["id"], timeout=900, kernel="spark")
            _cmd("POST /api/v2/projects/{p}/jobs/{LoadBatch}/runs")
            load = client.wait_run(pid, jobs["LoadBatch"]["id"],
                                   client.create_run(pid, jobs["LoadBatch"]["id"])["id"])
            console.print(f"LoadBatch: {load['status']}")
            console.print(client.run_logs(pid, jobs["LoadBatch"]["id"], load["id"])["content"]
                          .strip(), markup=False)
            if load["status"] == "ENGINE_SUCCEEDED":
                train_job = jobs["TrainModel"]["id"]
                deadline = time.monotonic() + 900
                while not any(r["parent_run_id"] == load["id"]
                              for r in client.list_runs(pid, train_job)):
                    if time.monotonic() > deadline:
                        raise AssertionError("TrainModel did not start after LoadBatch")
                    time.sleep(0.2)
                child = next(r for r in client.list_runs(pid, train_job)
                             if r["parent_run_id"] == load["id"])
                done = client.wait_run(pid, train_job, child["id"])
                console.print(f"TrainModel (started by LoadBatch's success): {done['status']}")
                tail = client.run_logs(pid, train_job, child["id"])["content"].strip()
                console.print("\n".join(tail.splitlines()[-4:]), markup=False)
            _step(11, "Serve the newest version: build, deploy, call, send ground truth")
            dep = _serve(client, settings)
            if dep is not None:
                _step(12, "Monitor: the seed's Simulation and Inference jobs, an accuracy "
                          "rule with a webhook, the report")
                _monitor(client, settings, pid, dep)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        with db.session() as s:
            api_keys.revoke_api_key(s, demo_key_id)  # the demo's key lives only as long as it runs
        db.dispose()


def _copy_scripts(folder: Path) -> None:
    """Put the demo's job scripts into its project folder (projects live under the root)."""
    for script in sorted(PROJECT_DIR.glob("*.py")):
        target = folder / script.name
        target.write_bytes(script.read_bytes())
        target.chmod(0o640)  # readable by the job user's group when jobs run as another user


def _serve(client: Any, settings: Settings) -> dict[str, Any] | None:
    """Build and deploy the newest version, call it, send ground truth, read the metrics."""
    latest = ModelRegistry(settings).versions(MODEL)[-1]["version"]
    ref = f"{MODEL}/{latest}"
    _cmd(f"icefloe model deploy {ref} --replicas 2")
    build = client.build_model(ref)
    console.print(f"build {build['id']}: {build['status']} (self-test parity "
                  f"{build['parity']:.1e})" if build["status"] == "BUILD_READY"
                  else f"build failed: {build['reason']}", markup=False)
    if build["status"] != "BUILD_READY":
        return None
    for previous in client.list_deployments():  # a re-run replaces the last run's endpoint
        if previous["model"] == MODEL and previous["status"] == "DEPLOYED":
            client.stop_deployment(previous["id"])
    dep = client.deploy(build["id"], replicas=2)
    pids = ", ".join(str(r["pid"]) for r in dep["replica_status"])
    console.print(f"deployment {dep['id']} answers at {dep['endpoint']} "
                  f"(replica processes {pids}, ready)")
    fields = [f["name"] for f in build["input_schema"]["fields"]]
    numbers = {f["name"] for f in build["input_schema"]["fields"] if f["kind"] == "number"}
    rows = [r for r in Lakehouse(settings).read(TABLE, limit=200).to_pylist()
            if all(r[n] is not None for n in numbers)][:5]
    for row in rows:
        answer = client.call_model(dep["access_key"], {f: row[f] for f in fields})["response"]
        truth = int(row[LABEL_COLUMN] in POSITIVE_STATUSES)
        client.track_delayed_metrics({"final_label": truth}, answer["uuid"])
        console.print(f"  uuid {answer['uuid']}  probability {answer['probability']:.3f}  "
                      f"prediction {answer['prediction']}  truth {truth}")
    metrics = client.read_metrics(dep["id"])["metrics"]
    joined = sum("final_label" in m["metrics"] for m in metrics)
    console.print(f"read_metrics: {len(metrics)} predictions, {joined} with ground truth")
    return dict(dep)


class _Receiver:
    """The demo's webhook endpoint on 127.0.0.1: keeps each alert and checks its signature."""

    def __init__(self, secret: str) -> None:
        import hashlib
        import hmac
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.alerts: list[tuple[dict[str, Any], bool]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                expected = "sha256=" + hmac.new(secret.encode(), body,
                                                hashlib.sha256).hexdigest()
                signed = hmac.compare_digest(self.headers.get("X-Icefloe-Signature", ""),
                                             expected)
                outer.alerts.append((json.loads(body), signed))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _monitor(client: Any, settings: Settings, pid: str, dep: dict[str, Any]) -> None:
    """Simulation calls the model and sends ground truth that gets noisier; Inference reads
    the metrics back; an accuracy rule fires and its signed webhook arrives; the report."""
    import secrets

    receiver = _Receiver(secret := secrets.token_urlsafe(24))
    _cmd(f"icefloe monitor rule create {dep['id']} --metric accuracy --below 0.6 "
         f"--window 200 --webhook {receiver.url} --secret-file SECRET_FILE")
    rule = client.create_rule(dep["id"], metric="accuracy", comparison="<", threshold=0.6,
                              window="200", min_samples=100, target=receiver.url,
                              secret=secret)
    fields = {"arguments": f"{dep['id']} --predictions 600", "timeout": 900,
              "secret_environment": {"MODEL_ACCESS_KEY": dep["access_key"]}}
    jobs = {j["name"]: j for j in client.list_jobs(pid)}
    if "Simulation" in jobs:  # a re-run: the new deployment's id and access key
        jobs["Simulation"] = client.update_job(pid, jobs["Simulation"]["id"], **fields)
    else:
        jobs["Simulation"] = client.create_job(pid, "Simulation", "simulation.py", **fields)
    following = {"arguments": dep["id"], "timeout": 600,
                 "parent_job_id": jobs["Simulation"]["id"]}
    if "Inference" in jobs:
        client.update_job(pid, jobs["Inference"]["id"], **following)
    else:
        client.create_job(pid, "Inference", "inference.py", **following)
    _cmd("icefloe job run Simulation -p lending-demo --wait   # then Inference, its child")
    sim = jobs["Simulation"]["id"]
    runs = client.wait_chain(pid, sim, client.create_run(pid, sim)["id"])
    names = {j["id"]: j["name"] for j in client.list_jobs(pid)}
    for run in runs:
        console.print(f"{names.get(run['job_id'], run['job_id'])}: {run['status']}")
        log = client.run_logs(pid, run["job_id"], run["id"])["content"].strip()
        console.print("\n".join("  " + line for line in log.splitlines()[-8:]), markup=False)
    _cmd(f"icefloe monitor evaluate {dep['id']}")
    for change in client.evaluate_rules(dep["id"]):
        console.print(f"rule {change['rule']}: {change['from']} -> {change['to']} "
                      f"(accuracy {change['value']:.2f} over the last {change['samples']} "
                      "predictions with ground truth)")
    for alert, signed in receiver.alerts:
        console.print(f"webhook received: {alert['state']} {alert['metric']} = "
                      f"{alert['value']:.2f} (signature {'valid' if signed else 'INVALID'})")
    receiver.server.shutdown()
    if not receiver.alerts:
        console.print(f"[yellow]the accuracy rule {rule['id']} did not fire[/yellow]")
    from icefloe.monitoring.monitor import report_deployment
    from icefloe.store.db import Database

    report = settings.home / "demo" / "report.html"
    _cmd(f"icefloe monitor report {dep['id']} --output {report}")
    db = Database(settings.resolved_platform_db_url)
    try:
        shown = report_deployment(db, Lakehouse(settings), dep["id"], report, "1d")
    finally:
        db.dispose()
    drift = max((f["value"] for f in shown["figures"] if f["metric"] == "psi"
                 and f["value"] is not None), default=0.0)
    console.print(f"wrote {report} (largest feature PSI {drift:.3f}: the calls were drawn "
                  "from the training data)", markup=False)

"""The acceptance story, narrated, in the 8 steps of the seed's pipeline.

(1) land the data (2) train the baseline, deploy, simulate and monitor through jobs (3) the
``mlops_success`` DAG in Airflow (4) the ``mlops_fail`` DAG while a prober calls the endpoint
(5) find the model's snapshot through lineage and roll the table back (6) switch TrainModel
to the categorical pipeline (7) rerun ``mlops_fail``, now green, with a zero-downtime switch
(8) a summary with each step's time, the endpoint's availability and both versions' lineage.

Only this package knows the loan columns; the platform does not.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from icefloe.cli.output import print_arrow
from icefloe.config import Settings, mask_password, write_default_config
from icefloe.demo.loans import LABEL_COLUMN, generate_loans, write_loans
from icefloe.demo.pipeline import Airflow, DagRun, find_venv
from icefloe.demo.platform import PROJECT, ControlPlane, Prober, Receiver, copy_scripts, ensure_jobs
from icefloe.errors import ConflictError, IcefloeError, SchemaMismatchError
from icefloe.home import prepare_home
from icefloe.lakehouse import Lakehouse
from icefloe.registry.mlflow_registry import ModelRegistry
from icefloe.registry.reproduce import reproduce_training_data

TABLE = "lending.loans"
GRANTS = ("lending", "monitoring", "reports")  # the namespaces the demo project writes
MODEL = "loan-default"
CHAIN = ("TrainModel", "PushModel", "Simulation", "Inference")
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


class StoryError(IcefloeError):
    """A step of the story did not end as the story says it must."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise StoryError(message)


def _dag_table(run: DagRun) -> None:
    console.print(f"{run.dag_id}: [bold]{run.state}[/bold] in {run.seconds:.0f} s")
    colors = {"success": "green", "failed": "red", "upstream_failed": "yellow"}
    for task in run.tasks:
        color = colors.get(task.state, "white")
        console.print(f"  {task.task_id:<14} [{color}]{task.state:<15}[/{color}] "
                      f"{task.seconds:5.1f} s")


def _run_tail(client: Any, pid: str, job_id: str, lines: int = 3) -> tuple[dict[str, Any], str]:
    run = client.list_runs(pid, job_id)[0]
    log = client.run_logs(pid, job_id, run["id"])["content"].strip()
    return run, "\n".join(log.splitlines()[-lines:])


def run_story(settings: Settings, *, rows: int = 5000, bad_rows: int = 1000, seed: int = 42,
              airflow_venv: Path | None = None, serve: bool = False,
              port: int = 0) -> dict[str, Any]:
    """Run the story; returns its figures (step times, availability, versions, snapshots).

    Raises:
        ConfigError: No Airflow virtualenv (``make airflow`` makes one).
        StoryError: A step did not end as it must (its reason in the message).
    """
    venv = find_venv(airflow_venv)
    started = time.monotonic()
    times: dict[str, float] = {}
    prepare_home(settings, share=True)
    lh = Lakehouse(settings)
    data_dir = settings.home / "demo"

    mark = time.monotonic()
    _step(1, "Land the data: the loan book becomes the Iceberg table lending.loans (S1)")
    write_default_config(settings)
    console.print(f"home {settings.home.resolve()}  catalog "
                  f"{mask_password(settings.resolved_catalog_uri)}", markup=False)
    _reset_demo_table(lh)
    base_file = write_loans(generate_loans(rows, seed), data_dir / "loans.parquet")
    bad_file = write_loans(generate_loans(bad_rows, seed, bad_batch=True),
                           data_dir / "loans_bad_batch.parquet")
    _cmd(f"icefloe table load {TABLE} {base_file}")
    s1 = lh.load_file(TABLE, base_file, "create", table_properties={DEMO_PROPERTY: "true"})
    lh.tag(TABLE, "s1-base", s1.snapshot.snapshot_id)
    console.print(f"S1 = {s1.snapshot.snapshot_id}: {s1.snapshot.total_rows:,} rows "
                  "(tag s1-base)")
    _cmd(f'icefloe sql "SELECT {LABEL_COLUMN}, count(*) ... FROM {TABLE} GROUP BY 1"')
    print_arrow(lh.sql(f"""SELECT {LABEL_COLUMN}, count(*) AS loans,
                           round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS pct
                           FROM {TABLE} GROUP BY 1 ORDER BY 2 DESC"""), title="class balance")
    times["1 land the data"] = time.monotonic() - mark

    with contextlib.ExitStack() as stack:
        from icefloe.client import Client

        plane = stack.enter_context(ControlPlane(settings, port=port))
        _cmd(f"icefloe up --port {plane.port}   # here: inside the demo process")
        with Client(plane.url, plane.key) as admin, \
                Client(plane.url, plane.keys["ana"]) as ana, \
                Client(plane.url, plane.keys["raj"]) as raj:
            figures = _pipeline_story(People(admin, ana, raj), plane, settings, lh, venv,
                                      times, bad_file, seed, bad_rows)
        if not serve:
            stack.close()  # the control plane stops before the summary
        summary = _summarise(settings, times, started, figures, s1.snapshot.snapshot_id)
        if serve:
            console.rule("[bold green]done")
            plane.serve_ui(console)
            return summary
    console.print("the web UI: `icefloe demo --serve` keeps the control plane up after the "
                  "story and prints one-time sign-in links; or `icefloe up` and sign in at "
                  f"http://{settings.api_host}:{settings.api_port}/ui/ with an API key",
                  markup=False)
    console.rule("[bold green]done")
    return summary


@dataclass(frozen=True)
class People:
    """The demo's clients: the admin, ana (owns the project) and raj (views it)."""

    admin: Any
    ana: Any
    raj: Any



def _summarise(settings: Settings, times: dict[str, float], started: float,
               figures: dict[str, Any], s1: int) -> dict[str, Any]:
    """Step 8: print the figures, write ``summary.json``, check the endpoint answered."""
    _step(8, "Summary")
    total = time.monotonic() - started
    for name, seconds in times.items():
        console.print(f"  {name:<44} {seconds:6.1f} s")
    console.print(f"  {'the whole story':<44} {total:6.1f} s")
    seen = figures["availability"]
    console.print(f"endpoint availability while mlops_fail failed, during the rollback and "
                  f"the fixed rerun: [bold]{seen.percent:.2f}%[/bold] ({seen.answered:,} of "
                  f"{seen.calls:,} calls answered; by version "
                  + ", ".join(f"{MODEL}/{v}: {n:,}" for v, n in sorted(seen.versions.items()))
                  + ")")
    for failure in seen.failures[:5]:
        console.print(f"  [red]failed call:[/red] {failure}", markup=False)
    console.print(f"from TrainModel's failure to the fixed model serving: "
                  f"[bold]{figures['failure_to_fix_s']:.0f} s[/bold]")
    for version in (figures["old_version"], figures["new_version"]):
        console.print(f"lineage {MODEL}/{version['version']}: pipeline {version['pipeline']}, "
                      f"trained on {version['table']}@{version['snapshot_id']}", markup=False)
    console.print(f"report: {figures['report_csv']} and table reports.mlops_pipeline; "
                  f"monitoring report {figures['report_html']}", markup=False)
    _print_governance(figures["governance"])
    summary = {"times_s": times, "total_s": total, "availability_percent": seen.percent,
               "calls": seen.calls, "answered": seen.answered,
               "calls_by_version": {str(v): n for v, n in seen.versions.items()},
               "failure_to_fix_s": figures["failure_to_fix_s"], "dags": figures["dags"],
               "deployment": figures["deployment"], "s1": s1,
               "prediction_lineage": figures["governance"]["chain"],
               "readers": sorted(r["user"] for r in figures["governance"]["access"]["readers"]),
               "versions": [{k: figures[which][k] for k in ("version", "pipeline", "table",
                                                           "snapshot_id")}
                            for which in ("old_version", "new_version")]}
    summary_file = settings.home / "demo" / "summary.json"
    summary_file.write_text(json.dumps(summary, indent=2))
    console.print(f"the figures: {summary_file}", markup=False)
    _check(seen.answered == seen.calls and not seen.failures,
           f"the endpoint did not answer every call: {seen.answered:,} of {seen.calls:,}"
           + "".join(f"\n  {f}" for f in seen.failures[:5]))
    return summary

def _project(people: People) -> dict[str, Any]:
    """The demo project, owned by ana, viewed by raj, granted the namespaces it writes."""
    _cmd(f"icefloe user create ana --key-role editor; icefloe user create raj --key-role "
         f"viewer; icefloe project create {PROJECT}   # as ana")
    try:
        project = people.ana.create_project(PROJECT, None, "the demo's job scripts")
    except ConflictError:  # a re-run, or a home whose demo project an older demo made
        project = people.admin.project(PROJECT)
        people.admin.set_member(project["id"], "ana", "owner")
    pid = project["id"]
    people.admin.set_member(pid, "raj", "viewer")
    for namespace in GRANTS:
        people.admin.grant(pid, namespace, "write")
    _cmd(f"icefloe project member {PROJECT} raj --role viewer; " + "; ".join(
        f"icefloe project grant {PROJECT} {n} --access write" for n in GRANTS))
    members = people.admin.list_members(pid)
    console.print(f"project {PROJECT}: " + ", ".join(f"{m['user']} ({m['role']})"
                                                     for m in members)
                  + f"; may write {', '.join(GRANTS)}", markup=False)
    return project


def _pipeline_story(people: People, plane: ControlPlane, settings: Settings, lh: Lakehouse,
                    venv: Path, times: dict[str, float], bad_file: Path, seed: int,
                    bad_rows: int) -> dict[str, Any]:
    """Steps 2 to 7, with the control plane up; ana runs the pipeline, raj watches."""
    mark = time.monotonic()
    _step(2, "Train the baseline, deploy, simulate and monitor through jobs")
    for old in people.admin.list_deployments():  # a re-run replaces the last run's endpoint
        if old["model"] == MODEL and old["status"] == "DEPLOYED":
            people.admin.stop_deployment(old["id"])
    client = people.ana
    project = _project(people)
    pid = project["id"]
    copy_scripts(Path(project["path"]))
    jobs = ensure_jobs(client, pid, {
        "LoadBatch": {"script": "load_batch.py", "arguments": f"--seed {seed}",
                      "timeout": 900},
        "LoadBadBatch": {"script": "load_batch.py",
                         "arguments": f"--bad-batch {bad_rows} --seed {seed + 1}",
                         "timeout": 600},
        "TrainModel": {"script": "train.py", "arguments": "--pipeline baseline",
                       "timeout": 900, "kernel": "spark"},
        "PushModel": {"script": "push_model.py", "arguments": "--replicas 2",
                      "timeout": 600},
    })
    _cmd("icefloe job run TrainModel -p lending-demo --wait")
    train_run = client.wait_run(pid, jobs["TrainModel"],
                                client.create_run(pid, jobs["TrainModel"])["id"])
    run, tail = _run_tail(client, pid, jobs["TrainModel"], 4)
    console.print(f"TrainModel: {train_run['status']}\n{tail}", markup=False)
    _check(train_run["status"] == "ENGINE_SUCCEEDED",
           f"the baseline TrainModel run ended {train_run['status']}: {tail}")
    baseline = client.model_versions(MODEL)[-1]
    _cmd(f"icefloe model deploy {MODEL}/{baseline['version']} --replicas 2")
    build = client.build_model(f"{MODEL}/{baseline['version']}")
    _check(build["status"] == "BUILD_READY", f"the baseline build failed: {build['reason']}")
    dep = client.deploy(build["id"], replicas=2)
    console.print(f"deployment {dep['id']} serves {MODEL}/{baseline['version']} at "
                  f"{dep['endpoint']}", markup=False)
    receiver = Receiver(secret := secrets.token_urlsafe(24))
    client.create_rule(dep["id"], metric="accuracy", comparison="<", threshold=0.6,
                       window="200", min_samples=100, target=receiver.url, secret=secret)
    _cmd(f"icefloe monitor rule create {dep['id']} --metric accuracy --below 0.6 "
         f"--window 200 --webhook {receiver.url} --secret-file SECRET_FILE")
    jobs.update(ensure_jobs(client, pid, {
        "Simulation": {"script": "simulation.py", "arguments": f"{dep['id']} --predictions 600",
                       "timeout": 900,
                       "secret_environment": {"MODEL_ACCESS_KEY": dep["access_key"]}},
        "Inference": {"script": "inference.py", "arguments": dep["id"], "timeout": 600},
    }))
    for name in ("Simulation", "Inference"):
        _cmd(f"icefloe job run {name} -p lending-demo --wait")
        done = client.wait_run(pid, jobs[name], client.create_run(pid, jobs[name])["id"])
        _, tail = _run_tail(client, pid, jobs[name], 3)
        console.print(f"{name}: {done['status']}\n{tail}", markup=False)
        _check(done["status"] == "ENGINE_SUCCEEDED", f"{name} ended {done['status']}")
    for change in client.evaluate_rules(dep["id"]):
        console.print(f"rule {change['rule']}: {change['from']} -> {change['to']} (accuracy "
                      f"{change['value']:.2f} over {change['samples']} predictions with truth)")
    for alert, signed in receiver.alerts:
        console.print(f"webhook received: {alert['state']} {alert['metric']} = "
                      f"{alert['value']:.2f} (signature {'valid' if signed else 'INVALID'})")
    receiver.close()
    report_html = settings.home / "demo" / "report.html"
    report_html.write_text(client.report(dep["id"], window="1d"))
    console.print(f"monitoring report: {report_html}", markup=False)
    times["2 baseline through jobs"] = time.monotonic() - mark

    airflow = Airflow(venv, settings.home / "airflow", plane.url, plane.keys["ana"])
    airflow.migrate()
    report_csv = settings.home / "demo" / "mlops_report.csv"
    dag_env = {"ICEFLOE_DEMO_PROJECT": PROJECT, "ICEFLOE_DEMO_DEPLOYMENT": dep["id"],
               "ICEFLOE_DEMO_REPORT_CSV": str(report_csv), "ICEFLOE_DEMO_POLL": "1"}

    def order(load: str) -> list[str]:
        return ["start", load, *CHAIN, "report", "end"]

    mark = time.monotonic()
    _step(3, "Airflow: mlops_success (Spark ETL batch -> retrain -> redeploy -> simulate -> "
             "monitor -> SQL report)")
    _cmd("airflow dags test mlops_success")
    success = airflow.test("mlops_success", dag_env, order("load_batch"))
    _dag_table(success)
    _check(success.state == "success", f"mlops_success ended {success.state}:\n"
                                       f"{success.output[-3000:]}")
    report = lh.sql("SELECT pipeline, model_version, predictions, with_truth, accuracy "
                    "FROM reports.mlops_pipeline ORDER BY pipeline_run, model_version")
    print_arrow(report, title=f"reports.mlops_pipeline (also {report_csv})")
    _cmd(f'icefloe sql "SELECT count(*) ... FROM {TABLE}"   # raj, through the API')
    mix = people.raj.sql(f"SELECT count(*) AS loans, round(avg(annual_inc)) AS avg_income "
                         f"FROM {TABLE}")
    console.print(f"raj (viewer) reads {TABLE}: {mix['rows'][0]}", markup=False)
    times["3 mlops_success"] = time.monotonic() - mark

    mark = time.monotonic()
    _step(4, "Airflow: mlops_fail (a batch with new categorical columns) while a prober calls "
             "the endpoint")
    serving = client.get_deployment(dep["id"])
    old_version = next(v for v in client.model_versions(MODEL)
                       if v["version"] == serving["model_version"])
    fields = [f["name"] for f in serving["input_schema"]["fields"]]
    records = [{f: r.get(f) for f in fields} for r in lh.read(TABLE, limit=400).to_pylist()
               if all(r.get(f) is not None for f in fields)][:200]
    prober = Prober(plane.url, plane.keys["raj"], dep["access_key"], records,
                    dep["id"]).start()
    console.print(f"prober (raj's key): calling {MODEL}/{old_version['version']} one call "
                  f"after another with the {len(fields)} fields callers send today")
    _cmd("airflow dags test mlops_fail")
    failed = airflow.test("mlops_fail", dag_env, order("load_bad_batch"))
    _dag_table(failed)
    _check(failed.task("TrainModel").state == "failed",
           f"TrainModel should fail on the new categorical columns; it ended "
           f"{failed.task('TrainModel').state}")
    fail_run, tail = _run_tail(client, pid, jobs["TrainModel"], 1)
    console.print(f"[red]TrainModel run {fail_run['id'][:8]} {fail_run['status']}:[/red]")
    console.print(f"  {tail}", markup=False)
    _check("cannot assemble string column" in tail,
           f"TrainModel failed for another reason than the new categorical columns: {tail}")
    seen = prober.seen
    console.print(f"meanwhile the endpoint answered {seen.answered:,} of {seen.calls:,} calls "
                  f"with {MODEL}/{client.get_deployment(dep['id'])['model_version']}")
    times["4 mlops_fail while serving"] = time.monotonic() - mark

    mark = time.monotonic()
    _step(5, "Lineage: the serving model's snapshot; roll the table back to it")
    ref = f"{MODEL}/{old_version['version']}"
    _cmd(f"icefloe lineage {ref}")
    console.print(f"{ref} (serving) was trained on {old_version['table']}@"
                  f"{old_version['snapshot_id']}; the table is now at "
                  f"{lh.current_snapshot(TABLE).snapshot_id}")  # type: ignore[union-attr]
    _cmd(f"icefloe table rollback {TABLE} --to-model {ref}")
    rolled = lh.rollback(TABLE, old_version["snapshot_id"])
    console.print(f"current snapshot {rolled.previous_snapshot_id} -> "
                  f"{rolled.snapshot.snapshot_id}; schema id {rolled.previous_schema_id} -> "
                  f"{rolled.schema_id} (columns removed: "
                  f"{', '.join(rolled.columns_removed) or 'none'})")
    _cmd(f"icefloe table load {TABLE} {bad_file} --mode append")
    try:
        lh.load_file(TABLE, bad_file, "append")
        raise StoryError("the bad batch was accepted without --evolve after the rollback")
    except SchemaMismatchError as exc:
        console.print(f"the guard is back: [red]refused:[/red] {exc.message}")
    _cmd(f"icefloe data reproduce {ref} --output {settings.home / 'demo' / 'training.parquet'}")
    repro = reproduce_training_data(settings, ref, settings.home / "demo" / "training.parquet")
    console.print(f"reproduced {repro['rows']:,} rows of {ref}'s training data; the "
                  "fingerprint matches")
    times["5 lineage and rollback"] = time.monotonic() - mark

    mark = time.monotonic()
    _step(6, "Switch TrainModel to the categorical pipeline")
    _cmd("PATCH /api/v2/projects/{p}/jobs/{TrainModel} "
         '{"arguments": "--pipeline categorical"}')
    client.update_job(pid, jobs["TrainModel"], arguments="--pipeline categorical")
    times["6 switch the pipeline"] = time.monotonic() - mark

    mark = time.monotonic()
    _step(7, "Airflow: mlops_fail again, now green, with a zero-downtime switch")
    _cmd("airflow dags test mlops_fail")
    fixed = airflow.test("mlops_fail", dag_env, order("load_bad_batch"))
    _dag_table(fixed)
    _check(fixed.state == "success", f"mlops_fail ended {fixed.state} after the fix:\n"
                                     f"{fixed.output[-3000:]}")
    push_run, tail = _run_tail(client, pid, jobs["PushModel"], 1)
    console.print(tail, markup=False)
    time.sleep(2)  # a few more calls on the new version before the prober stops
    seen = prober.stop()
    new_version = client.model_versions(MODEL)[-1]
    _check(client.get_deployment(dep["id"])["model_version"] == new_version["version"],
           "the fixed version is not the one serving")
    times["7 mlops_fail, fixed"] = time.monotonic() - mark
    governance = _governance(people, plane, settings, dep, records)
    return {"availability": seen, "governance": governance, "old_version": old_version,
            "new_version": new_version,
            "failure_to_fix_s": _seconds_between(fail_run["finished_at"],
                                                 push_run["finished_at"]),
            "report_csv": report_csv, "report_html": report_html,
            "deployment": dep["id"], "dags": {"mlops_success": success.state,
                                              "mlops_fail": failed.state,
                                              "mlops_fail_fixed": fixed.state}}


def _governance(people: People, plane: ControlPlane, settings: Settings, dep: dict[str, Any],
                records: list[dict[str, Any]]) -> dict[str, Any]:
    """One more call to the fixed model, the chain behind its answer, and who read the
    table during the story (what step 8 prints)."""
    import httpx

    from icefloe.lineage.assemble import explain_prediction

    answer = httpx.post(f"{plane.url}/model", timeout=30,
                        headers={"Authorization": f"Bearer {plane.keys['raj']}"},
                        json={"accessKey": dep["access_key"], "request": records[0]})
    _check(answer.status_code == 200, f"the fixed model did not answer: {answer.text[:300]}")
    uuid = answer.json()["response"]["uuid"]
    plane.app.state.prediction_log.flush()  # the answer is written to the store first
    chain = explain_prediction(plane.db, settings, uuid)
    access = people.admin.table_access(TABLE, since="1d")
    return {"prediction": uuid, "chain": chain, "access": access}


def _print_governance(found: dict[str, Any]) -> None:
    chain = found["chain"]
    _cmd(f"icefloe lineage prediction:{found['prediction']} --upstream")
    snap = chain["training_snapshot"]
    console.print(f"prediction {found['prediction']} <- deployment {chain['deployment']} <- "
                  f"build {chain['build']} <- {chain['model']}/{chain['model_version']} <- "
                  f"training run {chain['training_run']} <- {snap['table']}@"
                  f"{snap['snapshot_id']}", markup=False)
    for batch in chain["batches"]:
        who = ", ".join([*batch["airflow"], *batch["runs"], *batch["users"], *batch["inputs"]])
        console.print(f"  {batch['snapshot_id']} {batch['operation'] or '':<9} "
                      f"+{batch['added_rows'] or 0:<6} {who or '(no writer recorded)'}",
                      markup=False)
    for back in chain["rollbacks"]:
        console.print(f"  rollback {back.get('from')} -> {back.get('to')} by "
                      f"{back.get('actor') or back.get('by')}", markup=False)
    _cmd(f"icefloe access {TABLE} --since 1d")
    for holder in found["access"]["access"]:
        console.print(f"  may {holder['access']:<5} {holder['user']}"
                      + (" (admin)" if holder.get("admin") else ""), markup=False)
    for reader in found["access"]["readers"]:
        console.print(f"  read {reader['reads']:>4}x {reader['user']} via "
                      f"{', '.join(reader.get('via') or [])}", markup=False)


def _seconds_between(start: str, end: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()

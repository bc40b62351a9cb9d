"""DAGs in a real Airflow 3.3 against a running icefloe: icefloe's provider, Cloudera's
CDEJobRunOperator and a CML API v2 job operator, each task's outcome asserted on both sides."""

import json

from tests.airflow.conftest import Airflow, Platform


def test_icefloe_operators_run_jobs_and_sql_and_reattach_on_retry(
        airflow: Airflow, platform: Platform) -> None:
    dag = airflow.test_dag("icefloe_operators", platform.connections)
    assert dag.code != 0  # some tasks are meant to fail
    assert dag.tasks["run_ok"] == ("success", 1), dag.output[-3000:]
    assert dag.tasks["report"][0] == "success"
    assert dag.tasks["run_fail"][0] == "failed"
    assert dag.tasks["run_retried"] == ("success", 2)
    assert dag.tasks["run_deferred"][0] == "success"
    assert dag.tasks["run_too_long"][0] == "failed"
    assert dag.tasks["run_missing"][0] == "failed"
    assert dag.tasks["run_flaky"] == ("success", 2)
    assert dag.tasks["run_killed"][0] == "failed"  # past its execution_timeout

    ok = platform.runs("ok")
    assert [r["status"] for r in ok] == ["ENGINE_SUCCEEDED"]
    log = platform.log("ok", ok[0])
    assert "args ['--from-airflow'," in log and "BATCH b20" in log  # templated per run
    # The run's log is in the task's log; a failure says why.
    assert f"[run {ok[0]['id'][:8]}] args" in dag.output
    assert "ended ENGINE_FAILED: exit code 3" in dag.output
    assert "about to fail" in dag.output
    assert "job 'no-such-job' in project 'airflow-tests' does not exist" in dag.output
    # The retried task re-attached: exactly one run in the job's history, and it succeeded.
    retried = platform.runs("slowish")
    assert [r["status"] for r in retried] == ["ENGINE_SUCCEEDED"]
    assert "re-attached to run " + retried[0]["id"] in dag.output
    assert [r["status"] for r in platform.runs("other")] == ["ENGINE_SUCCEEDED"]
    # A retry after a failed run ran the job again (a new run), not the failed one.
    assert [r["status"] for r in platform.runs("flaky")] == ["ENGINE_SUCCEEDED",
                                                             "ENGINE_FAILED"]
    assert "ended ENGINE_FAILED: starting the next run" in dag.output
    # Going past the timeout stopped the run.
    assert [r["status"] for r in platform.runs("sleepy")] == ["ENGINE_STOPPED"]
    assert "did not end within 3 s; it was stopped" in dag.output
    # The task killed by Airflow stopped its run on the way out.
    assert [r["status"] for r in platform.runs("sleepy_too")] == ["ENGINE_STOPPED"]
    answer = platform.cp.client.post("/sql", json={"sql": "SELECT answer FROM reports.answer"})
    assert answer.json()["rows"] == [{"answer": 42}]


def test_dags_written_for_cdp_run_unchanged(airflow: Airflow, platform: Platform) -> None:
    dag = airflow.test_dag("cdp", platform.connections)
    assert dag.tasks["load_ok"][0] == "success", dag.output[-3000:]
    assert dag.tasks["load_fail"][0] == "failed"
    assert dag.tasks["load_killed"][0] == "failed"
    assert dag.tasks["same_request"][0] == "success"
    assert dag.tasks["cml_train"][0] == "success"

    ok = platform.runs("ok")
    assert [r["status"] for r in ok] == ["ENGINE_SUCCEEDED"]
    log = platform.log("ok", ok[0])
    assert "args ['--rows', '9']" in log and "BATCH b1" in log  # overrides and variables
    assert [r["status"] for r in platform.runs("fail")] == ["ENGINE_FAILED"]
    assert [r["status"] for r in platform.runs("sleepy")] == ["ENGINE_STOPPED"]  # killed
    assert len(platform.runs("slowish")) == 1  # one requestID, one run
    assert [r["status"] for r in platform.runs("other")] == ["ENGINE_SUCCEEDED"]
    # The token was fetched with the key's id and secret and never logged.
    assert platform.cp.key not in dag.output


def test_the_demo_dags_parse_in_airflow(airflow: Airflow) -> None:
    from tests.airflow.conftest import DEMO_DAGS

    # Cloudera's operator reads its connection when the DAG is parsed: one must exist.
    cde = {"conn_type": "cloudera_data_engineering", "login": "id", "password": "key",
           "host": "http://127.0.0.1:9/cde/p/api/v1",
           "extra": {"auth_mode": "awc", "awc_console_url": "http://127.0.0.1:9"}}
    folder = {"AIRFLOW__CORE__DAGS_FOLDER": str(DEMO_DAGS), "PYTHONPATH": "",
              "AIRFLOW_CONN_CDE_RUNTIME_API": json.dumps(cde)}
    # Parsed here and now (--local), not read from Airflow's DB; Airflow prints its warnings
    # on stdout too, so the JSON is the last line.
    errors = airflow.run("dags", "list-import-errors", "--local", "-o", "json", env=folder)
    assert errors.returncode == 0, errors.stderr
    assert json.loads(errors.stdout.strip().splitlines()[-1]) == []
    listed = airflow.run("dags", "list", "--local", "-o", "json", env=folder)
    assert {"mlops_success", "mlops_fail", "mlops_success_cdp"} <= {
        d["dag_id"] for d in json.loads(listed.stdout.strip().splitlines()[-1])}

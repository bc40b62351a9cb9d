"""Test DAG for icefloe's provider: independent tasks, each an outcome the test asserts.
The project comes from ICEFLOE_TEST_PROJECT."""

import os
from datetime import datetime, timedelta

try:
    from airflow.sdk import DAG

    AIRFLOW_3 = True
except ImportError:  # Airflow 2.10 (checked by hand, not in CI)
    from airflow import DAG

    AIRFLOW_3 = False
from icefloe_provider.operators.jobs import IcefloeJobRunOperator
from icefloe_provider.operators.sql import IcefloeSqlOperator

PROJECT = os.environ.get("ICEFLOE_TEST_PROJECT", "airflow-tests")


class DiesAfterStarting(IcefloeJobRunOperator):
    """A first try whose worker is lost once its run has started (the run goes on)."""

    def execute(self, context):
        if context["ti"].try_number == 1:
            self.wait = False
            run_id = super().execute(context)
            self.wait = True
            raise RuntimeError(f"worker lost after starting run {run_id}")
        return super().execute(context)


with DAG("icefloe_operators", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    run = IcefloeJobRunOperator(task_id="run_ok", project=PROJECT, job="ok",
                                arguments="--from-airflow {{ ds }}", env={"BATCH": "b{{ ds }}"},
                                poll_interval=0.5)
    report = IcefloeSqlOperator(task_id="report", sql="SELECT 41 + 1 AS answer",
                                output_table="reports.answer")
    run >> report
    IcefloeJobRunOperator(task_id="run_fail", project=PROJECT, job="fail", poll_interval=0.5)
    DiesAfterStarting(task_id="run_retried", project=PROJECT, job="slowish", retries=1,
                      retry_delay=0, poll_interval=0.5)
    IcefloeJobRunOperator(task_id="run_deferred", project=PROJECT, job="other",
                          deferrable=True, poll_interval=0.5)
    IcefloeJobRunOperator(task_id="run_too_long", project=PROJECT, job="sleepy", timeout=3,
                          poll_interval=0.5)
    if AIRFLOW_3:  # Airflow 2.10's dag.test() ends the whole run at an execution_timeout
        IcefloeJobRunOperator(task_id="run_killed", project=PROJECT, job="sleepy_too",
                              execution_timeout=timedelta(seconds=4), poll_interval=0.5)
    IcefloeJobRunOperator(task_id="run_flaky", project=PROJECT, job="flaky", retries=1,
                          retry_delay=0, poll_interval=0.5)
    IcefloeJobRunOperator(task_id="run_missing", project=PROJECT, job="no-such-job")

"""``mlops_success`` as it is written for CDP, the way the seed writes it: Cloudera's
CDEJobRunOperator for the Spark ETL job (connection ``cde_runtime_api``) and a CML API v2
job operator for the ML chain (connection ``cml_rest_api``). It runs against icefloe with
only those connections pointing at it (see the README, Airflow)."""

import os
import sys
from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, chain
from cloudera.cdp.airflow.operators.cde_operator import CDEJobRunOperator

# The operator lives beside this file; not every Airflow entry point puts the DAG folder on
# sys.path (`airflow dags list --local` does not).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cml_v2 import CmlJobRunOperator  # noqa: E402

PROJECT = os.environ.get("ICEFLOE_DEMO_PROJECT", "lending-demo")

with DAG("mlops_success_cdp", schedule=None, catchup=False, start_date=datetime(2026, 1, 1),
         default_args={"retries": 0}, tags=["cdp", "mlops"]):
    start = EmptyOperator(task_id="start")
    load_batch = CDEJobRunOperator(task_id="load_batch", job_name="LoadBatch",
                                   job_poll_interval=5)
    ml_jobs = [CmlJobRunOperator(task_id=job, project=PROJECT, job=job, poll_interval=5)
             for job in ("TrainModel", "PushModel", "Simulation", "Inference")]
    end = EmptyOperator(task_id="end")
    chain(start, load_batch, *ml_jobs, end)

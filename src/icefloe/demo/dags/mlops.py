"""The seed's two pipelines on icefloe.

``mlops_success``: start >> load_batch (the Spark ETL job) >> TrainModel >> PushModel >>
Simulation >> Inference >> report (SQL over the monitoring tables) >> end.
``mlops_fail``: the same chain after load_bad_batch, a batch with new categorical columns:
with the baseline pipeline, TrainModel fails and the deployed version keeps serving.

Settings come from the environment the demo runs Airflow with: the project, the deployment
the report is about, where the report's CSV goes and how often runs are polled.
"""

import os
from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, chain
from icefloe_provider.operators.jobs import IcefloeJobRunOperator
from icefloe_provider.operators.sql import IcefloeSqlOperator

PROJECT = os.environ.get("ICEFLOE_DEMO_PROJECT", "lending-demo")
DEPLOYMENT = os.environ.get("ICEFLOE_DEMO_DEPLOYMENT", "")
REPORT_CSV = os.environ.get("ICEFLOE_DEMO_REPORT_CSV", "mlops_report.csv")
POLL = float(os.environ.get("ICEFLOE_DEMO_POLL", "5"))
CHAIN = ("TrainModel", "PushModel", "Simulation", "Inference")
LOAD_TASKS = {"LoadBatch": "load_batch", "LoadBadBatch": "load_bad_batch"}

# Accuracy and volume of the deployment, per model version it served.
REPORT_SQL = f"""
SELECT '{{{{ dag.dag_id }}}}' AS pipeline, '{{{{ run_id }}}}' AS pipeline_run,
       deployment, model_version, count(*) AS predictions,
       count(truth) AS with_truth,
       round(avg(CASE WHEN prediction = truth THEN 1.0 ELSE 0.0 END)
             FILTER (WHERE truth IS NOT NULL), 3) AS accuracy,
       max(time) AS last_call
FROM monitoring.predictions
WHERE deployment = '{DEPLOYMENT}'
GROUP BY deployment, model_version
ORDER BY model_version
"""


def pipeline(dag_id: str, load_job: str, description: str) -> DAG:
    """start >> load >> TrainModel >> PushModel >> Simulation >> Inference >> report >> end"""
    with DAG(dag_id, description=description, schedule=None, catchup=False,
             start_date=datetime(2026, 1, 1), default_args={"retries": 0},
             tags=["icefloe", "mlops"]) as dag:
        tasks = [EmptyOperator(task_id="start"),
                 IcefloeJobRunOperator(task_id=LOAD_TASKS[load_job], project=PROJECT,
                                       job=load_job, poll_interval=POLL)]
        tasks += [IcefloeJobRunOperator(task_id=job, project=PROJECT, job=job,
                                        poll_interval=POLL) for job in CHAIN]
        tasks += [IcefloeSqlOperator(task_id="report", sql=REPORT_SQL,
                                     output_table="reports.mlops_pipeline", mode="append",
                                     csv_path=REPORT_CSV),
                  EmptyOperator(task_id="end")]
        chain(*tasks)
    return dag


mlops_success = pipeline("mlops_success", "LoadBatch",
                         "a new batch from the Spark ETL job, retrain, redeploy, monitor")
mlops_fail = pipeline("mlops_fail", "LoadBadBatch",
                      "a batch with new categorical columns, retrain, redeploy, monitor")

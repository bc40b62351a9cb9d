"""DAGs written for CDP, unchanged but for their connections: Cloudera's CDEJobRunOperator
(connection cde_runtime_api) and a CML API v2 job operator like the seed's (connection
cml_rest_api, an HTTP connection whose extra carries the Authorization header)."""

from datetime import datetime

from airflow.exceptions import AirflowException
from airflow.sdk import DAG, BaseOperator
from cloudera.cdp.airflow.operators.cde_operator import CDEJobRunOperator

# The demo's CML API v2 operator (src/icefloe/demo/dags, on PYTHONPATH in these tests).
from cml_v2 import CmlJobRunOperator

START = datetime(2026, 1, 1)


class SameRequestTwice(BaseOperator):
    """Submits one CDE run request twice with the same requestID, as a retry that reuses its
    request would; both must name the same run."""

    def execute(self, context):
        from cloudera.airflow.providers.hooks.cde import CdeHook

        ti = context["ti"]
        request_id = f"{ti.dag_id}#{ti.run_id}#{ti.task_id}"
        hook = CdeHook()
        first = hook.submit_job("slowish", request_id=request_id)
        second = hook.submit_job("slowish", request_id=request_id)
        if first != second:
            raise AirflowException(f"one requestID started two runs: {first} and {second}")
        return first


with DAG("cdp", schedule=None, start_date=START, catchup=False):
    CDEJobRunOperator(task_id="load_ok", job_name="ok", job_poll_interval=1,
                      variables={"BATCH": "b1"}, overrides={"spark": {"args": ["--rows", "9"]}})
    CDEJobRunOperator(task_id="load_fail", job_name="fail", job_poll_interval=1)
    CDEJobRunOperator(task_id="load_killed", job_name="sleepy", job_poll_interval=1, timeout=4)
    SameRequestTwice(task_id="same_request")
    CmlJobRunOperator(task_id="cml_train", project="airflow-tests", job="other")

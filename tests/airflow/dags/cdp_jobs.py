"""DAGs written for CDP, unchanged but for their connections: Cloudera's CDEJobRunOperator
(connection cde_runtime_api) and a CML API v2 job operator like the seed's (connection
cml_rest_api, an HTTP connection whose extra carries the Authorization header)."""

import time
from datetime import datetime

from airflow.exceptions import AirflowException
from airflow.providers.http.hooks.http import HttpHook
from airflow.sdk import DAG, BaseOperator
from cloudera.cdp.airflow.operators.cde_operator import CDEJobRunOperator

START = datetime(2026, 1, 1)


class CmlJobRunOperator(BaseOperator):
    """Runs a CML job through API v2 the way CML automation does: names to ids with paging,
    POST .../runs with an empty body, poll the run."""

    def __init__(self, project: str, job: str, **kwargs):
        super().__init__(**kwargs)
        self.project = project
        self.job = job

    def _find(self, hook, url, key, name):
        token = ""
        while True:
            page = hook.run(endpoint=f"{url}?page_size=1&page_token={token}").json()
            for item in page[key]:
                if item["name"] == name:
                    return item["id"]
            token = page.get("next_page_token")
            if not token:
                raise AirflowException(f"{name} not found")

    def execute(self, context):
        get = HttpHook(http_conn_id="cml_rest_api", method="GET")
        post = HttpHook(http_conn_id="cml_rest_api", method="POST")
        project_id = self._find(get, "api/v2/projects", "projects", self.project)
        jobs = f"api/v2/projects/{project_id}/jobs"
        job_id = self._find(get, jobs, "jobs", self.job)
        run = post.run(endpoint=f"{jobs}/{job_id}/runs").json()
        while run["status"] in ("ENGINE_SCHEDULING", "ENGINE_STARTING", "ENGINE_RUNNING"):
            time.sleep(0.5)
            run = get.run(endpoint=f"{jobs}/{job_id}/runs/{run['id']}").json()
        if run["status"] != "ENGINE_SUCCEEDED":
            raise AirflowException(f"CML job {self.job} ended {run['status']}")


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

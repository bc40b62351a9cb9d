"""A CML API v2 job operator as CML users write it (the seed's CMLJobRunOperator role): find
the project and job by name through paged lists, start a run with an empty body, poll it.

It talks to any CML API v2 server; icefloe is one. Connection ``cml_rest_api``: an HTTP
connection whose host is the server and whose extra carries the Authorization header.
"""

import time

from airflow.exceptions import AirflowException
from airflow.providers.http.hooks.http import HttpHook
from airflow.sdk import BaseOperator

RUNNING = ("ENGINE_SCHEDULING", "ENGINE_STARTING", "ENGINE_RUNNING")


class CmlJobRunOperator(BaseOperator):
    """Run a CML job by project and job name and wait for it."""

    def __init__(self, project: str, job: str, poll_interval: float = 10, **kwargs):
        super().__init__(**kwargs)
        self.project = project
        self.job = job
        self.poll_interval = poll_interval

    @staticmethod
    def _find(hook, url, key, name):
        token = ""
        while True:
            page = hook.run(endpoint=f"{url}?page_size=100&page_token={token}").json()
            for item in page[key]:
                if item["name"] == name:
                    return item["id"]
            token = page.get("next_page_token")
            if not token:
                raise AirflowException(f"CML {key[:-1]} {name!r} not found")

    def execute(self, context):
        get = HttpHook(http_conn_id="cml_rest_api", method="GET")
        post = HttpHook(http_conn_id="cml_rest_api", method="POST")
        project_id = self._find(get, "api/v2/projects", "projects", self.project)
        jobs = f"api/v2/projects/{project_id}/jobs"
        job_id = self._find(get, jobs, "jobs", self.job)
        run = post.run(endpoint=f"{jobs}/{job_id}/runs").json()
        self.log.info("started CML run %s of %s/%s", run["id"], self.project, self.job)
        while run["status"] in RUNNING:
            time.sleep(self.poll_interval)
            run = get.run(endpoint=f"{jobs}/{job_id}/runs/{run['id']}").json()
        if run["status"] != "ENGINE_SUCCEEDED":
            raise AirflowException(f"CML job {self.project}/{self.job} ended {run['status']}")
        return run["id"]

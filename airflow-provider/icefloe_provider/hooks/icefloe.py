"""The icefloe hook: its REST API with retries, and errors that name what failed.

The connection (type ``icefloe``) holds the server's URL as its host and an API key as its
password. Connection errors, 429 and 5xx answers are retried with backoff, honouring
``Retry-After``; any other error fails at once with the server's message and the project,
job or run it was about.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx

from icefloe_provider import CONNECTION_FORM
from icefloe_provider.compat import AirflowException, BaseHook

API = "/api/v2"
RETRIED = frozenset({429, 500, 502, 503, 504})
MAX_WAIT_S = 60.0


class IcefloeApiError(AirflowException):
    """icefloe answered an error (or could not be reached after the retries).

    Attributes:
        status: The HTTP status (None when the server was never reached).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def retry_wait(status: int | None, headers: httpx.Headers | None, attempt: int) -> float | None:
    """Seconds to wait before trying again, or None when the answer is final.

    Args:
        status: The answer's status (None: the server was not reached).
        headers: The answer's headers (for ``Retry-After``).
        attempt: How many tries were made so far (1 after the first).
    """
    if status is not None and status not in RETRIED:
        return None
    backoff = min(2.0 ** (attempt - 1), 30.0)
    after = headers.get("retry-after") if headers is not None else None
    if after is not None and after.strip().isdigit():
        return min(float(after.strip()), MAX_WAIT_S)
    return backoff


def error_message(response: httpx.Response) -> str:
    """The server's one-line reason (its JSON error shape), else the start of the body."""
    try:
        body = response.json()
        return str(body["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:300] or response.reason_phrase


def connection_settings(conn: Any) -> tuple[str, str]:
    """``(base URL, API key)`` of an ``icefloe`` connection."""
    host = (conn.host or "").rstrip("/")
    if not host:
        raise AirflowException(f"connection {conn.conn_id!r} has no host: set it to the "
                               "icefloe URL, e.g. http://127.0.0.1:8080")
    if "://" not in host:
        host = f"{conn.schema or 'http'}://{host}" + (f":{conn.port}" if conn.port else "")
    if not conn.password:
        raise AirflowException(f"connection {conn.conn_id!r} has no API key (its password)")
    return host.removesuffix(API), conn.password


class IcefloeHook(BaseHook):
    """icefloe's REST API.

    Args:
        icefloe_conn_id: The ``icefloe`` connection (URL as host, API key as password).
        retries: Tries after the first for connection errors, 429 and 5xx.
        timeout: Seconds per HTTP request.
    """

    conn_name_attr = "icefloe_conn_id"
    default_conn_name = "icefloe_default"
    conn_type = "icefloe"
    hook_name = "icefloe"

    def __init__(self, icefloe_conn_id: str = default_conn_name, *, retries: int = 5,
                 timeout: float = 30.0) -> None:
        super().__init__()
        self.icefloe_conn_id = icefloe_conn_id
        self.retries = retries
        self.timeout = timeout
        self._client: httpx.Client | None = None
        self._base = ""

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form (Airflow 2 reads it from here, Airflow 3 from provider info)."""
        return {k.replace("-", "_"): v for k, v in CONNECTION_FORM.items()}

    @property
    def base_url(self) -> str:
        """The server's URL (without ``/api/v2``)."""
        self.get_conn()
        return self._base

    def get_conn(self) -> httpx.Client:
        """An HTTP client carrying the API key."""
        if self._client is None:
            self._base, key = connection_settings(self.get_connection(self.icefloe_conn_id))
            self._client = httpx.Client(base_url=self._base + API, timeout=self.timeout,
                                        headers={"Authorization": f"Bearer {key}"})
        return self._client

    def request(self, method: str, path: str, *, what: str, replay: bool = True,
                **kwargs: Any) -> httpx.Response:
        """One API call with retries.

        Args:
            method: HTTP method.
            path: Path under ``/api/v2``.
            what: What the call is about, for errors (``job 'TrainModel' in project 'x'``).
            replay: Whether the call may be sent again after the server may have acted on
                it (a timeout, a 5xx). Off for calls that are not idempotent: then only a
                call that never reached the server (no connection) or was turned away
                before any work (429) is sent again.
            **kwargs: Passed to httpx (json, params, headers, timeout).

        Raises:
            IcefloeApiError: An error answer, or no answer after the retries.
        """
        client = self.get_conn()
        attempt = 0
        while True:
            attempt += 1
            status, headers, reason = None, None, ""
            maybe_done = False  # the server may have acted on the call
            try:
                response = client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}"
                maybe_done = not isinstance(exc, httpx.ConnectError)
            else:
                if response.status_code < 400:
                    return response
                status, headers = response.status_code, response.headers
                reason = f"HTTP {status}: {error_message(response)}"
                maybe_done = status != 429
            wait = retry_wait(status, headers, attempt)
            if maybe_done and not replay:
                wait = None
            if wait is None or attempt > self.retries:
                raise IcefloeApiError(f"icefloe {method} {path} failed for {what}: {reason}",
                                      status)
            self.log.warning("icefloe %s %s (%s): %s; trying again in %.0f s", method, path,
                             what, reason, wait)
            time.sleep(wait)

    def _pages(self, path: str, key: str, what: str, **params: Any) -> Iterator[dict[str, Any]]:
        token = None
        while True:
            query = {**params, "page_size": 1000, **({"page_token": token} if token else {})}
            body = self.request("GET", path, params=query, what=what).json()
            yield from body[key]
            token = body.get("next_page_token")
            if not token:
                return

    def project_id(self, project: str) -> str:
        """A project's id from its name (or id)."""
        for p in self._pages("/projects", "projects", f"project {project!r}", search=project):
            if project in (p["name"], p["id"]):
                return str(p["id"])
        raise AirflowException(f"icefloe project {project!r} does not exist (or this key "
                               "cannot see it)")

    def job_id(self, project_id: str, job: str, project: str = "") -> str:
        """A job's id from its name (or id) in a project."""
        where = f"job {job!r} in project {project or project_id!r}"
        for j in self._pages(f"/projects/{project_id}/jobs", "jobs", where, search=job):
            if job in (j["name"], j["id"]):
                return str(j["id"])
        raise AirflowException(f"icefloe {where} does not exist")

    def start_run(self, project_id: str, job_id: str, *, arguments: str | None = None,
                  environment: dict[str, str] | None = None,
                  idempotency_key: str | None = None,
                  what: str = "") -> tuple[dict[str, Any], bool]:
        """Start a run; with an idempotency key, find the one an earlier try started.

        Returns:
            The run, and whether this call started it (False: an earlier request with the
            same key did).
        """
        body = {k: v for k, v in (("arguments", arguments), ("environment", environment))
                if v is not None}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        response = self.request("POST", f"/projects/{project_id}/jobs/{job_id}/runs",
                                json=body or None, headers=headers,
                                what=what or f"job {job_id}")
        return response.json(), response.status_code == 201

    def get_run(self, project_id: str, job_id: str, run_id: str) -> dict[str, Any]:
        """A run (its ``status`` is one of CML's ``ENGINE_*`` states)."""
        return self.request("GET", f"/projects/{project_id}/jobs/{job_id}/runs/{run_id}",
                            what=f"run {run_id}").json()

    def stop_run(self, project_id: str, job_id: str, run_id: str) -> dict[str, Any]:
        """Stop a run (a run that already ended is left as it is)."""
        return self.request("POST", f"/projects/{project_id}/jobs/{job_id}/runs/{run_id}:stop",
                            what=f"run {run_id}").json()

    def run_logs(self, project_id: str, job_id: str, run_id: str,
                 offset: int = 0) -> dict[str, Any]:
        """A chunk of a run's log from ``offset`` (``content``, ``next_offset``, ``size``)."""
        return self.request("GET", f"/projects/{project_id}/jobs/{job_id}/runs/{run_id}/logs",
                            params={"offset": offset}, what=f"run {run_id}").json()

    def sql(self, sql: str, *, at: dict[str, int | str] | None = None,
            output_table: str | None = None, mode: str = "overwrite",
            max_rows: int = 100, timeout: float = 3600) -> dict[str, Any]:
        """Run SQL on the lakehouse (see ``POST /api/v2/sql``). Never sent twice once the
        server may have run it (an append must not land twice); ``timeout`` seconds."""
        return self.request("POST", "/sql", json={
            "sql": sql, "at": at, "output_table": output_table, "mode": mode,
            "max_rows": max_rows}, what=f"SQL{' into ' + output_table if output_table else ''}",
            replay=False, timeout=timeout).json()

    def test_connection(self) -> tuple[bool, str]:
        """Airflow's connection test: the key is accepted by the server."""
        try:
            self.request("GET", "/projects", params={"page_size": 1}, what="the connection")
        except AirflowException as exc:
            return False, str(exc)
        return True, f"icefloe at {self.base_url} accepts this API key"

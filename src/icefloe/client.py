"""Python SDK for the control plane: ``Client(url, api_key)`` with a method per route.

``ICEFLOE_URL`` and ``ICEFLOE_API_KEY`` are used when the arguments are omitted. Errors come
back as the same :mod:`icefloe.errors` types the server raised (by HTTP status).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx

from icefloe.errors import (
    AuthError,
    BusyError,
    ConflictError,
    ForbiddenError,
    IcefloeError,
    InvalidInputError,
    NotFoundError,
    RemoteError,
    UnavailableError,
)

DEFAULT_URL = "http://127.0.0.1:8080"
TERMINAL = frozenset({"ENGINE_SUCCEEDED", "ENGINE_FAILED", "ENGINE_STOPPED", "ENGINE_TIMEDOUT"})
_BY_STATUS: dict[int, type[IcefloeError]] = {
    401: AuthError, 403: ForbiddenError, 404: NotFoundError, 409: ConflictError,
    422: InvalidInputError, 400: InvalidInputError, 413: InvalidInputError,
    429: BusyError, 503: UnavailableError,
}


def chain_failures(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs of a chain that did not succeed and were not retried."""
    retried = {r["triggered_by"].removeprefix("run/") for r in runs if r["trigger"] == "retry"}
    return [r for r in runs if r["status"] != "ENGINE_SUCCEEDED" and r["id"] not in retried]


class Client:
    """A client of one icefloe control plane.

    Args:
        url: Base URL (``http://host:port``); default ``$ICEFLOE_URL`` or 127.0.0.1:8080.
        api_key: API key; default ``$ICEFLOE_API_KEY``.
        timeout: Seconds per request.
    """

    def __init__(self, url: str | None = None, api_key: str | None = None,
                 timeout: float = 30.0) -> None:
        self.url = (url or os.environ.get("ICEFLOE_URL") or DEFAULT_URL).rstrip("/")
        key = api_key or os.environ.get("ICEFLOE_API_KEY") or ""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=f"{self.url}/api/v2", headers=headers,
                                  timeout=timeout)
        self.timeout = timeout

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, *, as_text: bool = False, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise RemoteError(f"the control plane at {self.url} did not answer {method} {path} "
                              f"within {self.timeout:g} s; it may still complete it") from exc
        except httpx.TransportError as exc:
            raise RemoteError(f"cannot reach the control plane at {self.url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200] or response.reason_phrase
            raise _BY_STATUS.get(response.status_code, RemoteError)(message)
        if as_text:
            return response.text
        return response.json() if response.content else None

    def _pages(self, path: str, key: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        token = ""
        while True:
            body = self._call("GET", path, params={**params, "page_token": token or None})
            yield from body[key]
            token = body.get("next_page_token", "")
            if not token:
                return

    def report_happening(self, happening: dict[str, Any]) -> None:
        """Tell the control plane what this job run did (see :mod:`icefloe.happenings`); the
        server records it as this key's."""
        self._call("POST", "/happenings", json=happening)

    def lineage(self, node: str, direction: str = "both",
                depth: int | None = None) -> dict[str, Any]:
        """The lineage graph around a node (``kind:id``, e.g. ``prediction:<uuid>``):
        ``{"root", "nodes", "edges"}``; ``direction`` is ``upstream``, ``downstream`` or
        ``both``, ``depth`` the most edges away."""
        params: dict[str, Any] = {"direction": direction}
        if depth is not None:
            params["depth"] = depth
        return self._call("GET", f"/lineage/{quote(node, safe=':@/')}", params=params)

    # -- projects and jobs ---------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The public health check."""
        return self._call("GET", "/health")

    def list_projects(self, search: str | None = None) -> list[dict[str, Any]]:
        """All projects (every page)."""
        return list(self._pages("/projects", "projects", {"search": search}))

    def create_project(self, name: str, path: str | None = None,
                       description: str = "") -> dict[str, Any]:
        """Create a project (its folder defaults to one in the server's home)."""
        return self._call("POST", "/projects",
                          json={"name": name, "path": path, "description": description})

    def get_project(self, project_id: str) -> dict[str, Any]:
        """One project."""
        return self._call("GET", f"/projects/{project_id}")

    def delete_project(self, project_id: str) -> None:
        """Delete a project with its jobs and runs (its folder stays on disk)."""
        self._call("DELETE", f"/projects/{project_id}")

    def project(self, name_or_id: str) -> dict[str, Any]:
        """A project by exact name, or by id."""
        for project in self.list_projects(search=name_or_id):
            if project["name"] == name_or_id:
                return project
        return self.get_project(name_or_id)

    def list_jobs(self, project_id: str, search: str | None = None) -> list[dict[str, Any]]:
        """All jobs of a project."""
        return list(self._pages(f"/projects/{project_id}/jobs", "jobs", {"search": search}))

    def create_job(self, project_id: str, name: str, script: str,
                   **fields: Any) -> dict[str, Any]:
        """Create a job (fields: arguments, environment, secret_environment, timeout, retries,
        parent_job_id, schedule, kernel, cpu, memory).

        ``secret_environment`` values are stored encrypted; the API answers with their names
        only (``{"NAME": "***"}``).
        """
        return self._call("POST", f"/projects/{project_id}/jobs",
                          json={"name": name, "script": script, **fields})

    def get_job(self, project_id: str, job_id: str) -> dict[str, Any]:
        """One job."""
        return self._call("GET", f"/projects/{project_id}/jobs/{job_id}")

    def job(self, project_id: str, name_or_id: str) -> dict[str, Any]:
        """A job by exact name, or by id."""
        for job in self.list_jobs(project_id, search=name_or_id):
            if job["name"] == name_or_id:
                return job
        return self.get_job(project_id, name_or_id)

    def update_job(self, project_id: str, job_id: str, **fields: Any) -> dict[str, Any]:
        """Change some fields of a job."""
        return self._call("PATCH", f"/projects/{project_id}/jobs/{job_id}",
                          json=fields)

    def delete_job(self, project_id: str, job_id: str) -> None:
        """Delete a job."""
        self._call("DELETE", f"/projects/{project_id}/jobs/{job_id}")

    # -- runs ----------------------------------------------------------------------------

    def create_run(self, project_id: str, job_id: str, *, arguments: str | None = None,
                   environment: dict[str, str] | None = None,
                   idempotency_key: str | None = None) -> dict[str, Any]:
        """Start a run (with its own arguments or extra variables if given). With an
        ``idempotency_key``, a repeated call answers the run the first one started."""
        body = {k: v for k, v in (("arguments", arguments), ("environment", environment))
                if v is not None}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call("POST", f"/projects/{project_id}/jobs/{job_id}/runs",
                          json=body or None, headers=headers)

    def list_runs(self, project_id: str, job_id: str) -> list[dict[str, Any]]:
        """Runs of a job, newest first."""
        return list(self._pages(f"/projects/{project_id}/jobs/{job_id}/runs", "job_runs", {}))

    def get_run(self, project_id: str, job_id: str, run_id: str) -> dict[str, Any]:
        """One run."""
        return self._call(
            "GET", f"/projects/{project_id}/jobs/{job_id}/runs/{run_id}")

    def stop_run(self, project_id: str, job_id: str, run_id: str) -> dict[str, Any]:
        """Stop a run (its process group is killed)."""
        return self._call(
            "POST", f"/projects/{project_id}/jobs/{job_id}/runs/{run_id}:stop")

    def run_logs(self, project_id: str, job_id: str, run_id: str,
                 offset: int = 0) -> dict[str, Any]:
        """A chunk of a run's log from ``offset``; ``next_offset`` continues it."""
        return self._call(
            "GET", f"/projects/{project_id}/jobs/{job_id}/runs/{run_id}/logs",
            params={"offset": offset})

    def wait_run(self, project_id: str, job_id: str, run_id: str, *, poll: float = 1.0,
                 timeout: float | None = None,
                 on_status: Callable[[dict[str, Any]], None] | None = None
                 ) -> dict[str, Any]:
        """Poll a run until it ends; returns its final state.

        Args:
            on_status: Called with the run each time its status is new (the final one too).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = ""
        while True:
            run = self.get_run(project_id, job_id, run_id)
            if on_status is not None and run["status"] != seen:
                seen = run["status"]
                on_status(run)
            if run["status"] in TERMINAL:
                return run
            if deadline is not None and time.monotonic() > deadline:
                raise RemoteError(f"run {run_id} still {run['status']} after {timeout} s")
            time.sleep(poll)

    def wait_chain(self, project_id: str, job_id: str, run_id: str, *, poll: float = 1.0,
                   on_end: Callable[[dict[str, Any]], None] | None = None,
                   on_status: Callable[[dict[str, Any]], None] | None = None
                   ) -> list[dict[str, Any]]:
        """Wait for a run and for every run it starts: its children when it succeeds, its
        retry when it fails, and theirs in turn.

        Args:
            on_end: Called with each run as it ends, in the order they end.
            on_status: Called with a run whenever its status changes while it is followed
                (before ``on_end`` for its final one).

        Returns:
            Every run of the chain, ended; a run that failed and was retried is followed
            by its retry. :func:`chain_failures` says which failures count.
        """
        ended: list[dict[str, Any]] = []
        pending = [(job_id, run_id)]
        jobs: list[dict[str, Any]] | None = None
        while pending:
            jid, rid = pending.pop(0)
            run = self.wait_run(project_id, jid, rid, poll=poll, on_status=on_status)
            ended.append(run)
            if on_end is not None:
                on_end(run)
            jobs = jobs if jobs is not None else self.list_jobs(project_id)
            followers = [j["id"] for j in jobs if j["parent_job_id"] == jid] + [jid]
            for follower in followers:
                for started in self.list_runs(project_id, follower):
                    if started["parent_run_id"] == rid or (
                            started["trigger"] == "retry"
                            and started["triggered_by"] == f"run/{rid}"):
                        pending.append((follower, started["id"]))
        return ended

    # -- keys and audit ------------------------------------------------------------------

    def create_user(self, name: str, *, admin: bool = False) -> dict[str, Any]:
        """Make a user (admin only); give them keys with :meth:`create_key`."""
        return self._call("POST", "/users", json={"name": name, "admin": admin})

    def list_users(self) -> list[dict[str, Any]]:
        """Users with their projects and roles (admin only)."""
        return self._call("GET", "/users")["users"]

    def me(self) -> dict[str, Any]:
        """Who this key acts as: user, admin or not, projects and roles."""
        return self._call("GET", "/users/me")

    def list_members(self, project_id: str) -> list[dict[str, Any]]:
        """A project's members and their roles."""
        return self._call("GET", f"/projects/{project_id}/members")["members"]

    def set_member(self, project_id: str, user: str, role: str) -> dict[str, Any]:
        """Give a user a role (owner, editor, viewer) in a project (its owners, admins)."""
        return self._call("PUT", f"/projects/{project_id}/members/{quote(user, safe='')}",
                          json={"role": role})

    def remove_member(self, project_id: str, user: str) -> None:
        """Take a user out of a project (its owners, admins)."""
        self._call("DELETE", f"/projects/{project_id}/members/{quote(user, safe='')}")

    def list_grants(self, project_id: str) -> list[dict[str, Any]]:
        """The namespaces a project may read or write."""
        return self._call("GET", f"/projects/{project_id}/grants")["grants"]

    def grant(self, project_id: str, namespace: str, access: str = "read") -> dict[str, Any]:
        """Let a project read or write a namespace's tables (admin only; ``*``: all)."""
        return self._call("PUT", f"/projects/{project_id}/grants/{quote(namespace, safe='')}",
                          json={"access": access})

    def revoke_grant(self, project_id: str, namespace: str) -> None:
        """Take a project's grant on a namespace away (admin only)."""
        self._call("DELETE", f"/projects/{project_id}/grants/{quote(namespace, safe='')}")

    def create_key(self, user: str, role: str = "viewer") -> dict[str, Any]:
        """Create an API key (admin only); the secret is in ``api_key``, shown once."""
        return self._call("POST", "/keys", json={"user": user, "role": role})

    def list_keys(self) -> list[dict[str, Any]]:
        """API keys without secrets (admin only)."""
        return self._call("GET", "/keys")["keys"]

    def revoke_key(self, key_id: str) -> None:
        """Revoke a key (admin only)."""
        self._call("DELETE", f"/keys/{key_id}")

    def audit(self) -> list[dict[str, Any]]:
        """Audit events, newest first (admin only)."""
        return list(self._pages("/audit", "events", {}))

    # -- models: builds, deployments, predictions, metrics (CML names) ---------------------

    def list_models(self) -> list[dict[str, Any]]:
        """Registered models with their latest version and aliases."""
        return self._call("GET", "/models")["models"]

    def model_versions(self, name: str) -> list[dict[str, Any]]:
        """All versions of a registered model, oldest first (lineage fields included)."""
        return self._call("GET", f"/models/{name}/versions")["versions"]

    # -- model catalog -------------------------------------------------------------------

    def catalog_models(self) -> list[dict[str, Any]]:
        """Every model of the catalog (every page): card, latest version, where it is
        deployed with its health, the number of firing alerts."""
        return list(self._pages("/catalog/models", "models", {}))

    def catalog_model(self, name: str) -> dict[str, Any]:
        """One model's catalog entry: card, versions with their lineage and deployments,
        alerts."""
        return self._call("GET", f"/catalog/models/{name}")

    def update_model_card(self, name: str, **fields: Any) -> dict[str, Any]:
        """Change a model's card (description, tags, use_case, risk_level, owner, extra);
        ``extra`` is merged into the card's (a key set to None is removed)."""
        return self._call("PATCH", f"/catalog/models/{name}", json=fields)

    def catalog_search(self, q: str, kind: str | None = None,
                       limit: int = 50) -> list[dict[str, Any]]:
        """Models, tables and columns matching ``q``, best first (``kind``: only model,
        table or column hits); a column hit lists the models that use it."""
        params: dict[str, Any] = {"q": q, "limit": limit}
        if kind:
            params["kind"] = kind
        return list(self._call("GET", "/catalog/search", params=params)["results"])

    def build_model(self, model: str) -> dict[str, Any]:
        """Build ``NAME/VERSION`` or ``NAME@ALIAS``; the result says BUILD_READY or why not."""
        return self._call("POST", "/models/builds", json={"model": model})

    def deploy(self, build_id: str, *, auth_enabled: bool = True,
               replicas: int = 1) -> dict[str, Any]:
        """Deploy a READY build; the answer holds ``access_key`` and ``endpoint``."""
        return self._call("POST", "/models/deployments", json={
            "build_id": build_id, "auth_enabled": auth_enabled, "replicas": replicas})

    def get_build(self, build_id: str) -> dict[str, Any]:
        """One build (status, reason, checksum, input schema)."""
        return self._call("GET", f"/models/builds/{build_id}")

    def redeploy(self, deployment_id: str, build_id: str, *,
                 accept_new_fields: bool = False) -> dict[str, Any]:
        """Move a deployment to another READY build of its model with no dropped request.

        Args:
            deployment_id: The deployment to move.
            build_id: A READY build of the deployment's model.
            accept_new_fields: Move even if the build requires input fields the serving
                build does not take (callers must send them from then on). New string
                fields need no acceptance: calls without them score them as unknown.

        Raises:
            ConflictError: The build requires new input fields (named in the message) and
                ``accept_new_fields`` is off; the old build still serves.
            UnavailableError: The new build never became ready; the old one still serves.
        """
        return self._call("POST", f"/models/deployments/{deployment_id}:redeploy",
                          json={"build_id": build_id, "accept_new_fields": accept_new_fields})

    def get_deployment(self, deployment_id: str) -> dict[str, Any]:
        """One deployment, with the status of its replicas."""
        return self._call("GET", f"/models/deployments/{deployment_id}")

    def list_deployments(self) -> list[dict[str, Any]]:
        """Deployments, newest first."""
        return self._call("GET", "/models/deployments")["deployments"]

    def stop_deployment(self, deployment_id: str) -> dict[str, Any]:
        """Stop serving a deployment."""
        return self._call("POST", f"/models/deployments/{deployment_id}:stop")

    def call_model(self, access_key: str, ipt: dict[str, Any],
                   api_key: str | None = None) -> dict[str, Any]:
        """Score one record (CML ``call_model``): ``{"success": ..., "response": {...}}``."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        # /model lives at the server root, outside /api/v2: an absolute URL overrides the base.
        return self._call("POST", f"{self.url}/model", headers=headers,
                          json={"accessKey": access_key, "request": ipt})

    def track_delayed_metrics(self, metrics: dict[str, Any],
                              prediction_uuid: str) -> dict[str, Any]:
        """Attach ground truth to a prediction (CML ``track_delayed_metrics``)."""
        return self._call("POST", "/metrics/delayed",
                          json={"prediction_uuid": prediction_uuid, "metrics": metrics})

    def track_aggregate_metrics(self, metrics: dict[str, Any], start_timestamp_ms: int,
                                end_timestamp_ms: int,
                                model_deployment_crn: str) -> dict[str, Any]:
        """Store metrics about a window of predictions (CML ``track_aggregate_metrics``)."""
        return self._call("POST", "/metrics/aggregate", json={
            "metrics": metrics, "start_timestamp_ms": start_timestamp_ms,
            "end_timestamp_ms": end_timestamp_ms, "model_deployment_crn": model_deployment_crn})

    def monitoring(self, deployment_id: str, window: str = "1h",
                   min_samples: int = 100) -> dict[str, Any]:
        """A deployment's figures over a window (``30m``, ``1h``, ``7d`` or ``500``)."""
        return self._call("GET", f"/models/deployments/{deployment_id}/monitoring",
                          params={"window": window, "min_samples": min_samples})

    def report(self, deployment_id: str, window: str = "7d", min_samples: int = 100) -> str:
        """The self-contained HTML monitoring report of a deployment's window."""
        return str(self._call("GET", f"/models/deployments/{deployment_id}/report",
                              params={"window": window, "min_samples": min_samples},
                              as_text=True))

    def sql(self, query: str, *, at: dict[str, int | str] | None = None,
            output_table: str | None = None, mode: str = "overwrite",
            max_rows: int = 100) -> dict[str, Any]:
        """Run SQL on the lakehouse (SELECT only), pinned to snapshots with ``at``; the whole
        result goes to ``output_table`` if given, ``max_rows`` rows come back."""
        return self._call("POST", "/sql", json={"sql": query, "at": at,
                                                "output_table": output_table, "mode": mode,
                                                "max_rows": max_rows})

    # -- tables ----------------------------------------------------------------------------

    def tables(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Tables the caller's projects are granted (every page), each with ``name``,
        ``namespace``, ``current_snapshot_id``, ``rows``, ``snapshots``, ``last_updated``.

        Args:
            namespace: Only this namespace's tables.
        """
        return list(self._pages("/tables", "tables", {"namespace": namespace}))

    def table(self, name: str) -> dict[str, Any]:
        """A table (``namespace.table``): its current snapshot, current schema fields, tags
        and snapshot count."""
        return self._call("GET", f"/tables/{quote(name, safe='')}")

    def table_snapshots(self, name: str) -> list[dict[str, Any]]:
        """A table's whole history, newest first, each snapshot with ``current`` and who
        wrote it (``user``, ``run_id``)."""
        return list(self._pages(f"/tables/{quote(name, safe='')}/snapshots", "snapshots", {}))

    def table_schema(self, name: str, snapshot: str | int | None = None,
                     compare: str | int | None = None) -> dict[str, Any]:
        """The schema a snapshot was written with (``fields``).

        Args:
            name: ``namespace.table``.
            snapshot: A snapshot id, unique id prefix or tag; default the current snapshot.
            compare: Another snapshot: the answer's ``diff`` says which fields were added,
                removed or changed from ``snapshot`` to it.
        """
        params = {"snapshot": snapshot, "compare": compare}
        return self._call("GET", f"/tables/{quote(name, safe='')}/schema",
                          params={k: v for k, v in params.items() if v is not None})

    def rollback_table(self, name: str, to: str | int, *, keep_schema: bool = False,
                       dry_run: bool = False) -> dict[str, Any]:
        """Make snapshot ``to`` (an id, unique id prefix or tag) current again, with the schema
        it was written with unless ``keep_schema``; history is kept. Needs a ``write`` grant.

        Args:
            name: ``namespace.table``.
            to: The snapshot to make current.
            keep_schema: Move only the snapshot, keeping the current schema.
            dry_run: Only answer what would change (``kind``, ``from``, ``to``, rows and
                columns before and after); nothing changes.
        """
        return self._call("POST", f"/tables/{quote(name, safe='')}:rollback",
                          json={"to": to, "keep_schema": keep_schema, "dry_run": dry_run})

    def export_predictions(self) -> dict[str, Any]:
        """Bring ``monitoring.predictions`` up to date with the prediction log."""
        return self._call("POST", "/monitoring/predictions:export")

    def create_rule(self, deployment_id: str, *, metric: str, comparison: str,
                    threshold: float, target: str, secret: str, feature: str = "",
                    window: str = "1h", min_samples: int = 100, cooldown_s: int = 0,
                    channel: str = "webhook") -> dict[str, Any]:
        """An alert rule on one figure; ``target`` is the webhook URL, ``secret`` signs it."""
        return self._call("POST", f"/models/deployments/{deployment_id}/rules", json={
            "metric": metric, "comparison": comparison, "threshold": threshold,
            "feature": feature, "window": window, "min_samples": min_samples,
            "cooldown_s": cooldown_s, "channel": channel, "target": target,
            "secret": secret})

    def rules(self, deployment_id: str) -> list[dict[str, Any]]:
        """A deployment's alert rules with their state."""
        return list(self._call("GET", f"/models/deployments/{deployment_id}/rules")["rules"])

    def evaluate_rules(self, deployment_id: str) -> list[dict[str, Any]]:
        """Evaluate a deployment's rules now; returns the state changes (each notified)."""
        return list(self._call("POST",
                               f"/models/deployments/{deployment_id}/rules:evaluate")["changes"])

    def rule_events(self, rule_id: str) -> list[dict[str, Any]]:
        """A rule's state changes and their deliveries."""
        return list(self._call("GET", f"/rules/{rule_id}/events")["events"])

    def delete_rule(self, rule_id: str) -> None:
        """Delete a rule and its history."""
        self._call("DELETE", f"/rules/{rule_id}")

    def read_metrics(self, model_deployment_crn: str, start_timestamp_ms: int = 0,
                     end_timestamp_ms: int | None = None) -> dict[str, Any]:
        """Predictions of a deployment in a window, joined to their delayed metrics."""
        params = {"model_deployment_crn": model_deployment_crn,
                  "start_timestamp_ms": start_timestamp_ms,
                  "end_timestamp_ms": end_timestamp_ms or int(time.time() * 1000) + 1}
        return self._call("GET", "/metrics", params=params)

    # -- access tracking -------------------------------------------------------------------

    def table_access(self, table: str, since: str | None = None,
                     until: str | None = None) -> dict[str, Any]:
        """Who may read or write a table now and who read it over a period.

        Args:
            table: ``namespace.table``.
            since: ISO 8601 time or a span before now (``7d``); default 30 days ago.
            until: ISO 8601 time, a span before now or ``now`` (the default).
        """
        return self._call("GET", f"/access/tables/{table}",
                          params={"since": since, "until": until})

    def deployment_access(self, deployment_id: str, since: str | None = None,
                          until: str | None = None) -> dict[str, Any]:
        """Who may call or change a deployment now and who called it over a period."""
        return self._call("GET", f"/access/deployments/{deployment_id}",
                          params={"since": since, "until": until})

    def model_access(self, name: str, since: str | None = None,
                     until: str | None = None) -> dict[str, Any]:
        """The same over every deployment of a registered model."""
        return self._call("GET", f"/access/models/{name}",
                          params={"since": since, "until": until})

"""A trigger that waits for an icefloe run to end, so a deferred task holds no worker slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from airflow.triggers.base import BaseTrigger, TriggerEvent

from icefloe_provider.compat import BaseHook
from icefloe_provider.hooks.icefloe import (
    API,
    IcefloeApiError,
    connection_settings,
    error_message,
    retry_wait,
)

ENDED = frozenset({"ENGINE_SUCCEEDED", "ENGINE_FAILED", "ENGINE_STOPPED", "ENGINE_TIMEDOUT"})


async def _connection(conn_id: str) -> Any:
    getter = getattr(BaseHook, "aget_connection", None)
    if getter is not None:  # Airflow 3
        return await getter(conn_id)
    from asgiref.sync import sync_to_async

    return await sync_to_async(BaseHook.get_connection)(conn_id)


class IcefloeRunTrigger(BaseTrigger):
    """Poll a run until it ends (or ``timeout`` seconds pass).

    Fires one event: ``{"status": "ended", "run": {...}}``, ``{"status": "timeout"}`` or
    ``{"status": "error", "message": ...}``.
    """

    def __init__(self, icefloe_conn_id: str, project_id: str, job_id: str, run_id: str,
                 poll_interval: float = 10.0, deadline: float | None = None,
                 retries: int = 5) -> None:
        super().__init__()
        self.icefloe_conn_id = icefloe_conn_id
        self.project_id = project_id
        self.job_id = job_id
        self.run_id = run_id
        self.poll_interval = poll_interval
        self.deadline = deadline  # epoch seconds
        self.retries = retries

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and arguments (no secret: the key is read from the connection)."""
        return ("icefloe_provider.triggers.runs.IcefloeRunTrigger", {
            "icefloe_conn_id": self.icefloe_conn_id, "project_id": self.project_id,
            "job_id": self.job_id, "run_id": self.run_id,
            "poll_interval": self.poll_interval, "deadline": self.deadline,
            "retries": self.retries})

    async def _get(self, client: httpx.AsyncClient, path: str) -> dict[str, Any]:
        attempt = 0
        while True:
            attempt += 1
            status, headers, reason = None, None, ""
            try:
                response = await client.get(path)
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 400:
                    return dict(response.json())
                status, headers = response.status_code, response.headers
                reason = f"HTTP {status}: {error_message(response)}"
            wait = retry_wait(status, headers, attempt)
            if wait is None or attempt > self.retries:
                raise IcefloeApiError(f"icefloe GET {path} failed for run {self.run_id}: "
                                      f"{reason}", status)
            await asyncio.sleep(wait)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the run ends."""
        try:
            base, key = connection_settings(await _connection(self.icefloe_conn_id))
            path = f"/projects/{self.project_id}/jobs/{self.job_id}/runs/{self.run_id}"
            async with httpx.AsyncClient(base_url=base + API, timeout=30,
                                         headers={"Authorization": f"Bearer {key}"}) as client:
                while True:
                    run = await self._get(client, path)
                    if run["status"] in ENDED:
                        yield TriggerEvent({"status": "ended", "run": run})
                        return
                    if self.deadline is not None and time.time() >= self.deadline:
                        yield TriggerEvent({"status": "timeout", "run": run})
                        return
                    await asyncio.sleep(self.poll_interval)
        except Exception as exc:  # the task reports it; a trigger must not die silently
            yield TriggerEvent({"status": "error", "message": str(exc),
                                "ids": [self.project_id, self.job_id, self.run_id]})

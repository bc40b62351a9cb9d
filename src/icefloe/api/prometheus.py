"""Request metrics as plain ASGI middleware, exposed in the Prometheus text format.

Every request is counted by route template (never the raw path, so ids do not explode the
label set), deployment (for model calls) and status, with a latency histogram. Increments
happen on the event loop, so no lock is needed.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable
from typing import Any

from icefloe.auth.middleware import ASGIApp, Scope

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
           10.0)
Labels = tuple[str, str]  # route, deployment


class RequestMetrics:
    """Counters and histograms of answered requests."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.buckets: dict[Labels, list[int]] = {}
        self.sums: dict[Labels, float] = {}
        self.gauges: list[Callable[[], Iterable[str]]] = []

    def observe(self, route: str, deployment: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        key = (route, deployment, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        labels = (route, deployment)
        counts = self.buckets.get(labels)
        if counts is None:
            counts = self.buckets[labels] = [0] * (len(BUCKETS) + 1)
            self.sums[labels] = 0.0
        counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.sums[labels] += seconds

    def render(self) -> str:
        """The Prometheus text exposition (format 0.0.4)."""
        lines = ["# HELP icefloe_http_requests_total HTTP requests answered.",
                 "# TYPE icefloe_http_requests_total counter"]
        errors: dict[tuple[str, str], int] = {}
        for (route, dep, status), n in sorted(self.requests.items()):
            lines.append(f'icefloe_http_requests_total{{route="{route}",deployment="{dep}",'
                         f'status="{status}"}} {n}')
            if status >= 400:
                errors[(route, dep)] = errors.get((route, dep), 0) + n
        lines += ["# HELP icefloe_http_errors_total HTTP requests answered with 4xx or 5xx.",
                  "# TYPE icefloe_http_errors_total counter"]
        lines += [f'icefloe_http_errors_total{{route="{r}",deployment="{d}"}} {n}'
                  for (r, d), n in sorted(errors.items())]
        lines += ["# HELP icefloe_http_request_duration_seconds Time to answer a request.",
                  "# TYPE icefloe_http_request_duration_seconds histogram"]
        for (route, dep), counts in sorted(self.buckets.items()):
            base = f'route="{route}",deployment="{dep}"'
            running = 0
            for bound, n in zip((*BUCKETS, float("inf")), counts, strict=True):
                running += n
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(f'icefloe_http_request_duration_seconds_bucket{{{base},le="{le}"}} '
                             f"{running}")
            lines.append(f"icefloe_http_request_duration_seconds_sum{{{base}}} "
                         f"{self.sums[(route, dep)]:.6f}")
            lines.append(f"icefloe_http_request_duration_seconds_count{{{base}}} {running}")
        for gauge in self.gauges:
            lines.extend(gauge())
        return "\n".join(lines) + "\n"


class MetricsMiddleware:
    """Time every HTTP request and count it in :class:`RequestMetrics`."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or scope.get("icefloe.route") or "unmatched"
            self.metrics.observe(name, scope.get("icefloe.deployment", ""), status,
                                 time.perf_counter() - started)

"""Where OpenLineage events go: a file (one JSON event a line) or an HTTP receiver.

Neither ever raises into the code that emits, nor makes it wait on the network: the file
transport appends one line with one ``write`` (``O_APPEND``: lines of several processes
never interleave); the HTTP transport queues the event (bounded) for a background thread
that POSTs it to ``<url>/api/v1/lineage`` (as Marquez takes them) with a short timeout and a
few retries. An event that cannot be queued (full) or delivered (receiver down, refused) is
dropped, counted in :meth:`HttpTransport.stats` and logged, without the API key.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Protocol

import httpx

from icefloe.config import mask_password

log = logging.getLogger(__name__)

LINEAGE_PATH = "/api/v1/lineage"


class Transport(Protocol):
    """Sends events; never raises."""

    def emit(self, event: dict[str, Any]) -> None:
        """Send (or queue) one event."""

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event so far is sent or given up; False if it timed out."""

    def close(self, timeout: float = 5.0) -> None:
        """Flush, then release what the transport holds."""

    def stats(self) -> dict[str, int]:
        """Counts of events sent, failed and dropped, and still pending."""


def encode(event: dict[str, Any]) -> bytes:
    """One event as a line of strict JSON (no NaN)."""
    return json.dumps(event, separators=(",", ":"), allow_nan=False).encode() + b"\n"


class FileTransport:
    """Appends each event to a file as one line (created 0600: events name people)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._counts = {"sent": 0, "failed": 0, "dropped": 0, "pending": 0}

    def emit(self, event: dict[str, Any]) -> None:
        """Append the event; a failure is logged and counted, never raised."""
        try:
            line = encode(event)
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    written = os.write(fd, line)
                    while written < len(line):  # a short write: finish the line
                        written += os.write(fd, line[written:])
                finally:
                    os.close(fd)
                self._counts["sent"] += 1
        except (OSError, TypeError, ValueError) as exc:
            with self._lock:
                self._counts["failed"] += 1
            log.warning("openlineage: could not append an event to %s (%s)", self.path, exc)

    def flush(self, timeout: float = 5.0) -> bool:
        """Nothing is buffered: always True."""
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Nothing to release."""

    def stats(self) -> dict[str, int]:
        """Counts of events appended and failed."""
        with self._lock:
            return dict(self._counts)


def lineage_endpoint(url: str) -> str:
    """The receiver's lineage endpoint: ``<url>/api/v1/lineage`` unless the URL is it."""
    url = url.rstrip("/")
    return url if url.endswith(LINEAGE_PATH) else url + LINEAGE_PATH


_live: weakref.WeakSet[HttpTransport] = weakref.WeakSet()
_EXIT_FLUSH_SECONDS = 5.0


def flush_all(timeout: float = 5.0) -> bool:
    """Wait until every HTTP transport of this process has sent (or given up) what it was
    given so far; False if ``timeout`` ran out first."""
    deadline = time.monotonic() + timeout
    return all([t.flush(max(0.0, deadline - time.monotonic())) for t in list(_live)])


def close_all(timeout: float = _EXIT_FLUSH_SECONDS) -> None:
    """Flush and stop every HTTP transport of this process, within ``timeout`` in all."""
    deadline = time.monotonic() + timeout
    for transport in list(_live):
        transport.close(timeout=max(0.0, deadline - time.monotonic()))


# A command that emitted and ends gives its queued events a few seconds to go.
atexit.register(close_all)


class HttpTransport:
    """POSTs events from a background thread; the caller only queues them.

    Args:
        url: The receiver (``/api/v1/lineage`` is appended unless the URL ends with it).
        api_key: Sent as ``Authorization: Bearer <key>`` when set; never logged.
        timeout: Seconds one request may take.
        retries: Further tries after a failed one (connection error, 5xx, 429).
        backoff: Seconds before the first retry, doubled for each next one.
        max_queue: Events waiting at most; past that new ones are dropped.
    """

    def __init__(self, url: str, *, api_key: str = "", timeout: float = 5.0, retries: int = 3,
                 backoff: float = 0.5, max_queue: int = 1000) -> None:
        self.endpoint = lineage_endpoint(url)
        self._shown = mask_password(self.endpoint)
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout, self._retries, self._backoff = timeout, retries, backoff
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=max_queue)
        self._idle = threading.Condition()
        self._pending = 0  # queued + in flight
        self._stop = threading.Event()
        self._counts = {"sent": 0, "failed": 0, "dropped": 0}
        self._thread = threading.Thread(target=self._work, name="openlineage-http", daemon=True)
        self._thread.start()
        _live.add(self)

    def emit(self, event: dict[str, Any]) -> None:
        """Queue the event; when the queue is full or closed it is dropped and counted."""
        try:
            body = encode(event)
        except (TypeError, ValueError) as exc:
            self._count("failed")
            log.warning("openlineage: an event could not be encoded (%s)", exc)
            return
        with self._idle:
            if self._stop.is_set():
                self._counts["dropped"] += 1
                return
            try:
                self._queue.put_nowait(body)
            except queue.Full:
                self._counts["dropped"] += 1
                dropped = self._counts["dropped"]
                if dropped == 1 or dropped % 100 == 0:
                    log.warning("openlineage: the queue to %s is full; %d event(s) dropped",
                                self._shown, dropped)
                return
            self._pending += 1

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued event is sent or given up; False if it timed out."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Flush for up to ``timeout``, then stop; what is still queued is dropped (a
        request still on its way is left to the daemon thread)."""
        deadline = time.monotonic() + timeout
        self.flush(timeout)
        self._stop.set()
        with self._idle:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    self._counts["dropped"] += 1
                    self._pending -= 1
            self._idle.notify_all()
        self._queue.put(None)  # wakes the thread; the queue was just emptied
        self._thread.join(timeout=max(0.05, deadline - time.monotonic()))
        _live.discard(self)

    def stats(self) -> dict[str, int]:
        """Counts of events sent, failed (given up) and dropped, and still pending."""
        with self._idle:
            return {**self._counts, "pending": self._pending}

    def _count(self, what: str) -> None:
        with self._idle:
            self._counts[what] += 1

    def _work(self) -> None:
        with httpx.Client(timeout=self._timeout, headers=self._headers) as client:
            while True:
                body = self._queue.get()
                if body is None:
                    return
                outcome = self._deliver(client, body)
                with self._idle:
                    self._counts[outcome] += 1
                    self._pending -= 1
                    self._idle.notify_all()

    def _deliver(self, client: httpx.Client, body: bytes) -> str:
        """POST one event with retries: ``sent``, ``failed`` or ``dropped`` (closing)."""
        problem = ""
        for attempt in range(self._retries + 1):
            if attempt and self._stop.wait(self._backoff * 2 ** (attempt - 1)):
                return "dropped"
            try:
                response = client.post(self.endpoint, content=body)
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
                continue
            if response.status_code < 300:
                return "sent"
            problem = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code != 429:
                break  # refused: sending it again will not help
        log.warning("openlineage: an event could not be sent to %s (%s); %d failed so far",
                    self._shown, problem, self._counts["failed"] + 1)
        return "failed"

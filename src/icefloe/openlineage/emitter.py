"""The happenings subscriber that tells OpenLineage (switched on by the settings).

``openlineage_transport`` picks where events go: "" (the default) sends none, ``file``
appends them to ``openlineage_file`` (default ``<home>/logs/openlineage.jsonl``), ``http``
POSTs them to ``openlineage_url`` with ``openlineage_api_key`` as a Bearer key if set.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from icefloe.errors import ConfigError
from icefloe.happenings import Happening
from icefloe.openlineage.events import Naming, to_run_event
from icefloe.openlineage.transport import FileTransport, HttpTransport, Transport

if TYPE_CHECKING:
    from icefloe.config import Settings
    from icefloe.store.db import Database

log = logging.getLogger(__name__)

TRANSPORTS = ("file", "http")
_CACHE_LIMIT = 4096


class _Names:
    """Project and job names: of the job runs told so far, else from the platform DB."""

    def __init__(self, database: Database | None) -> None:
        self._db = database
        self._projects: dict[str, str] = {}
        self._runs: dict[str, str] = {}

    def _remember(self, cache: dict[str, str], key: str, value: str) -> str:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()  # ids are many and never change: starting over is enough
        cache[key] = value
        return value

    def told(self, run_id: str, job_name: str) -> None:
        """Remember the name of a job run just told (its writes and trainings follow)."""
        self._remember(self._runs, run_id, job_name)

    def project_name(self, project_id: str) -> str | None:
        if project_id in self._projects or self._db is None:
            return self._projects.get(project_id)
        from icefloe.store.orm import Project

        with self._db.session() as s:
            row = s.get(Project, project_id)
            return self._remember(self._projects, project_id, row.name) if row else None

    def job_of_run(self, run_id: str) -> str | None:
        if run_id in self._runs or self._db is None:
            return self._runs.get(run_id)
        from sqlalchemy import select

        from icefloe.store.orm import Job, Project, Run

        with self._db.session() as s:
            found = s.execute(
                select(Project.name, Job.name).join(Job, Job.project_id == Project.id)
                .join(Run, Run.job_id == Job.id).where(Run.id == run_id)).first()
        return self._remember(self._runs, run_id, f"{found[0]}.{found[1]}") if found else None


class Emitter:
    """Turns each happening into an OpenLineage RunEvent and hands it to a transport.

    Args:
        transport: Where events go.
        naming: Namespaces and name look-ups.
        names: Told the name of each job run, for the runs inside it that name only its id.
    """

    def __init__(self, transport: Transport, naming: Naming, names: _Names | None = None) -> None:
        self.transport = transport
        self.naming = naming
        self._names = names

    def __call__(self, happening: Happening) -> None:
        """Tell one happening (a kind OpenLineage is not told, e.g. a read, is skipped)."""
        event = to_run_event(happening, self.naming)
        if event is None:
            return
        if happening.kind == "job.run" and self._names is not None:
            self._names.told(happening.run_id, event["job"]["name"])
        self.transport.emit(event)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the events so far are sent; False if it timed out."""
        return self.transport.flush(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Flush, then stop the transport."""
        self.transport.close(timeout)


def make_transport(settings: Settings) -> Transport | None:
    """The transport the settings ask for (None: OpenLineage is off).

    Raises:
        ConfigError: An unknown ``openlineage_transport``, or ``http`` without a URL.
    """
    kind = settings.openlineage_transport.strip().lower()
    if not kind:
        return None
    if kind == "file":
        path = Path(settings.openlineage_file).expanduser() if settings.openlineage_file \
            else settings.home / "logs" / "openlineage.jsonl"
        return FileTransport(path)
    if kind == "http":
        if not settings.openlineage_url:
            raise ConfigError("setting 'openlineage_url' is needed when openlineage_transport "
                              "is 'http' (e.g. ICEFLOE_OPENLINEAGE_URL=http://127.0.0.1:5000)")
        return HttpTransport(settings.openlineage_url, api_key=settings.openlineage_api_key)
    raise ConfigError(f"setting 'openlineage_transport' must be one of '' (off), "
                      f"{', '.join(repr(t) for t in TRANSPORTS)}; got {kind!r}")


def subscriber(settings: Settings, database: Database | None) -> Emitter | None:
    """The OpenLineage subscriber of :mod:`icefloe.happenings` (None when switched off).

    Args:
        settings: ``openlineage_*`` settings, ``catalog_name`` (the tables' namespace).
        database: The platform DB, to name projects and job runs (None: ids are used).

    Raises:
        ConfigError: The OpenLineage settings are wrong.
    """
    transport = make_transport(settings)
    if transport is None:
        return None
    names = _Names(database)
    naming = Naming(namespace=settings.openlineage_namespace or "icefloe",
                    catalog=settings.catalog_name, project_name=names.project_name,
                    job_of_run=names.job_of_run)
    return Emitter(transport, naming, names)

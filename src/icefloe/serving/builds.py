"""Builds: a model version turned into an immutable, self-contained serving artifact.

A build folder holds ``model.onnx``, ``schema.json`` (field names, kinds, categories) and
``manifest.json`` (model, version, lineage, checksum). Before a build is READY it scores the
test rows recorded at training and must match Spark's probabilities within 1e-5; a build
that fails anything is BUILD_FAILED with the reason and leaves no artifact behind.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from icefloe.catalog.cards import ensure_card
from icefloe.config import Settings
from icefloe.errors import IcefloeError, ParityError
from icefloe.happenings import Happening, actor_named, emit, process_parent
from icefloe.ml.onnx import PARITY_LIMIT, OnnxScorer, parity
from icefloe.ml.spec import FeatureSet
from icefloe.monitoring.profile import PROFILE_FILE
from icefloe.registry.lineage import PARITY_SAMPLES_ARTIFACT, Lineage
from icefloe.registry.mlflow_registry import ModelRegistry
from icefloe.serving.schema import FieldSpec, InputSchema, example_request
from icefloe.serving.scorer import checksum
from icefloe.store import repo
from icefloe.store.db import Database
from icefloe.store.orm import Build, ModelCard
from icefloe.timefmt import iso_utc

BUILDING, READY, FAILED = "BUILDING", "BUILD_READY", "BUILD_FAILED"


def schema_from_onnx(model_bytes: bytes, lineage: Lineage) -> InputSchema:
    """Input schema of a compiled model: numbers and strings, with the training categories.

    String fields are optional (their declared default is the unknown category, as a null
    scores), so a deployment moved to a build with new string features keeps answering its
    callers; numbers have no default.
    """
    import onnx

    model = onnx.load_from_string(model_bytes)
    levels: dict[str, tuple[str, ...]] = {}
    for node in model.graph.node:
        if node.op_type == "LabelEncoder" and node.input:
            keys = next((a for a in node.attribute if a.name == "keys_strings"), None)
            if keys is not None:
                levels[node.input[0]] = tuple(k.decode() for k in keys.strings)
    fields = [FieldSpec(n, "number", nullable=lineage.nulls == "impute")
              for n in lineage.numeric_features]
    fields += [FieldSpec(n, "string", levels.get(n, ()), nullable=True, optional=True)
               for n in lineage.categorical_features]
    return InputSchema(tuple(fields))


def _self_test(registry: ModelRegistry, run_id: str, scorer: OnnxScorer,
               features: FeatureSet) -> float:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=PARITY_SAMPLES_ARTIFACT, dst_path=tmp)
        except Exception as exc:
            raise ParityError(
                "the model has no recorded test rows to self-test against; retrain it") from exc
        samples = json.loads(Path(path).read_text())
    rows = samples["rows"]
    columns = {c: [r.get(c) for r in rows] for c in features.all}
    return parity(samples["spark_probability"], scorer.probabilities(columns))


def create_build(db: Database, settings: Settings, ref: str, created_by: str = "",
                 project_id: str | None = None) -> Build:
    """Build a model version; returns the build row (READY or BUILD_FAILED, never half-made).

    ``project_id`` is the project the build (and deployments of it) belong to; when not
    given (a local build), the model's project, else the default project.
    """
    registry = ModelRegistry(settings)
    mv, onnx_bytes = registry.onnx_bytes(ref)
    lineage = registry.lineage(f"{mv.name}/{mv.version}")
    with db.session() as s:
        if project_id is None:  # the model's project, else the default one
            from icefloe.governance.membership import default_project

            card = s.get(ModelCard, mv.name)
            project_id = (card.project_id if card is not None and card.project_id
                          else default_project(s, settings).id)
        build = Build(id=repo.new_id(), model_name=mv.name, model_version=int(mv.version),
                      status=BUILDING, reason="", path="", checksum="", input_schema={},
                      created_by=created_by, created_at=repo.now(), project_id=project_id)
        s.add(build)
        build_id = build.id
        ensure_card(s, mv.name, project_id, created_by)  # the model's catalog card, first time
    root = settings.home.resolve() / "builds"
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{build_id}-", dir=root))
    try:
        schema = schema_from_onnx(onnx_bytes, lineage)
        features = FeatureSet(tuple(lineage.numeric_features),
                              tuple(lineage.categorical_features))
        scorer = OnnxScorer(onnx_bytes, features)
        diff = _self_test(registry, lineage.run_id, scorer, features)
        if not diff <= PARITY_LIMIT:
            raise ParityError(f"self-test: ONNX differs from the recorded Spark probabilities "
                              f"by {diff:.3g} (limit {PARITY_LIMIT:g})")
        (staging / "model.onnx").write_bytes(onnx_bytes)
        (staging / "schema.json").write_text(json.dumps(schema.to_dict(), indent=2))
        # The reference drift is measured against travels with the build (a version trained
        # before profiles has none until `icefloe model profile` makes it).
        profile = registry.reference_profile(f"{mv.name}/{mv.version}")
        if profile is not None:
            (staging / PROFILE_FILE).write_text(json.dumps(profile.to_dict()))
        digest = checksum(staging)
        (staging / "manifest.json").write_text(json.dumps(
            {"build": build_id, "model": mv.name, "version": int(mv.version),
             "checksum": digest, "parity": diff, "lineage": lineage.to_dict(),
             "profile": PROFILE_FILE if profile is not None else None}, indent=2))
        final = root / build_id
        staging.rename(final)  # the artifact appears whole or not at all
    except IcefloeError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        with db.session() as s:
            failed = repo.get_build(s, build_id)
            failed.status, failed.reason = FAILED, exc.message
            repo.audit(s, created_by or "system", "build.create", f"build/{build_id}", "failed",
                       exc.message)
        reason = exc.message
        emit(lambda: _happening("FAIL", failed, created_by, error=reason))
        return failed
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        with db.session() as s:
            row = s.get(Build, build_id)
            if row is not None:
                row.status, row.reason = FAILED, "the build crashed; see the server log"
        raise
    with db.session() as s:
        row = repo.get_build(s, build_id)
        row.status, row.path, row.checksum = READY, str(final), digest
        row.input_schema, row.parity = schema.to_dict(), diff
        repo.audit(s, created_by or "system", "build.create", f"build/{build_id}", "ok",
                   f"{mv.name}/{mv.version}")
    emit(lambda: _happening("COMPLETE", row, created_by))
    return row


def _happening(state: str, build: Build, created_by: str, error: str = "") -> Happening:
    """A build happening: the model version built, the build, its parity (or the error)."""
    subject = {"build_id": build.id, "model": build.model_name, "version": build.model_version,
               "status": build.status, "parity": build.parity, "project_id": build.project_id,
               "checksum": build.checksum, "format": "onnx", "parity_limit": PARITY_LIMIT}
    if error:
        subject["error"] = error
    return Happening("build", state, build.id, actor=actor_named(created_by),
                     subject=subject, parent=process_parent())


def get_build(db: Database, build_id: str) -> Build:
    """One build (NotFoundError if there is none)."""
    with db.session() as s:
        return repo.get_build(s, build_id)


def build_json(build: Build) -> dict[str, Any]:
    """A build as plain data, with an example of the request its schema accepts."""
    return {"id": build.id, "model": build.model_name, "model_version": build.model_version,
            "status": build.status, "reason": build.reason, "checksum": build.checksum,
            "parity": build.parity, "input_schema": build.input_schema,
            "example_request": example_request(build.input_schema),
            "created_at": iso_utc(build.created_at)}

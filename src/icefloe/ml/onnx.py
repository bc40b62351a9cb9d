"""Spark PipelineModel -> ONNX, scoring with onnxruntime, and the parity check.

onnxmltools converts every stage but the Imputer (its converter emits an opset-12 Split that
opset-13 runtimes reject), so an imputing pipeline is converted without it and the
imputation is put back as ``Where(IsNaN(x), median, x)`` nodes in front of the graph. A
StandardScaler column with zero variance (the never-seen "unknown" category) gets scale 0,
as Spark computes it, instead of 1/0, and unseen or null strings map to the StringIndexer's
"unknown" index as in Spark, not to -1. Tree split thresholds are widened by a few float32
ulps so that values exactly on a split go the way Spark sends them.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from icefloe.ml.pipelines import imputed_name, model_columns, to_model_columns
from icefloe.ml.spec import FeatureSet

if TYPE_CHECKING:
    import onnx
    from pyspark.ml import PipelineModel
    from pyspark.sql import SparkSession

MISSING_STRING = "\u0000missing"  # never a real category: scored as "unknown", like Spark


PARITY_LIMIT = 1e-5  # largest |ONNX - Spark| probability a compiled model may differ by

def _surrogates(model: PipelineModel) -> dict[str, float]:
    from pyspark.ml.feature import ImputerModel

    first = model.stages[0] if model.stages else None
    if not isinstance(first, ImputerModel):
        return {}
    row = first.surrogateDF.collect()[0].asDict()
    return {name: float(value) for name, value in row.items()}


def _widen_tree_thresholds(node: Any) -> None:
    """Move each ``x <= t`` threshold up by a few float32 ulps.

    Spark compares doubles; ONNX trees compare float32 inputs (after a float32 scaler), so
    a value that sits exactly on a split in Spark can land a hair above it in ONNX and take
    the other branch. Widening by ~3 ulps keeps those ties on Spark's side; real data is
    never that close to a split without being on it.
    """
    modes = next((list(a.strings) for a in node.attribute if a.name == "nodes_modes"), [])
    for attr in node.attribute:
        if attr.name == "nodes_values":
            values = np.asarray(attr.floats, dtype=np.float64)
            leq = np.array([m == b"BRANCH_LEQ" for m in modes], dtype=bool)
            bump = np.maximum(np.abs(values) * 2.5e-7, 1e-30)
            widened = np.where(leq, values + bump, values)
            del attr.floats[:]
            attr.floats.extend(widened.astype(np.float32).tolist())


def compile_onnx(
    model: PipelineModel, features: FeatureSet, spark: SparkSession
) -> onnx.ModelProto:
    """Convert a fitted pipeline to a self-contained ONNX model.

    Inputs are one ``[None, 1]`` tensor per feature column (float for numbers, string for
    categories), named after the columns exactly as the table has them (the pipeline was
    fitted on :func:`~icefloe.ml.pipelines.model_columns`; the graph takes the original
    names back); outputs are ``prediction`` and ``probability``.
    """
    import onnx
    from onnx import TensorProto, helper
    from onnxmltools import convert_sparkml
    from onnxmltools.convert.common.data_types import FloatTensorType, StringTensorType
    from pyspark.ml import PipelineModel as SparkPipelineModel

    surrogates = _surrogates(model)
    stages = model.stages[1:] if surrogates else model.stages
    inner = SparkPipelineModel(stages=stages)
    fitted = to_model_columns(features)
    inputs: list[tuple[str, Any]] = [
        (imputed_name(c) if surrogates else c, FloatTensorType([None, 1]))
        for c in fitted.numeric
    ]
    inputs += [(c, StringTensorType([None, 1])) for c in fitted.categorical]
    # The converter prints model internals and divides by a zero std (fixed below).
    with contextlib.redirect_stdout(io.StringIO()), np.errstate(divide="ignore"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        converted = convert_sparkml(inner, "icefloe", inputs, spark_session=spark)
    for node in converted.graph.node:
        if node.op_type == "LabelEncoder":
            # Spark's StringIndexer(handleInvalid='keep') puts unseen values and nulls at
            # index len(labels); the converter leaves ONNX's default of -1.
            keys = next(a for a in node.attribute if a.name == "keys_strings")
            node.attribute.append(helper.make_attribute("default_int64", len(keys.strings)))
        if node.op_type == "TreeEnsembleClassifier":
            _widen_tree_thresholds(node)
        if node.op_type == "Scaler":
            for attr in node.attribute:
                if attr.name == "scale":
                    fixed = [v if np.isfinite(v) else 0.0 for v in attr.floats]
                    del attr.floats[:]
                    attr.floats.extend(fixed)
    if surrogates:
        for opset in converted.opset_import:
            if opset.domain in ("", "ai.onnx") and opset.version < 9:
                opset.version = 9  # IsNaN and Where; the converter's ops mean the same at 9
        graph = converted.graph
        for inp in graph.input:
            if inp.name.startswith("__imputed_"):
                raw = inp.name.removeprefix("__imputed_")
                median = surrogates[raw]
                const = helper.make_tensor(f"__median_{raw}", TensorProto.FLOAT, [1], [median])
                graph.initializer.append(const)
                graph.node.insert(0, helper.make_node(
                    "Where", [f"__isnan_{raw}", f"__median_{raw}", raw], [inp.name]))
                graph.node.insert(0, helper.make_node("IsNaN", [raw], [f"__isnan_{raw}"]))
                inp.name = raw
    _rename_inputs(converted.graph, {v: k for k, v in model_columns(features).items()})
    converted.metadata_props.append(
        onnx.StringStringEntryProto(key="icefloe.features", value=json.dumps(
            {"numeric": list(features.numeric), "categorical": list(features.categorical)}))
    )
    return converted


def _rename_inputs(graph: Any, names: dict[str, str]) -> None:
    """Give the graph's inputs the names in ``names`` (old -> new), where nodes use them
    too; ONNX names are any text, so users' column names work as they are."""
    renamed = {old: new for old, new in names.items() if old != new}
    if not renamed:
        return
    taken = {out for node in graph.node for out in node.output}
    clash = sorted(set(renamed.values()) & taken)
    if clash:  # a column named like a tensor inside the converted graph
        from icefloe.errors import TrainingError

        raise TrainingError(f"feature column(s) {', '.join(map(repr, clash))} have the name "
                            "of a step inside the model; rename them")
    for inp in graph.input:
        inp.name = renamed.get(inp.name, inp.name)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]


def feed_from_columns(
    features: FeatureSet, columns: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Build onnxruntime inputs from column values (lists, arrays or pandas Series).

    Missing numbers become NaN (imputed, or scored as null); missing strings become a value
    no category has, which the model scores as "unknown".
    """
    feed: dict[str, np.ndarray] = {}
    for name in features.numeric:
        values = np.asarray(
            [np.nan if v is None else v for v in columns[name]], dtype=np.float64
        )
        feed[name] = values.astype(np.float32).reshape(-1, 1)
    for name in features.categorical:
        texts = [MISSING_STRING if v is None or v != v else str(v) for v in columns[name]]
        feed[name] = np.asarray(texts, dtype=object).reshape(-1, 1)
    return feed


class OnnxScorer:
    """An onnxruntime session over a compiled model; returns positive-class probabilities."""

    def __init__(self, model_bytes: bytes, features: FeatureSet) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(model_bytes, options,
                                            providers=["CPUExecutionProvider"])
        self.features = features

    def probabilities(self, columns: dict[str, Any]) -> np.ndarray:
        """Positive-class probability per row (NaN where a number was missing and not imputed)."""
        feed = feed_from_columns(self.features, columns)
        n = len(next(iter(feed.values()))) if feed else 0
        if n == 0:
            return np.zeros(0, dtype=np.float64)
        _, probability = self.session.run(["prediction", "probability"], feed)
        return np.asarray(probability, dtype=np.float64)[:, 1]


def parity(spark_probabilities: np.ndarray, onnx_probabilities: np.ndarray) -> float:
    """Max absolute difference of the positive-class probabilities (inf if any NaN differs)."""
    a = np.asarray(spark_probabilities, dtype=np.float64)
    b = np.asarray(onnx_probabilities, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    if np.any(np.isnan(a) != np.isnan(b)):
        return float("inf")
    mask = ~np.isnan(a)
    return float(np.max(np.abs(a[mask] - b[mask]))) if mask.any() else 0.0

"""Spark ML pipelines: ``baseline``, ``categorical`` and ``tree``, and data preparation.

``baseline``: VectorAssembler over numeric features -> StandardScaler -> LogisticRegression.
``categorical``: StringIndexer(keep) -> OneHotEncoder(keep, dropLast) per string column, then
the baseline stages. ``tree``: the same encoding and scaling -> RandomForestClassifier.
With the ``impute`` null policy an Imputer (median) comes first for numeric columns and null
strings fall into the "unknown" category of their StringIndexer.

Spark ML stages take column names as expressions (``x.y`` is a nested field to a
VectorAssembler) and the ONNX converter rewrites names it does not like, so the pipeline is
fitted on plain model names (:func:`model_columns`) and the compiled ONNX graph takes the
original names again (:mod:`icefloe.ml.onnx`): users only ever see their own column names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from icefloe.errors import TrainingError
from icefloe.ml.spec import FeatureSet, LabelSpec, TrainSpec

if TYPE_CHECKING:
    from pyspark.ml import Pipeline
    from pyspark.sql import Column, DataFrame

LABEL = "__icefloe_label"
SPLIT = "__icefloe_split"
FEATURES = "__icefloe_features"
PROBABILITY = "probability"


def imputed_name(column: str) -> str:
    """Name of the Imputer's output column for ``column``."""
    return f"__imputed_{column}"


def column(name: str) -> Column:
    """A Spark column by its exact name (dots, spaces and backticks are not syntax)."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


PLAIN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
STAGE_OUTPUTS = frozenset({PROBABILITY, "prediction", "rawPrediction"})  # the model's own


def model_columns(features: FeatureSet) -> dict[str, str]:
    """Each feature's column name inside the Spark pipeline: itself when it is a plain
    ASCII identifier, else ``__c<i>_`` and its ASCII letters and digits (``mean radius`` ->
    ``__c0_mean_radius``, ``größe`` -> ``__c3_gr_e``); unique, and never an internal name.
    """
    out: dict[str, str] = {}
    for i, name in enumerate(features.all):
        if PLAIN_NAME.fullmatch(name) and name not in STAGE_OUTPUTS:
            out[name] = name
        else:
            out[name] = f"__c{i}_" + re.sub(r"[^A-Za-z0-9]", "_", name, flags=re.ASCII)[:48]
    return out


def to_model_columns(features: FeatureSet) -> FeatureSet:
    """The feature set under its pipeline names (:func:`model_columns`)."""
    names = model_columns(features)
    return FeatureSet(tuple(names[c] for c in features.numeric),
                      tuple(names[c] for c in features.categorical))


def model_frame(df: DataFrame, features: FeatureSet) -> DataFrame:
    """The label and the features of ``df`` under their pipeline names, for fitting and
    transforming with the pipeline."""
    from pyspark.sql import functions as F

    names = model_columns(features)
    return df.select(F.col(LABEL), *[column(c).alias(names[c]) for c in features.all])


@dataclass(frozen=True)
class PreparedData:
    """Rows ready for fitting, and what preparation found in them (counted in one pass).

    Attributes:
        frame: The rows with a label (and, with ``drop``, every number), before the split.
        source: The cached frame ``frame`` is filtered from; unpersist it when done.
        rows_read: Rows of the snapshot.
        null_label_rows: Rows dropped for a null label.
        null_feature_rows: Rows dropped for a null (or NaN) number (``drop`` policy).
        null_category_rows: Kept rows with a null category.
        train_rows, test_rows: Rows on each side of the split.
        train_labels: The label values (0.0, 1.0) present in the training rows.
        value_counts: Non-null values of each feature column in ``frame``.
    """

    frame: DataFrame
    rows_read: int
    null_label_rows: int
    null_feature_rows: int
    null_category_rows: int = 0
    train_rows: int = 0
    test_rows: int = 0
    train_labels: tuple[float, ...] = ()
    value_counts: dict[str, int] = field(default_factory=dict)
    source: DataFrame | None = None

    @property
    def rows_used(self) -> int:
        """Rows left for training and testing."""
        return self.rows_read - self.null_label_rows - self.null_feature_rows


def prepare(
    df: DataFrame,
    features: FeatureSet,
    label: LabelSpec,
    nulls: str,
    *,
    split_columns: list[str] | None = None,
    test_fraction: float = 0.2,
    seed: int = 42,
) -> PreparedData:
    """Map the label to 0/1, cast numeric features to double, and apply the null policy.

    Rows with a null label are always dropped (a label cannot be imputed). ``drop`` drops
    rows with a null (or NaN) number; a null string is always its column's "unknown"
    category (as a category never seen in training is), so rows that predate a new
    categorical column are kept. Every count is reported, together with the sides of the
    :func:`split` by ``split_columns`` (default: the columns of ``df``), the label values on
    the training side and the values of each feature, all from one Spark job over the cached
    rows that fitting then reads.

    Raises:
        TrainingError: A label column without ``positive`` values that is not 0/1.
    """
    from pyspark.sql import functions as F

    source_label = column(label.column)
    if label.positive:
        label_expr = F.when(source_label.isNull(), F.lit(None)).when(
            source_label.cast("string").isin(*label.positive), 1.0
        ).otherwise(0.0)
    else:
        label_expr = source_label.cast("double")
    columns = list(df.columns) if split_columns is None else split_columns
    frame = df.withColumn(LABEL, label_expr)
    for name in features.numeric:
        frame = frame.withColumn(name, column(name).cast("double"))
    frame = frame.cache()

    labelled = F.col(LABEL).isNotNull()
    complete = labelled
    if nulls == "drop":
        for name in features.numeric:
            complete = complete & column(name).isNotNull() & ~F.isnan(column(name))
    is_test = _test_marker(columns, test_fraction, seed)
    is_train = complete & ~is_test

    def rows(condition: Column) -> Column:
        return F.count(F.when(condition, 1))

    aggregates = [
        F.count(F.lit(1)).alias("read"),
        rows(labelled).alias("labelled"),
        rows(complete).alias("complete"),
        rows(complete & is_test).alias("test"),
        rows(is_train & (F.col(LABEL) == 1.0)).alias("train_1"),
        rows(is_train & (F.col(LABEL) == 0.0)).alias("train_0"),
    ]
    if not label.positive:
        aggregates.append(rows(
            source_label.isNotNull() & ~source_label.cast("double").isin(0.0, 1.0)
        ).alias("bad_labels"))
    if features.categorical:
        any_null = F.lit(False)
        for name in features.categorical:
            any_null = any_null | column(name).isNull()
        aggregates.append(rows(complete & any_null).alias("null_category"))
    aggregates += [F.count(F.when(complete, column(name))).alias(f"values_{i}")
                   for i, name in enumerate(features.all)]
    try:
        counts = frame.agg(*aggregates).first()
        assert counts is not None
        if not label.positive and counts["bad_labels"]:
            bad = df.filter(source_label.isNotNull()
                            & ~source_label.cast("double").isin(0.0, 1.0))
            sample = [r[0] for r in bad.select(source_label).distinct().limit(5).collect()]
            raise TrainingError(
                f"label column {label.column!r} is not 0/1 (values like {sample}); "
                "give the values that mean 1 with --positive"
            )
    except BaseException:
        frame.unpersist()
        raise
    rows_read, rows_labelled, rows_complete = counts["read"], counts["labelled"], counts[
        "complete"]
    return PreparedData(
        frame=frame.filter(complete),
        rows_read=rows_read,
        null_label_rows=rows_read - rows_labelled,
        null_feature_rows=rows_labelled - rows_complete,
        null_category_rows=counts["null_category"] if features.categorical else 0,
        train_rows=rows_complete - counts["test"],
        test_rows=counts["test"],
        train_labels=tuple(v for v, key in ((0.0, "train_0"), (1.0, "train_1")) if counts[key]),
        value_counts={name: counts[f"values_{i}"] for i, name in enumerate(features.all)},
        source=frame,
    )


def _test_marker(columns: list[str], fraction: float, seed: int) -> Column:
    """True for the rows of the test side: a seeded hash of the row's content."""
    from pyspark.sql import functions as F

    bucket = F.abs(F.xxhash64(*[column(c) for c in columns], F.lit(seed))) % 1_000_000
    return bucket / 1_000_000.0 < fraction


def split(frame: DataFrame, columns: list[str], fraction: float, seed: int) -> tuple[
    DataFrame, DataFrame
]:
    """Seeded train/test split by a hash of each row's content.

    Unlike ``randomSplit`` the assignment does not depend on partitioning, so local mode and a
    cluster, or a rerun next year, put every row on the same side.
    """
    from pyspark.sql import functions as F

    marked = frame.withColumn(SPLIT, _test_marker(columns, fraction, seed))
    return marked.filter(~F.col(SPLIT)).drop(SPLIT), marked.filter(F.col(SPLIT)).drop(SPLIT)


def build_pipeline(features: FeatureSet, spec: TrainSpec) -> Pipeline:
    """The unfitted Spark ML pipeline for the spec's pipeline name."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression, RandomForestClassifier
    from pyspark.ml.feature import (
        Imputer,
        OneHotEncoder,
        StandardScaler,
        StringIndexer,
        VectorAssembler,
    )

    stages: list = []
    numeric = list(features.numeric)
    if spec.nulls == "impute" and numeric:
        outputs = [imputed_name(c) for c in numeric]
        stages.append(Imputer(inputCols=numeric, outputCols=outputs, strategy="median"))
        numeric = outputs
    encoded = []
    for name in features.categorical:
        stages.append(StringIndexer(inputCol=name, outputCol=f"__idx_{name}",
                                    handleInvalid="keep", stringOrderType="frequencyDesc"))
        stages.append(OneHotEncoder(inputCol=f"__idx_{name}", outputCol=f"__ohe_{name}",
                                    handleInvalid="keep", dropLast=True))
        encoded.append(f"__ohe_{name}")
    stages.append(VectorAssembler(inputCols=numeric + encoded, outputCol="__raw"))
    # Scaling does not change what a tree can split, but it drops the one-hot columns'
    # "binary" metadata, so Spark's trees split them as numbers exactly as the ONNX trees do.
    stages.append(StandardScaler(inputCol="__raw", outputCol=FEATURES,
                                 withMean=True, withStd=True))
    if spec.pipeline == "tree":
        stages.append(RandomForestClassifier(
            featuresCol=FEATURES, labelCol=LABEL, numTrees=spec.num_trees,
            maxDepth=spec.max_depth, seed=spec.seed,
        ))
    else:
        stages.append(LogisticRegression(
            featuresCol=FEATURES, labelCol=LABEL, maxIter=spec.max_iter,
            regParam=spec.reg_param, elasticNetParam=spec.elastic_net,
        ))
    return Pipeline(stages=stages)

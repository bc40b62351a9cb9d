"""Spark ML pipelines: ``baseline``, ``categorical`` and ``tree``, and data preparation.

``baseline``: VectorAssembler over numeric features -> StandardScaler -> LogisticRegression.
``categorical``: StringIndexer(keep) -> OneHotEncoder(keep, dropLast) per string column, then
the baseline stages. ``tree``: the same encoding and scaling -> RandomForestClassifier.
With the ``impute`` null policy an Imputer (median) comes first for numeric columns and null
strings fall into the "unknown" category of their StringIndexer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from icefloe.errors import TrainingError
from icefloe.ml.spec import FeatureSet, LabelSpec, TrainSpec

if TYPE_CHECKING:
    from pyspark.ml import Pipeline
    from pyspark.sql import DataFrame

LABEL = "__icefloe_label"
SPLIT = "__icefloe_split"
FEATURES = "__icefloe_features"
PROBABILITY = "probability"


def imputed_name(column: str) -> str:
    """Name of the Imputer's output column for ``column``."""
    return f"__imputed_{column}"


@dataclass(frozen=True)
class PreparedData:
    """Rows ready for fitting, and what preparation did to them."""

    frame: DataFrame
    rows_read: int
    null_label_rows: int
    null_feature_rows: int
    null_category_rows: int = 0

    @property
    def rows_used(self) -> int:
        """Rows left for training and testing."""
        return self.rows_read - self.null_label_rows - self.null_feature_rows


def prepare(df: DataFrame, features: FeatureSet, label: LabelSpec, nulls: str) -> PreparedData:
    """Map the label to 0/1, cast numeric features to double, and apply the null policy.

    Rows with a null label are always dropped (a label cannot be imputed). ``drop`` drops
    rows with a null number; a null string is always its column's "unknown" category (as a
    category never seen in training is), so rows that predate a new categorical column are
    kept. Every count is reported.

    Raises:
        TrainingError: A label column without ``positive`` values that is not 0/1.
    """
    from pyspark.sql import functions as F

    column = F.col(f"`{label.column}`")
    if label.positive:
        label_expr = F.when(column.isNull(), F.lit(None)).when(
            column.cast("string").isin(*label.positive), 1.0
        ).otherwise(0.0)
    else:
        bad = df.filter(column.isNotNull() & ~column.cast("double").isin(0.0, 1.0))
        sample = [r[0] for r in bad.select(column).distinct().limit(5).collect()]
        if sample:
            raise TrainingError(
                f"label column {label.column!r} is not 0/1 (values like {sample}); "
                "give the values that mean 1 with --positive"
            )
        label_expr = column.cast("double")
    frame = df.withColumn(LABEL, label_expr)
    for name in features.numeric:
        frame = frame.withColumn(name, F.col(f"`{name}`").cast("double"))
    frame = frame.cache()
    rows_read = frame.count()
    with_label = frame.filter(F.col(LABEL).isNotNull())
    rows_labelled = with_label.count()
    null_feature_rows = 0
    if nulls == "drop" and features.numeric:
        complete = with_label.na.drop(subset=list(features.numeric))
        null_feature_rows = rows_labelled - complete.count()
        with_label = complete
    null_category_rows = 0
    if features.categorical:
        any_null = F.lit(False)
        for name in features.categorical:
            any_null = any_null | F.col(f"`{name}`").isNull()
        null_category_rows = with_label.filter(any_null).count()
    return PreparedData(with_label, rows_read, rows_read - rows_labelled, null_feature_rows,
                        null_category_rows)


def split(frame: DataFrame, columns: list[str], fraction: float, seed: int) -> tuple[
    DataFrame, DataFrame
]:
    """Seeded train/test split by a hash of each row's content.

    Unlike ``randomSplit`` the assignment does not depend on partitioning, so local mode and a
    cluster, or a rerun next year, put every row on the same side.
    """
    from pyspark.sql import functions as F

    bucket = (F.abs(F.xxhash64(*[F.col(f"`{c}`") for c in columns], F.lit(seed))) % 1_000_000)
    marked = frame.withColumn(SPLIT, bucket / 1_000_000.0 < fraction)
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

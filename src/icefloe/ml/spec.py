"""What to train: the training specification and the pure rules that check it against data.

Nothing here touches Spark, MLflow or the catalog: :func:`resolve_features` looks only at an
Iceberg schema, so the "baseline cannot take a string column" failure of the story is
decided (and explained) before any work starts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from icefloe.errors import InvalidInputError, TrainingError

if TYPE_CHECKING:  # the spec is plain data: replicas and the CLI load it without PyIceberg
    from pyiceberg.schema import Schema

PIPELINES = ("baseline", "categorical", "tree")
NULL_POLICIES = ("drop", "impute")


@dataclass(frozen=True)
class LabelSpec:
    """How the label column maps to 0/1.

    Attributes:
        column: The label column.
        positive: Values that mean 1 (all others 0); empty for a column that is already 0/1.
    """

    column: str
    positive: tuple[str, ...] = ()

    def describe(self) -> str:
        """Human-readable definition, e.g. ``loan_status in ('Charged Off', 'Default')``."""
        if not self.positive:
            return f"{self.column} (0/1)"
        values = ", ".join(repr(v) for v in self.positive)
        return f"{self.column} in ({values})"


@dataclass(frozen=True)
class TrainSpec:
    """Everything that decides a trained model (together with the snapshot it reads).

    Attributes:
        table: ``namespace.table`` to train on.
        label: Label definition.
        model_name: Registered model name.
        pipeline: ``baseline``, ``categorical`` or ``tree``.
        features: Explicit feature columns; empty means every column but label and exclude.
        exclude: Columns never used as features.
        nulls: ``drop`` rows with a null number, or ``impute`` the median. Null strings are
            always the "unknown" category of their column (counted and reported).
        test_fraction: Share of rows held out for evaluation.
        seed: Seed of the split and of randomised learners.
        snapshot_id: Train on this snapshot instead of the current one.
        tag: Train on the snapshot of this tag.
        max_iter, reg_param, elastic_net: Logistic regression parameters (seed demo values).
        num_trees, max_depth: Tree model parameters.
    """

    table: str
    label: LabelSpec
    model_name: str
    pipeline: str = "baseline"
    features: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    nulls: str = "drop"
    test_fraction: float = 0.2
    seed: int = 42
    snapshot_id: int | None = None
    tag: str | None = None
    max_iter: int = 100
    reg_param: float = 1e-4
    elastic_net: float = 1e-4
    num_trees: int = 50
    max_depth: int = 5
    experiment: str = "icefloe"
    extra_tags: dict[str, str] = field(default_factory=dict)

    def validate(self) -> TrainSpec:
        """Check option values; returns self for chaining."""
        if self.pipeline not in PIPELINES:
            raise InvalidInputError(
                f"unknown pipeline {self.pipeline!r}; use one of {', '.join(PIPELINES)}"
            )
        if self.nulls not in NULL_POLICIES:
            raise InvalidInputError(
                f"unknown null policy {self.nulls!r}; use one of {', '.join(NULL_POLICIES)}"
            )
        if not 0.05 <= self.test_fraction <= 0.5:
            raise InvalidInputError(
                f"test fraction must be between 0.05 and 0.5, got {self.test_fraction}"
            )
        if self.snapshot_id is not None and self.tag is not None:
            raise InvalidInputError("give either a snapshot id or a tag, not both")
        if self.label.column in self.features:
            raise InvalidInputError(f"the label column {self.label.column!r} cannot be a feature")
        return self

    def params(self) -> dict[str, object]:
        """Parameters to log with the run."""
        out = asdict(self)
        out.pop("extra_tags")
        out["label"] = self.label.describe()
        out["features"] = ",".join(self.features) or "(all but label/exclude)"
        out["exclude"] = ",".join(self.exclude)
        return out


@dataclass(frozen=True)
class FeatureSet:
    """Resolved feature columns, split by kind, in table order."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        """Every feature column: numeric first, then categorical."""
        return self.numeric + self.categorical


def resolve_features(schema: Schema, spec: TrainSpec) -> FeatureSet:
    """Pick and type-check the feature columns of a snapshot schema.

    Raises:
        TrainingError: A missing column, a column of an unusable type, or a string column
            given to a pipeline that cannot encode strings (naming the column and the fix).
    """
    from pyiceberg.types import (
        BooleanType,
        DecimalType,
        DoubleType,
        FloatType,
        IntegerType,
        LongType,
        StringType,
    )

    numeric_types = (IntegerType, LongType, FloatType, DoubleType, DecimalType, BooleanType)
    names = [f.name for f in schema.fields]
    if spec.label.column not in names:
        raise TrainingError(
            f"label column {spec.label.column!r} is not in {spec.table} "
            f"(columns: {', '.join(names)})"
        )
    for col in (*spec.features, *spec.exclude):
        if col not in names:
            raise TrainingError(f"column {col!r} is not in {spec.table}")
    chosen = list(spec.features) or [
        n for n in names if n != spec.label.column and n not in spec.exclude
    ]
    if not chosen:
        raise TrainingError(f"no feature columns left in {spec.table}")
    numeric: list[str] = []
    categorical: list[str] = []
    for name in chosen:
        ftype = schema.find_field(name).field_type
        if isinstance(ftype, numeric_types):
            numeric.append(name)
        elif isinstance(ftype, StringType):
            categorical.append(name)
        else:
            raise TrainingError(
                f"feature column {name!r} has type {ftype}, which no pipeline can use; "
                "leave it out with --exclude"
            )
    if categorical and spec.pipeline == "baseline":
        cols = ", ".join(repr(c) for c in categorical)
        raise TrainingError(
            f"the baseline pipeline cannot assemble string column(s) {cols} of {spec.table}: "
            "use --pipeline categorical (or tree), or leave them out with --exclude"
        )
    return FeatureSet(tuple(numeric), tuple(categorical))


def parse_positive(text: str | None) -> tuple[str, ...]:
    """Parse ``--positive "Charged Off,Default"`` into its values (empty for none)."""
    if not text:
        return ()
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise InvalidInputError("--positive needs at least one value")
    return values

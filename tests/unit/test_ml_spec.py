import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import DateType, DoubleType, LongType, NestedField, StringType

from icefloe.errors import InvalidInputError, TrainingError
from icefloe.ml.spec import LabelSpec, TrainSpec, parse_positive, resolve_features

SCHEMA = Schema(
    NestedField(1, "income", DoubleType(), required=False),
    NestedField(2, "count", LongType(), required=False),
    NestedField(3, "home", StringType(), required=False),
    NestedField(4, "status", StringType(), required=False),
    NestedField(5, "opened", DateType(), required=False),
)


def _spec(**kw) -> TrainSpec:
    base = dict(table="t.loans", label=LabelSpec("status", ("bad",)), model_name="m",
                exclude=("opened",))
    return TrainSpec(**{**base, **kw}).validate()


def test_all_columns_but_label_and_exclude_by_kind() -> None:
    fs = resolve_features(SCHEMA, _spec(pipeline="categorical"))
    assert fs.numeric == ("income", "count") and fs.categorical == ("home",)
    assert fs.all == ("income", "count", "home")


def test_baseline_refuses_string_columns_naming_them() -> None:
    with pytest.raises(TrainingError, match="'home'.*--pipeline categorical"):
        resolve_features(SCHEMA, _spec())
    assert resolve_features(SCHEMA, _spec(exclude=("opened", "home"))).categorical == ()


def test_unusable_and_missing_columns() -> None:
    with pytest.raises(TrainingError, match="'opened' has type date"):
        resolve_features(SCHEMA, _spec(exclude=(), pipeline="tree"))
    with pytest.raises(TrainingError, match="'nope' is not in t.loans"):
        resolve_features(SCHEMA, _spec(features=("nope",)))
    with pytest.raises(TrainingError, match="label column 'status2'"):
        resolve_features(SCHEMA, _spec(label=LabelSpec("status2")))


def test_option_validation() -> None:
    with pytest.raises(InvalidInputError, match="unknown pipeline 'svm'"):
        _spec(pipeline="svm")
    with pytest.raises(InvalidInputError, match="null policy"):
        _spec(nulls="ignore")
    with pytest.raises(InvalidInputError, match="test fraction"):
        _spec(test_fraction=0.9)
    with pytest.raises(InvalidInputError, match="cannot be a feature"):
        _spec(features=("status",))
    assert parse_positive("Charged Off, Default") == ("Charged Off", "Default")
    assert parse_positive(None) == ()
    assert LabelSpec("s", ("a", "b")).describe() == "s in ('a', 'b')"


def test_what_spark_refuses_during_training_is_a_named_training_error() -> None:
    from pyspark.errors import AnalysisException

    from icefloe.errors import TrainingError
    from icefloe.ml.train import _Timer

    timer = _Timer(None)
    refused = pytest.raises(TrainingError, match=r"the fit step failed in Spark: \[UNRESOLVED")
    with refused, timer.step("fit"):
        raise AnalysisException("[UNRESOLVED_COLUMN] A column `x`.`y` cannot be resolved.")
    with pytest.raises(KeyError), timer.step("fit"):  # our own bugs stay what they are
        raise KeyError("x")
    assert set(timer.timings) == {"fit"}

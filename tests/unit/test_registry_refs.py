import pytest

from icefloe.errors import InvalidNameError
from icefloe.registry.lineage import Lineage
from icefloe.registry.refs import ModelRef, name_filter, parse_model_ref, validate_alias


def test_refs() -> None:
    assert parse_model_ref("loan-default/1") == ModelRef("loan-default", version=1)
    assert parse_model_ref("loan-default@champion") == ModelRef("loan-default", alias="champion")
    assert str(parse_model_ref("m@a")) == "m@a" and str(parse_model_ref("m/3")) == "m/3"
    for bad in ("loan-default", "loan-default/x", "m/0", "../m/1", "m/1/2", "@a", "m@", ""):
        with pytest.raises(InvalidNameError):
            parse_model_ref(bad)
    for bad in ("latest", "v3", "a b"):
        with pytest.raises(InvalidNameError):
            validate_alias(bad)


def test_lineage_round_trip_and_tags() -> None:
    ln = Lineage(
        catalog="c", table="t.x", snapshot_id=7, snapshot_time="2026-01-01T00:00:00+00:00",
        schema_id=0, row_count=10, fingerprint="fp1:ab", features=["a"], numeric_features=["a"],
        categorical_features=[], label="y (0/1)", label_column="y", positive_values=[],
        pipeline="baseline", nulls="drop", seed=1, test_fraction=0.2, train_rows=8, test_rows=2,
        dropped_rows=0, run_id="r", experiment_id="1", metrics={"auc": 0.7},
    )
    assert Lineage.from_dict({**ln.to_dict(), "future_field": 1}) == ln
    tags = ln.tags()
    assert tags["icefloe.snapshot_id"] == "7" and tags["icefloe.fingerprint"] == "fp1:ab"


def test_model_names_stay_values_in_mlflow_filters() -> None:
    assert name_filter("loan-default") == "name = 'loan-default'"
    for hostile in ("x' OR name LIKE '%", "a\\' --"):
        with pytest.raises(InvalidNameError, match="cannot be searched"):
            name_filter(hostile)

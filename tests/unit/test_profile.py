"""Reference profiles: equal-height bins, categories with an unknown bucket, PSI."""

import numpy as np
import pytest

from icefloe.errors import InvalidInputError
from icefloe.monitoring.profile import (
    ReferenceProfile,
    bin_counts,
    categorical_profile,
    numeric_profile,
    psi,
)


def test_numeric_bins_have_equal_height_and_count_nulls() -> None:
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(10, 2, 10_000), [np.nan] * 500])
    profile = numeric_profile(values)
    assert len(profile.edges) == 21 and len(profile.counts) == 20
    assert sum(profile.counts) == 10_000 and profile.nulls == 500 and profile.rows == 10_500
    assert all(480 <= c <= 520 for c in profile.counts), profile.counts
    assert profile.min == profile.edges[0] and profile.max < profile.edges[-1]
    assert profile.null_share == pytest.approx(500 / 10_500)


def test_few_distinct_values_get_a_bin_each_and_a_shift_between_them_shows() -> None:
    small = numeric_profile([0, 1, 1, 2, 2, 2, None])
    assert small.edges[:3] == [0.0, 1.0, 2.0] and small.counts == [1, 2, 3]
    assert small.nulls == 1 and small.edges[3] > 2.0
    constant = numeric_profile([3.0] * 10)
    assert constant.counts == [10] and constant.edges[0] == 3.0 < constant.edges[1]
    flag = numeric_profile([1.0] * 10 + [0.0] * 90)  # 10% ones at training
    assert flag.counts == [90, 10]
    assert psi(flag.counts, bin_counts(flag, [1.0] * 90 + [0.0] * 10)) > 1.0  # 90% now
    many = numeric_profile(np.arange(1000.0))
    assert many.counts[-1] == 50 and bin_counts(many, [999.0]) == [0] * 19 + [1]
    empty = numeric_profile([None, None])
    assert empty.edges == [] and empty.nulls == 2 and empty.min is None


def test_values_outside_the_reference_land_in_the_end_bins() -> None:
    profile = numeric_profile(np.arange(100.0))
    counts = bin_counts(profile, [-50.0, 0.0, 99.0, 1e9, np.nan])
    assert counts[0] == 2 and counts[-1] == 2 and sum(counts) == 4


def test_psi_is_near_zero_for_the_same_data_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(7)
    reference = numeric_profile(rng.normal(0, 1, 20_000))
    same = bin_counts(reference, rng.normal(0, 1, 2_000))
    shifted = bin_counts(reference, rng.normal(2, 1, 2_000))  # +2 standard deviations
    assert psi(reference.counts, same) < 0.1
    assert psi(reference.counts, shifted) > 0.25
    assert psi(reference.counts, [0] * 20) == 0.0  # no rows: no evidence, not drift
    with pytest.raises(InvalidInputError, match="same bins"):
        psi([1, 2], [1, 2, 3])


def test_categories_keep_the_most_frequent_and_bucket_the_rest() -> None:
    values = ["a"] * 5 + ["b"] * 3 + ["c"] * 3 + ["d"] + [None] * 2
    profile = categorical_profile(values, max_categories=2)
    assert profile.frequencies == {"a": 5, "b": 3}  # ties broken by name
    assert profile.unknown == 4 and profile.nulls == 2 and profile.rows == 14


def test_profiles_round_trip_and_unknown_formats_are_refused() -> None:
    profile = ReferenceProfile(
        table="lending.loans", snapshot_id=42, fingerprint="fp1:x", rows=7,
        numeric={"x y": numeric_profile([1.0, 2.0, None])},
        categorical={"größe": categorical_profile(["s", "m", None])},
        scores=numeric_profile([0.1, 0.9]), scores_from="the test rows")
    assert ReferenceProfile.from_dict(profile.to_dict()) == profile
    with pytest.raises(InvalidInputError, match="format 99"):
        ReferenceProfile.from_dict({**profile.to_dict(), "format": 99})

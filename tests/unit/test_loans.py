import hashlib
from pathlib import Path

import numpy as np
import pytest

from icefloe.demo.loans import (
    CATEGORICAL_FEATURES,
    LABEL_COLUMN,
    NUMERIC_FEATURES,
    POSITIVE_STATUSES,
    generate_loans,
    write_loans,
)
from icefloe.errors import FileProblemError, InvalidInputError


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    ranks = np.argsort(np.argsort(scores)) + 1
    pos = labels.sum()
    return float((ranks[labels == 1].sum() - pos * (pos + 1) / 2) / (pos * (len(labels) - pos)))


def _logistic_auc(features: np.ndarray, labels: np.ndarray) -> float:
    """Fit a logistic regression by Newton's method and return its in-sample AUC."""
    x = (features - features.mean(0)) / features.std(0)
    x = np.c_[np.ones(len(x)), x]
    w = np.zeros(x.shape[1])
    for _ in range(25):
        p = 1 / (1 + np.exp(-x @ w))
        hessian = x.T @ (x * (p * (1 - p))[:, None])
        w += np.linalg.solve(hessian, x.T @ (labels - p))
    return _auc(x @ w, labels)


def test_same_seed_same_file(tmp_path: Path) -> None:
    for ext in ("parquet", "csv"):
        a = write_loans(generate_loans(500, 7), tmp_path / f"a.{ext}")
        b = write_loans(generate_loans(500, 7), tmp_path / f"b.{ext}")
        c = write_loans(generate_loans(500, 8), tmp_path / f"c.{ext}")
        digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (a, b, c)]
        assert digest[0] == digest[1] != digest[2]


def test_base_book_columns_and_label() -> None:
    table = generate_loans(2000, 1)
    assert table.column_names == [*NUMERIC_FEATURES, LABEL_COLUMN]
    statuses = set(table.column(LABEL_COLUMN).to_pylist())
    assert statuses <= {"Charged Off", "Default", "Fully Paid", "Current"}
    assert set(POSITIVE_STATUSES) <= statuses


def test_bad_batch_adds_categorical_columns_and_new_rows() -> None:
    base = generate_loans(1000, 3)
    bad = generate_loans(1000, 3, bad_batch=True)
    assert bad.column_names == [*NUMERIC_FEATURES, *CATEGORICAL_FEATURES, LABEL_COLUMN]
    assert set(bad.column("home_ownership").to_pylist()) >= {"MORTGAGE", "RENT", "OWN"}
    assert bad.column("annual_inc").to_pylist() != base.column("annual_inc").to_pylist()


def test_realistic_distributions_and_missing_values() -> None:
    df = generate_loans(20_000, 5).to_pandas()
    log_income = np.log(df["annual_inc"])
    assert 10.9 < log_income.mean() < 11.4 and 0.4 < log_income.std() < 0.7
    assert abs(df["acc_open_past_24mths"].mean() - df["acc_open_past_24mths"].var()) < 1.5
    assert (df["acc_now_delinq"] == 0).mean() > 0.9
    assert 0.01 < df["avg_cur_bal"].isna().mean() < 0.06
    assert df["emp_length"].isna().any() and df["annual_inc"].notna().all()
    assert 0.1 < df[LABEL_COLUMN].isin(POSITIVE_STATUSES).mean() < 0.35


def test_label_depends_on_the_features() -> None:
    df = generate_loans(20_000, 11).to_pandas()
    labels = df[LABEL_COLUMN].isin(POSITIVE_STATUSES).to_numpy(dtype=float)
    numeric = df[list(NUMERIC_FEATURES)]
    auc = _logistic_auc(numeric.fillna(numeric.mean()).to_numpy(), labels)
    assert 0.68 < auc < 0.85
    noise = np.random.default_rng(0).normal(size=len(labels))
    assert abs(_auc(noise, labels) - 0.5) < 0.03


def test_bad_input_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="rows"):
        generate_loans(0)
    with pytest.raises(FileProblemError, match=r"\.txt"):
        write_loans(generate_loans(5), tmp_path / "x.txt")

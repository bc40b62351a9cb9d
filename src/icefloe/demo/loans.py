"""A seeded LendingClub-style loan book for the demo and the tests.

The base book has numeric features and the label source ``loan_status``; the "bad batch" of
the failure story adds the categorical columns ``home_ownership`` and ``purpose``. Defaults
depend on the features through a logistic model, so a good classifier reaches an AUC of
about 0.7-0.8. The same seed always gives the same rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from icefloe.errors import InvalidInputError
from icefloe.lakehouse.files import write_file

LABEL_COLUMN = "loan_status"
POSITIVE_STATUSES = ("Charged Off", "Default")
NUMERIC_FEATURES = (
    "acc_now_delinq",
    "acc_open_past_24mths",
    "annual_inc",
    "avg_cur_bal",
    "funded_amnt",
    "int_rate",
    "dti",
    "term_months",
    "delinq_2yrs",
    "revol_util",
    "emp_length",
)
CATEGORICAL_FEATURES = ("home_ownership", "purpose")
_HOME = (("MORTGAGE", 0.48, -0.15), ("RENT", 0.40, 0.25), ("OWN", 0.11, 0.0), ("OTHER", 0.01, 0.6))
_PURPOSE = (
    ("debt_consolidation", 0.58, 0.05),
    ("credit_card", 0.22, -0.2),
    ("home_improvement", 0.06, -0.1),
    ("other", 0.06, 0.15),
    ("major_purchase", 0.03, 0.0),
    ("small_business", 0.02, 0.7),
    ("car", 0.015, -0.2),
    ("medical", 0.015, 0.3),
)
MAX_ROWS = 50_000_000


def _with_missing(rng: np.random.Generator, values: np.ndarray, rate: float) -> pa.Array:
    mask = rng.random(values.shape[0]) < rate
    return pa.array(values, mask=mask)


def _choice(rng: np.random.Generator, table: tuple[tuple[str, float, float], ...], n: int):
    probs = np.array([p for _, p, _ in table])
    idx = rng.choice(len(table), size=n, p=probs / probs.sum())
    names = np.array([name for name, _, _ in table], dtype=object)[idx]
    effects = np.array([effect for _, _, effect in table])[idx]
    return names, effects


def generate_loans(rows: int, seed: int = 42, *, bad_batch: bool = False) -> pa.Table:
    """Generate a loan book.

    Args:
        rows: Number of loans (>= 1).
        seed: Random seed; the same seed gives the same table.
        bad_batch: Also produce the categorical columns of the failure story (and draw from
            a separate random stream, so a bad batch never repeats the base book's rows).

    Returns:
        An Arrow table with :data:`NUMERIC_FEATURES`, optionally :data:`CATEGORICAL_FEATURES`,
        and ``loan_status``.
    """
    if rows < 1 or rows > MAX_ROWS:
        raise InvalidInputError(f"rows must be between 1 and {MAX_ROWS:,}, got {rows}")
    rng = np.random.default_rng([seed, 1] if bad_batch else [seed])
    n = rows
    # A latent credit quality drives rates, utilisation and delinquencies, as in real books.
    quality = rng.normal(0.0, 1.0, n)
    annual_inc = np.round(np.exp(rng.normal(11.1, 0.55, n) + 0.1 * quality), -2)
    funded_amnt = np.clip(np.round(np.exp(rng.normal(9.35, 0.6, n)) / 25) * 25, 1000, 40000)
    term_months = np.where(rng.random(n) < 0.28 + 0.05 * (quality < -0.5), 60, 36)
    int_rate = np.round(np.clip(13.0 - 4.2 * quality + rng.normal(0, 1.5, n), 5.3, 30.9), 2)
    dti = np.round(np.clip(rng.gamma(4.0, 4.5, n) - 1.5 * quality, 0.0, 60.0), 2)
    revol_util = np.round(np.clip(rng.beta(2.2, 2.0, n) * 100 - 6 * quality, 0.0, 150.0), 1)
    acc_open_past_24mths = rng.poisson(np.clip(4.5 - 0.6 * quality, 0.5, None))
    acc_now_delinq = rng.poisson(np.where(quality < -1.5, 0.15, 0.01))
    delinq_2yrs = rng.poisson(np.clip(0.3 - 0.15 * quality, 0.02, None))
    avg_cur_bal = np.round(np.exp(rng.normal(9.0, 1.0, n) + 0.25 * quality), 0)
    emp_length = np.clip(rng.poisson(5.5, n), 0, 10)

    logit = (
        -1.75
        + 0.55 * (int_rate - 13.0) / 4.5
        + 0.30 * (dti - 18.0) / 9.0
        - 0.35 * (np.log(annual_inc) - 11.1) / 0.55
        + 0.40 * (term_months == 60)
        + 0.50 * acc_now_delinq
        + 0.07 * (acc_open_past_24mths - 4.5)
        + 0.15 * (revol_util - 50.0) / 25.0
        + 0.08 * (np.log(funded_amnt) - 9.35) / 0.6
    )
    columns: dict[str, pa.Array] = {
        "acc_now_delinq": pa.array(acc_now_delinq, pa.int32()),
        "acc_open_past_24mths": pa.array(acc_open_past_24mths, pa.int32()),
        "annual_inc": pa.array(annual_inc, pa.float64()),
        "avg_cur_bal": _with_missing(rng, avg_cur_bal, 0.03),
        "funded_amnt": pa.array(funded_amnt, pa.float64()),
        "int_rate": pa.array(int_rate, pa.float64()),
        "dti": _with_missing(rng, dti, 0.01),
        "term_months": pa.array(term_months, pa.int32()),
        "delinq_2yrs": pa.array(delinq_2yrs, pa.int32()),
        "revol_util": _with_missing(rng, revol_util, 0.01),
        "emp_length": pa.array(emp_length, pa.int32(), mask=rng.random(n) < 0.05),
    }
    if bad_batch:
        home, home_effect = _choice(rng, _HOME, n)
        purpose, purpose_effect = _choice(rng, _PURPOSE, n)
        logit = logit + home_effect + purpose_effect
        columns["home_ownership"] = pa.array(home, pa.string())
        columns["purpose"] = pa.array(purpose, pa.string())
    default = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    bad_kind = np.where(rng.random(n) < 0.85, "Charged Off", "Default")
    good_kind = np.where(rng.random(n) < 0.72, "Fully Paid", "Current")
    columns[LABEL_COLUMN] = pa.array(np.where(default, bad_kind, good_kind), pa.string())
    return pa.table(columns)


def write_loans(table: pa.Table, output: str | Path) -> Path:
    """Write the table as Parquet or CSV, chosen by the file extension."""
    return write_file(table, output)

"""Drift of a window of predictions against a reference profile (pure NumPy).

Numbers: PSI on the reference bins (epsilon-smoothed), the Kolmogorov-Smirnov statistic
between the reference's binned distribution and the window's values (the largest gap of the
two cumulative shares at the reference bin edges: exact at those edges, which is what the
profile keeps), and the null share. Categories: the Jensen-Shannon distance (base 2, 0 to 1)
between the reference frequencies (its unknown bucket as one more category) and the
window's, and the share of values outside the reference's categories (never seen, or too rare
to be kept among its most frequent). Every figure carries its sample size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from icefloe.monitoring.profile import (
    EPSILON,
    CategoricalProfile,
    NumericProfile,
    bin_counts,
    psi,
)

UNKNOWN = "\u0000unknown"  # the reference's bucket of rare categories, as a key


@dataclass(frozen=True)
class Figure:
    """One measured value of a window: a metric, of a feature or of the whole window."""

    metric: str
    value: float | None
    samples: int
    feature: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"metric": self.metric, "feature": self.feature, "value": self.value,
                "samples": self.samples}


def ks_binned(reference: NumericProfile, counts: Sequence[int]) -> float:
    """The KS statistic at the reference bin edges, from the window's counts in the same
    bins (:func:`~icefloe.monitoring.profile.bin_counts`): the largest gap between the two
    shares of values below each edge. 0 when either side is empty."""
    ref = np.asarray(reference.counts, dtype=np.float64)
    cur = np.asarray(counts, dtype=np.float64)
    if ref.size == 0 or ref.size != cur.size or ref.sum() == 0 or cur.sum() == 0:
        return 0.0
    return float(np.max(np.abs(np.cumsum(ref) / ref.sum() - np.cumsum(cur) / cur.sum())))


def js_distance(reference: dict[str, float], current: dict[str, float]) -> float:
    """Jensen-Shannon distance (base 2) between two frequency tables; 0 when one is empty."""
    keys = sorted(set(reference) | set(current))
    p = np.array([reference.get(k, 0.0) for k in keys], dtype=np.float64)
    q = np.array([current.get(k, 0.0) for k in keys], dtype=np.float64)
    if p.sum() == 0 or q.sum() == 0:
        return 0.0
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / b[mask])))

    return float(np.sqrt(max(0.0, (kl(p, m) + kl(q, m)) / 2)))


def numeric_drift(name: str, reference: NumericProfile, values: np.ndarray
                  ) -> list[Figure]:
    """PSI, KS and null share of one numeric feature's window values."""
    data = np.asarray(values, dtype=np.float64)
    finite = int(np.isfinite(data).sum())
    counts = bin_counts(reference, data)
    return [
        Figure("psi", psi(reference.counts, counts, EPSILON) if counts else None, finite, name),
        Figure("ks", ks_binned(reference, counts) if counts else None, finite, name),
        Figure("null_share", float(1 - finite / data.size) if data.size else None, int(data.size),
               name),
    ]


def categorical_drift(name: str, reference: CategoricalProfile, counts: Mapping[str, int],
                      nulls: int) -> list[Figure]:
    """Jensen-Shannon distance, unseen share and null share of one string feature, from the
    window's category counts (nulls apart)."""
    current: dict[str, float] = {}
    unseen = 0
    for value, count in counts.items():
        key = value if value in reference.frequencies else UNKNOWN
        if key == UNKNOWN:
            unseen += count
        current[key] = current.get(key, 0.0) + count
    ref: dict[str, float] = {k: float(v) for k, v in reference.frequencies.items()}
    if reference.unknown:
        ref[UNKNOWN] = float(reference.unknown)
    seen = sum(counts.values())
    total = seen + nulls
    return [
        Figure("js_distance", js_distance(ref, current), seen, name),
        Figure("unseen_share", unseen / seen if seen else None, seen, name),
        Figure("null_share", nulls / total if total else None, total, name),
    ]


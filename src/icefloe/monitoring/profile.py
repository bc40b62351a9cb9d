"""Reference profiles: what a model's training snapshot and its own scores looked like.

A profile is made once, when the model is trained (or by ``icefloe model profile`` for a
model trained before profiles existed), and kept with the model version and inside every
build, so drift is measured against it without reading the training data again. It names
the snapshot and fingerprint it came from.

Per numeric feature: equal-height bin edges (quantiles of the non-null values; ties merge
bins; a column with no more distinct values than bins gets one bin per value), the count in
each bin, nulls, min and max. Per string feature: the frequency of each category (the
:data:`MAX_CATEGORIES` most frequent; the rest are counted together in the unknown bucket)
and nulls. The model's own
scores on the test rows get the numeric treatment. Pure functions over NumPy arrays and
plain data.

Values outside the reference range fall into the first or last bin (:func:`bin_counts`), so
a shift shows as mass piling up at an end; :func:`psi` compares two sets of counts with
epsilon smoothing, so an empty bin does not make the index infinite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from icefloe.errors import InvalidInputError

PROFILE_ARTIFACT = "reference_profile.json"  # in the training run's artifacts
PROFILE_FILE = "profile.json"  # inside a build
FORMAT = 1
BINS = 20
MAX_CATEGORIES = 100
EPSILON = 1e-4  # share given to an empty bin when comparing (PSI)


@dataclass(frozen=True)
class NumericProfile:
    """Equal-height bins of a numeric column (or of scores)."""

    edges: list[float]
    counts: list[int]
    rows: int
    nulls: int
    min: float | None
    max: float | None

    @property
    def null_share(self) -> float:
        """Share of rows that were null (or NaN)."""
        return self.nulls / self.rows if self.rows else 0.0


@dataclass(frozen=True)
class CategoricalProfile:
    """Category frequencies of a string column, with the unknown bucket for the rest."""

    frequencies: dict[str, int]
    unknown: int
    rows: int
    nulls: int

    @property
    def null_share(self) -> float:
        """Share of rows that were null."""
        return self.nulls / self.rows if self.rows else 0.0


@dataclass(frozen=True)
class ReferenceProfile:
    """The profile of one model version's training snapshot and test scores."""

    table: str
    snapshot_id: int
    fingerprint: str
    rows: int
    numeric: dict[str, NumericProfile]
    categorical: dict[str, CategoricalProfile]
    scores: NumericProfile
    scores_from: str
    format: int = FORMAT
    bins: int = BINS
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what is stored as :data:`PROFILE_ARTIFACT`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceProfile:
        """Read a stored profile.

        Raises:
            InvalidInputError: A profile of a format this version does not know.
        """
        if data.get("format") != FORMAT:
            raise InvalidInputError(f"reference profile format {data.get('format')!r} is not "
                                    f"supported (expected {FORMAT})")
        return cls(
            table=str(data["table"]), snapshot_id=int(data["snapshot_id"]),
            fingerprint=str(data["fingerprint"]), rows=int(data["rows"]),
            numeric={k: NumericProfile(**v) for k, v in data["numeric"].items()},
            categorical={k: CategoricalProfile(**v) for k, v in data["categorical"].items()},
            scores=NumericProfile(**data["scores"]), scores_from=str(data["scores_from"]),
            bins=int(data.get("bins", BINS)), extra=dict(data.get("extra", {})),
        )


def numeric_profile(values: Sequence[float] | np.ndarray, bins: int = BINS) -> NumericProfile:
    """Equal-height bins of ``values`` (None and NaN count as nulls)."""
    data = np.asarray([np.nan if v is None else v for v in values] if isinstance(values, list)
                      else values, dtype=np.float64)
    finite = data[np.isfinite(data)]
    nulls = int(data.size - finite.size)
    if finite.size == 0:
        return NumericProfile([], [], int(data.size), nulls, None, None)
    distinct = np.unique(finite)
    if distinct.size <= bins:
        # Few values (a flag, a term of 36 or 60 months): one bin per value, so a move of
        # rows from one value to another is seen.
        edges = np.append(distinct, np.nextafter(distinct[-1], np.inf))
    else:
        # Quantiles that are values of the data, so ties merge bins instead of inventing
        # edges; the top edge sits just above the maximum, so the maximum's bin is its own.
        edges = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, bins + 1),
                                      method="inverted_cdf"))
        edges[-1] = np.nextafter(edges[-1], np.inf)
    counts = np.bincount(_bin_index(edges, finite), minlength=edges.size - 1)
    return NumericProfile([float(e) for e in edges], [int(c) for c in counts], int(data.size),
                          nulls, float(finite.min()), float(finite.max()))


def _bin_index(edges: np.ndarray, finite: np.ndarray) -> np.ndarray:
    """The bin of each value: bins are closed on the left, the last one on both sides;
    values outside the edges go to the first or last bin."""
    return np.searchsorted(edges[1:-1], finite, side="right")


def bin_counts(profile: NumericProfile, values: Sequence[float] | np.ndarray) -> list[int]:
    """Counts of ``values`` (nulls left out) in the reference bins of ``profile``."""
    data = np.asarray(values, dtype=np.float64)
    finite = data[np.isfinite(data)]
    if not profile.edges:
        return []
    edges = np.asarray(profile.edges)
    return [int(c) for c in np.bincount(_bin_index(edges, finite), minlength=edges.size - 1)]


def categorical_profile(values: Sequence[str | None],
                        max_categories: int = MAX_CATEGORIES) -> CategoricalProfile:
    """Category frequencies of ``values``: the most frequent ``max_categories`` by name,
    the rest in the unknown bucket."""
    counts: dict[str, int] = {}
    nulls = 0
    for value in values:
        if value is None:
            nulls += 1
        else:
            counts[value] = counts.get(value, 0) + 1
    return categorical_from_counts(counts, nulls, max_categories)


def category_counts(column: Any) -> tuple[dict[str, int], int]:
    """Category counts of an Arrow string column (nulls apart), counted by Arrow, and its
    nulls. Dictionary-encoded columns are counted by code, without a string per row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    plain = column if pa.types.is_dictionary(column.type) else column.cast(pa.string())
    counts = {str(entry["values"]): int(entry["counts"])
              for entry in pc.value_counts(plain).to_pylist() if entry["values"] is not None}
    return counts, int(column.null_count)


def categorical_from_counts(counts: Mapping[str, int], nulls: int,
                            max_categories: int = MAX_CATEGORIES) -> CategoricalProfile:
    """A categorical profile from value counts already made (e.g. by Arrow)."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = dict(ranked[:max_categories])
    unknown = sum(c for _, c in ranked[max_categories:])
    return CategoricalProfile(kept, unknown, sum(counts.values()) + nulls, nulls)


def psi(reference: Sequence[int], current: Sequence[int], epsilon: float = EPSILON) -> float:
    """Population stability index of ``current`` counts against ``reference`` counts of the
    same bins, each share floored at ``epsilon``; 0 when either side has no rows."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.shape != cur.shape:
        raise InvalidInputError(f"PSI needs counts of the same bins ({ref.size} vs {cur.size})")
    if ref.sum() == 0 or cur.sum() == 0:
        return 0.0
    p = np.maximum(ref / ref.sum(), epsilon)
    q = np.maximum(cur / cur.sum(), epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def build_profile(numeric: Mapping[str, np.ndarray], categorical: Mapping[str, Mapping[str, int]],
                  category_nulls: Mapping[str, int], scores: np.ndarray, *, table: str,
                  snapshot_id: int, fingerprint: str, rows: int, scores_from: str,
                  bins: int = BINS) -> ReferenceProfile:
    """The profile of a snapshot's feature columns and a model's scores.

    Args:
        numeric: Each numeric feature's values as float64 (NaN for null).
        categorical: Each string feature's category counts.
        category_nulls: Each string feature's null count.
        scores: The model's positive-class probabilities on the rows ``scores_from`` says.
    """
    return ReferenceProfile(
        table=table, snapshot_id=snapshot_id, fingerprint=fingerprint, rows=rows,
        numeric={name: numeric_profile(values, bins) for name, values in numeric.items()},
        categorical={name: categorical_from_counts(counts, category_nulls.get(name, 0))
                     for name, counts in categorical.items()},
        scores=numeric_profile(scores, bins), scores_from=scores_from, bins=bins,
    )

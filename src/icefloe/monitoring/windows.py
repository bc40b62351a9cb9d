"""Metrics of a window of a deployment's predictions (pure: Arrow columns in, figures out).

A window is a time span (``1h``, ``30m``, ``1d``) ending now, or the last N predictions
(``500``). Per window: request count, error rate (calls answered with an error, counted
per minute by the gateway) and latency p50/p99; prediction drift (PSI of the
scores against the reference's test scores); per feature the drift figures of
:mod:`icefloe.monitoring.drift`; and, over the predictions whose ground truth arrived, label
coverage, accuracy, AUC, precision, recall and F1. A figure measured on fewer than the
minimum samples is reported as ``insufficient``, never as drift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from icefloe.errors import InvalidInputError
from icefloe.monitoring.drift import Figure, categorical_drift, numeric_drift
from icefloe.monitoring.export import column_name
from icefloe.monitoring.profile import ReferenceProfile, bin_counts, category_counts, psi

if TYPE_CHECKING:
    import pyarrow as pa

MIN_SAMPLES = 100
UNITS_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}
PSI_LEVELS = ((0.1, "stable"), (0.25, "moderate"))  # above the last: "significant"


@dataclass(frozen=True)
class Window:
    """A time span ending now (``span_ms``), or the last ``last`` predictions."""

    text: str
    span_ms: int | None = None
    last: int | None = None


def parse_window(text: str) -> Window:
    """``30m``, ``1h``, ``7d`` (a span ending now) or ``500`` (the last 500 predictions).

    Raises:
        InvalidInputError: Anything else.
    """
    found = re.fullmatch(r"\s*(\d{1,7})\s*([mhd]?)\s*", text or "")
    if not found or int(found.group(1)) == 0:
        raise InvalidInputError(f"window {text!r} is not a span like 30m, 1h or 7d, nor a "
                                "number of predictions like 500")
    amount, unit = int(found.group(1)), found.group(2)
    if unit:
        return Window(text.strip(), span_ms=amount * UNITS_MS[unit])
    return Window(text.strip(), last=amount)


def psi_level(value: float) -> str:
    """The usual reading of a PSI: stable, moderate or significant."""
    return next((name for limit, name in PSI_LEVELS if value < limit), "significant")


def window_figures(rows: pa.Table, profile: ReferenceProfile | None,
                   errors: int = 0) -> list[Figure]:
    """Every figure of a window's rows (columns of ``monitoring.predictions``); ``errors``
    is the number of calls answered with an error in the window's minutes."""
    n = rows.num_rows
    calls = n + errors
    figures = [Figure("requests", float(n), n),
               Figure("error_rate", errors / calls if calls else None, calls)]
    latency = rows.column("latency_ms").to_numpy(zero_copy_only=False).astype(np.float64)
    figures += [Figure("latency_p50_ms", float(np.percentile(latency, 50)) if n else None, n),
                Figure("latency_p99_ms", float(np.percentile(latency, 99)) if n else None, n)]
    scores = rows.column("score").to_numpy(zero_copy_only=False).astype(np.float64)
    if profile is not None and profile.scores.edges:
        counts = bin_counts(profile.scores, scores)
        figures.append(Figure("prediction_psi", psi(profile.scores.counts, counts),
                              sum(counts)))
    if profile is not None:
        for name, ref in profile.numeric.items():
            column = column_name(name)
            if column in rows.column_names:
                values = rows.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
                figures += numeric_drift(name, ref, values)
        for name, cat in profile.categorical.items():
            column = column_name(name)
            if column in rows.column_names:
                categories, nulls = category_counts(rows.column(column))
                figures += categorical_drift(name, cat, categories, nulls)
    figures += _quality(rows, scores)
    return figures


def _quality(rows: pa.Table, scores: np.ndarray) -> list[Figure]:
    from icefloe.ml.evaluation import evaluate

    truth = rows.column("truth").to_numpy(zero_copy_only=False).astype(np.float64)
    known = np.isfinite(truth) & np.isfinite(scores)
    labelled = int(known.sum())
    figures = [Figure("label_coverage", labelled / rows.num_rows if rows.num_rows else None,
                      rows.num_rows)]
    if not labelled:
        return figures
    ev = evaluate(truth[known], scores[known])
    both = len(set(truth[known].tolist())) == 2  # AUC needs both classes
    return figures + [Figure("accuracy", ev.accuracy, labelled),
                      Figure("auc", ev.auc if both else None, labelled),
                      Figure("precision", ev.precision, labelled),
                      Figure("recall", ev.recall, labelled),
                      Figure("f1", ev.f1, labelled)]


def judged(figure: Figure, min_samples: int = MIN_SAMPLES) -> dict[str, Any]:
    """A figure with its status: ``insufficient`` below the minimum samples, else ``ok``,
    and for a PSI its usual reading."""
    out = figure.to_dict()
    if figure.metric != "requests" and figure.samples < min_samples:
        out["status"] = "insufficient"
    elif figure.value is None:
        out["status"] = "n/a"
    else:
        out["status"] = "ok"
    if figure.metric.endswith("psi") and figure.value is not None and out["status"] == "ok":
        out["reading"] = psi_level(figure.value)
    return out

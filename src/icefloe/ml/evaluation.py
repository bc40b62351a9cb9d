"""Binary classification metrics and curves from labels and scores (pure numpy).

Plots are drawn with matplotlib's object-oriented API straight into PNG files (no pyplot, no
global backend, nothing shown on screen), so they can be drawn in any thread.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Evaluation:
    """Test-split metrics at the 0.5 threshold, plus the curves' points."""

    auc: float
    pr_auc: float
    accuracy: float
    precision: float
    recall: float
    f1: float
    tn: int
    fp: int
    fn: int
    tp: int
    rows: int
    positive_rate: float

    def metrics(self) -> dict[str, float]:
        """Scalar metrics for MLflow (confusion cells included)."""
        return {k: float(v) for k, v in asdict(self).items()}

    def confusion_matrix(self) -> list[list[int]]:
        """[[tn, fp], [fn, tp]]: rows are the true class, columns the predicted class."""
        return [[self.tn, self.fp], [self.fn, self.tp]]


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates over all thresholds (ties handled together)."""
    order = np.argsort(-scores, kind="mergesort")
    y, s = labels[order], scores[order]
    distinct = np.r_[np.where(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    pos, neg = max(y.sum(), 1), max(len(y) - y.sum(), 1)
    return np.r_[0.0, fps / neg], np.r_[0.0, tps / pos]


def pr_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision over all thresholds."""
    order = np.argsort(-scores, kind="mergesort")
    y, s = labels[order], scores[order]
    distinct = np.r_[np.where(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(y)[distinct]
    predicted = distinct + 1
    recall = tps / max(y.sum(), 1)
    precision = tps / predicted
    return np.r_[0.0, recall], np.r_[1.0, precision]


def evaluate(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> Evaluation:
    """Compute the metrics of positive-class ``scores`` against 0/1 ``labels``."""
    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    fpr, tpr = roc_curve(y, s)
    recall_pts, precision_pts = pr_curve(y, s)
    predicted = s >= threshold
    tp = int(np.sum(predicted & (y == 1)))
    fp = int(np.sum(predicted & (y == 0)))
    fn = int(np.sum(~predicted & (y == 1)))
    tn = int(np.sum(~predicted & (y == 0)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Evaluation(
        auc=float(np.trapezoid(tpr, fpr)),
        pr_auc=float(np.sum(np.diff(recall_pts) * precision_pts[1:])),
        accuracy=(tp + tn) / len(y) if len(y) else 0.0,
        precision=precision,
        recall=recall,
        f1=f1,
        tn=tn,
        fp=fp,
        fn=fn,
        tp=tp,
        rows=len(y),
        positive_rate=float(y.mean()) if len(y) else 0.0,
    )


def save_curves(labels: np.ndarray, scores: np.ndarray, folder: Path, title: str) -> list[Path]:
    """Write ``roc_curve.png`` and ``pr_curve.png`` into ``folder``; returns their paths."""
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    ev = evaluate(y, s)
    paths = []
    fpr, tpr = roc_curve(y, s)
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot(fpr, tpr, label=f"AUC = {ev.auc:.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC — {title}")
    ax.legend(loc="lower right")
    paths.append(folder / "roc_curve.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    recall, precision = pr_curve(y, s)
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot(recall, precision, label=f"PR AUC = {ev.pr_auc:.3f}")
    ax.axhline(ev.positive_rate, linestyle="--", color="grey", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title=f"Precision-recall — {title}")
    ax.legend(loc="upper right")
    paths.append(folder / "pr_curve.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    return paths

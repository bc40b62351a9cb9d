from pathlib import Path

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from icefloe.ml.evaluation import evaluate, save_curves


def test_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.25).astype(float)
    s = np.round(np.clip(rng.normal(0.3 + 0.3 * y, 0.2), 0, 1), 2)  # ties on purpose
    ev = evaluate(y, s)
    pred = (s >= 0.5).astype(float)
    assert abs(ev.auc - roc_auc_score(y, s)) < 1e-12
    assert abs(ev.pr_auc - average_precision_score(y, s)) < 1e-12
    assert ev.accuracy == accuracy_score(y, pred)
    assert ev.precision == precision_score(y, pred) and ev.recall == recall_score(y, pred)
    assert abs(ev.f1 - f1_score(y, pred)) < 1e-12
    assert ev.confusion_matrix() == confusion_matrix(y, pred).tolist()


def test_curves_are_png_files(tmp_path: Path) -> None:
    y = np.array([0, 1, 0, 1, 1.0])
    paths = save_curves(y, np.array([0.1, 0.8, 0.3, 0.6, 0.4]), tmp_path, "t")
    assert [p.name for p in paths] == ["roc_curve.png", "pr_curve.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)

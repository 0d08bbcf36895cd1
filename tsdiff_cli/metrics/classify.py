"""Scores of ``tsdiff classify``: the usual definitions, computed from a confusion matrix.

- accuracy: share of labelled items predicted right;
- balanced accuracy: mean over the classes present of each class's recall;
- macro-F1: mean over the classes present (in the labels or the predictions) of 2PR / (P + R),
  0 for a class with no true positive;
- RMSE, MAE, R² = 1 − SSE / Σ(y − ȳ)² for numbers, in the target's original units.

Items without a label (class −1, NaN) are left out.
"""

from __future__ import annotations

import numpy as np


def confusion(y: np.ndarray, pred: np.ndarray, classes: int) -> np.ndarray:
    """(classes, classes) counts: row = true class, column = predicted."""
    keep = y >= 0
    return np.bincount(y[keep] * classes + pred[keep], minlength=classes * classes).reshape(classes, classes)


def class_scores(y: np.ndarray, pred: np.ndarray, classes: int) -> dict:
    cm = confusion(np.asarray(y).ravel(), np.asarray(pred).ravel(), classes)
    n = cm.sum()
    true, said, hit = cm.sum(1), cm.sum(0), np.diag(cm)
    present = true > 0
    recall = np.divide(hit, true, out=np.zeros(classes), where=true > 0)
    precision = np.divide(hit, said, out=np.zeros(classes), where=said > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(classes), where=precision + recall > 0)
    seen = present | (said > 0)
    return {"accuracy": float(hit.sum() / n) if n else float("nan"),
            "balanced_accuracy": float(recall[present].mean()) if present.any() else float("nan"),
            "macro_f1": float(f1[seen].mean()) if seen.any() else float("nan"),
            "labelled": int(n), "confusion": cm.tolist()}


def numeric_scores(y: np.ndarray, pred: np.ndarray) -> dict:
    y, pred = np.asarray(y, dtype=np.float64).ravel(), np.asarray(pred, dtype=np.float64).ravel()
    keep = np.isfinite(y)
    y, pred = y[keep], pred[keep]
    if not len(y):
        return {"rmse": float("nan"), "mae": float("nan"), "r2": float("nan"), "labelled": 0}
    err = pred - y
    ss = float(((y - y.mean()) ** 2).sum())
    return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err))),
            "r2": 1 - float((err ** 2).sum()) / ss if ss > 0 else float("nan"), "labelled": int(len(y))}

"""Class-balanced accuracy (paper §3; the code's ``balanced_eval=True``)."""

from __future__ import annotations

import numpy as np


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``y_true``, in percent."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    recalls = [np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]
    return 100.0 * float(np.mean(recalls))


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts [n_classes, n_classes], rows = actual, columns = predicted."""
    out = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(out, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return out


def relative(acc: float, chance: float, reference: float) -> float:
    """Accuracy rescaled so that chance = 0 and ``reference`` = 100 (paper Table 3, Figure 4)."""
    if reference == chance:
        return float("nan")  # the reference itself is at chance: nothing to be relative to
    return 100.0 * (acc - chance) / (reference - chance)

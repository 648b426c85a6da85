"""Baselines beside kennen-o's MLP, on the same features and folds: what the MLP adds.

Suri & Evans (PETS 2022) found cheap non-parametric and linear attacks often as good as
meta-classifiers; at a few hundred training boxes that is the question to ask of ours.

- ``logreg``: a plain multinomial logistic regression per attribute on the standardised
  features (scikit-learn's default L2 penalty, C = 1), no class weights, as kennen-o's MLP.
- ``knn``: the 5-nearest-neighbour rule per attribute on the standardised features
  (Euclidean, majority vote).

Both are deterministic: no seed.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

BASELINES = ("logreg", "knn")


def _model(kind: str):
    if kind == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    if kind == "knn":
        return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=5))
    raise ValueError(f"unknown baseline {kind!r} (one of {', '.join(BASELINES)})")


def fit_predict(kind: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """Predicted label indices [N_test, A] of baseline ``kind`` fitted per attribute on ``x_train`` [N, D],
    ``y_train`` [N, A]. An attribute with a single value among the training boxes predicts that value."""
    x_train, x_test = np.asarray(x_train, np.float64), np.asarray(x_test, np.float64)
    out = np.zeros((len(x_test), y_train.shape[1]), dtype=np.int64)
    for a in range(y_train.shape[1]):
        values = np.unique(y_train[:, a])
        if len(values) == 1:
            out[:, a] = values[0]
            continue
        out[:, a] = _model(kind).fit(x_train, y_train[:, a]).predict(x_test)
    return out


def task(job: tuple[int, str, np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """A parallel task (module level, picklable): ``fit_predict`` of (id, kind, x_train, y_train, x_test)."""
    return fit_predict(*job[1:])

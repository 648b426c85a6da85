"""Baselines beside kennen-o's MLP, on the same features and folds: what the MLP adds.

Suri & Evans (PETS 2022) found cheap non-parametric and linear attacks often as good as
meta-classifiers; at a few hundred training boxes that is the question to ask of ours.

- ``logreg``: a plain multinomial logistic regression per attribute on the standardised
  features (scikit-learn's default L2 penalty, C = 1), no class weights, as kennen-o's MLP.
- ``knn``: the 5-nearest-neighbour rule per attribute on the standardised features
  (Euclidean, majority vote).

Both are deterministic: no seed. :func:`fit_proba` also gives class probabilities, for these and
for the smaller families the ``levers`` stage compares (``FAMILIES``):

- ``pca_logreg``: the logistic regression on the first ``pca_dim`` principal components of the
  standardised features (a linear model on a low-dimensional projection);
- ``centroid``: the nearest class centroid per attribute on the standardised features (Euclidean); its
  probabilities, which only the valid-configuration decoding reads, are a softmax of minus the mean
  squared distance per feature (the argmax is the nearest centroid whatever the scale).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

BASELINES = ("logreg", "knn")  # beside kennen-o's MLP in the kennen_o stage
FAMILIES = ("logreg", "pca_logreg", "centroid", "knn")  # everything fit_proba knows


class _NearestCentroid(ClassifierMixin, BaseEstimator):
    """Nearest class mean, Euclidean, with probabilities that agree with it.

    scikit-learn's ``NearestCentroid.predict_proba`` scales the features by a pooled within-class
    spread that ``predict`` does not use (so the two disagree), and that spread is undefined when
    every class has one box.
    """

    def fit(self, x: np.ndarray, y: np.ndarray) -> _NearestCentroid:
        self.classes_ = np.unique(y)
        self.centroids_ = np.stack([x[y == c].mean(0) for c in self.classes_])  # [K, D]
        return self

    def _scores(self, x: np.ndarray) -> np.ndarray:
        """Minus the mean squared distance per feature to every centroid [N, K]."""
        return -((x[:, None, :] - self.centroids_[None]) ** 2).mean(-1)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[self._scores(x).argmax(1)]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        s = self._scores(x)
        e = np.exp(s - s.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)


def _model(kind: str, pca_dim: int = 50, k: int = 5):
    if kind == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    if kind == "pca_logreg":
        # PCA's randomised solver is seeded: the projection must not change between runs
        pca = PCA(n_components=pca_dim, random_state=0)
        return make_pipeline(StandardScaler(), pca, LogisticRegression(C=1.0, max_iter=2000))
    if kind == "centroid":
        return make_pipeline(StandardScaler(), _NearestCentroid())
    if kind == "knn":
        return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=k))
    raise ValueError(f"unknown baseline {kind!r} (one of {', '.join(FAMILIES)})")


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


def fit_proba(
    kind: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    n_classes: tuple[int, ...],
    pca_dim: int = 50,
    k: int = 5,
) -> list[np.ndarray]:
    """Class probabilities of family ``kind`` fitted per attribute.

    Args:
        x_train, y_train: features [N, D] and label indices [N, A] of the training boxes.
        x_test: features [M, D] of the boxes to predict.
        n_classes: every attribute's number of labels; a label absent from the training boxes gets 0.
        pca_dim: components of ``pca_logreg`` (capped by the training boxes and features).
        k: neighbours of ``knn`` (capped by the training boxes).

    Returns:
        Per attribute, probabilities [M, n_classes[a]] (float64, rows sum to 1).
    """
    x_train, x_test = np.asarray(x_train, np.float64), np.asarray(x_test, np.float64)
    pca_dim = min(pca_dim, len(x_train) - 1, x_train.shape[1])
    out = []
    for a, n in enumerate(n_classes):
        p = np.zeros((len(x_test), n))
        values = np.unique(y_train[:, a])
        if len(values) == 1:
            p[:, values[0]] = 1.0
        else:
            model = _model(kind, pca_dim, min(k, len(x_train))).fit(x_train, y_train[:, a])
            p[:, model.classes_] = model.predict_proba(x_test)
        out.append(p)
    return out


def task(job: tuple[int, str, np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """A parallel task (module level, picklable): ``fit_predict`` of (id, kind, x_train, y_train, x_test).

    On one BLAS thread, as the pool's workers run torch: two workers each starting a thread per core
    oversubscribe the cores (the levers stage, measured on 2 cores: 3 min 19 s against 50 s)."""
    with threadpool_limits(1):
        return fit_predict(*job[1:])


def proba_task(job: tuple[Any, str, np.ndarray, np.ndarray, np.ndarray, tuple[int, ...], int, int]) -> list[np.ndarray]:
    """A parallel task (module level, picklable): ``fit_proba`` of (id, kind, x_train, y_train, x_test, n_classes,
    pca_dim, k), on one BLAS thread (``task``)."""
    with threadpool_limits(1):
        return fit_proba(*job[1:])

"""Choosing kennen-o's queries from a pool of candidates, on the training boxes only.

kennen-o reads the first ``n`` of the ``n_max`` stored queries, a random draw. Here the
``n`` are chosen instead, by what each adds about the attributes to the queries already
chosen (greedy forward selection). Ranking queries one by one (between-box variance, a
per-query Fisher ratio) does worse than the random draw on our zoo: the top of such a
ranking is many near-copies of one kind of query, each telling the same thing.

Criterion: ridge regression of the class indicators (optimal scoring: linear discriminant
analysis is a regression of class indicators on the features, Hastie, Tibshirani & Buja,
JASA 1994). For a set ``S`` of queries with standardised features ``X_S`` [N, 10 |S|] and
an attribute's centred, class-balanced indicators ``Y_a`` [N, K_a] scaled to unit norm,

    R_a(S) = 1 - || Y_a - X_S B ||^2 - lam || B ||^2,  B the ridge solution,
           = 1 - lam tr(Y_a' (X_S X_S' + lam I)^-1 Y_a)

is the share of the attribute's class structure a ridge fit on ``S`` explains (0 for no
query, below 1 always). The score is ``sum_a R_a(S)``, every attribute counting the same, and
the gain of a candidate ``q`` is ``score(S + q) - score(S)``: what ``q`` explains *beyond* the
span of the chosen queries. A copy of a chosen query adds almost nothing (only a little less
shrinkage), a query that separates another attribute adds much. The ridge keeps the score from
reaching 1 once ``10 |S|`` passes the number of boxes, where a plain least-squares fit would
explain everything and every gain would be 0.

Computed in the dual (boxes, not features): ``M = (I + X_S X_S' / lam)^-1`` [N, N] starts at
``I`` and every chosen query is a rank-10 (Woodbury) downdate; every candidate's gain is a
10 x 10 solve, from per-candidate blocks downdated alongside. One step costs
O(N Q C^2 + N^2 C) for Q candidates with C classes: a selection of 100 from 1,000 takes
seconds on one core for N in the hundreds.

Features are log-probabilities, what kennen-o's ``prob`` encoding feeds the metamodel and
what the logistic-regression baseline standardises: selection should score the queries on the
scale the metamodel will read. On probabilities a confident box's outputs all sit near 0 or 1
and the small-class mass, where architectures differ, is invisible.

What it adds to each metamodel family, against the first ``n`` stored queries, is measured by the
``levers`` stage in the cross-validation's folds (``reports/metrics/levers.json``). The criterion, its
log-probability scale and ``ridge`` were chosen by trying them on the default zoo's folds, which the
stage measures on again: its figure for greedy queries is not a clean held-out estimate.

Related work: MetaFinger (Yang et al., IJCAI 2022) also chooses queries for model
fingerprinting, keeping only those that separate well on validation models; that is a
per-query filter, where this criterion scores each query *given* the ones already kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _standardise(x: np.ndarray) -> np.ndarray:
    """Features [N, Q, C] centred and scaled per (query, class) column, float64.

    A column that is constant on the training boxes is zeroed rather than divided by ~0:
    it carries no information and must not gain by noise amplification.
    """
    x = np.asarray(x, np.float64)
    x = x - x.mean(0)
    sd = x.std(0)
    return np.where(sd > 1e-8, x / np.where(sd > 1e-8, sd, 1.0), 0.0)


def _indicators(y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Targets [N, sum K_a]: per attribute, centred class indicators, each class scaled by 1 / sqrt(its size)
    (classes count alike, as the class-balanced accuracy counts them), the block scaled to squared norm
    ``weights[a]`` (attributes count as their weights say, not as their number of classes)."""
    blocks = []
    for a in range(y.shape[1]):
        classes, counts = np.unique(y[:, a], return_counts=True)
        if len(classes) < 2:  # one value among the training boxes: nothing to separate
            continue
        onehot = (y[:, a, None] == classes[None, :]) / np.sqrt(counts)[None, :]
        block = onehot - onehot.mean(0)
        blocks.append(block * np.sqrt(weights[a] / np.sum(block**2)))
    return np.concatenate(blocks, 1) if blocks else np.zeros((len(y), 0))


def _gains(g: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per candidate, ``tr(B_q' (I + G_q)^-1 B_q)``: the drop in ``tr(Y' M Y)`` were ``q`` added.

    Args:
        g: [Q, C, C] blocks ``Z_q' M Z_q``.
        b: [Q, C, K] blocks ``Z_q' M Y``.
    """
    eye = np.eye(g.shape[1])
    solved = np.linalg.solve(eye + g, b)
    return np.einsum("qck,qck->q", b, solved)


def select_queries(
    x: np.ndarray,
    y: np.ndarray,
    n: int,
    ridge: float = 1.0,
    weights: Sequence[float] | None = None,
) -> np.ndarray:
    """Choose ``n`` of the candidate queries greedily, each the one that adds most to the ridge score.

    The caller passes the *training* boxes only: nothing else is read, so the test boxes cannot
    steer the choice. Deterministic: ties go to the lower query index.

    Args:
        x: [N_train, Q, C] outputs of the training boxes on the Q candidate queries, as the metamodel
            will read them (log-probabilities for kennen-o's ``prob``).
        y: [N_train, A] label indices of the attributes to inform (any subset of the 12, any order).
        n: how many queries to choose, 0 to Q.
        ridge: the ridge penalty on the correlation scale (``lam = ridge * N_train``): larger shrinks more,
            so that a copy of a chosen query gains less and a redundant fit saturates later.
        weights: per attribute (column of ``y``), its share of the score; default equal shares.

    Returns:
        [n] int64 query indices, in the order chosen (the first ``k`` are the selection of ``k``).
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 3 or y.ndim != 2 or len(x) != len(y):
        raise ValueError(f"expected x [N, Q, C] and y [N, A] with the same N, got {x.shape} and {y.shape}")
    n_boxes, n_queries, n_classes = x.shape
    if not 0 <= n <= n_queries:
        raise ValueError(f"n must be within 0..{n_queries} (the candidates), got {n}")
    if ridge <= 0:
        raise ValueError(f"ridge must be positive, got {ridge}")
    if not np.isfinite(x).all():  # a NaN gain would be argmax's pick without a word
        raise ValueError("x holds NaN or infinite outputs")
    w = np.ones(y.shape[1]) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (y.shape[1],) or np.any(w < 0):
        raise ValueError(f"weights must be {y.shape[1]} non-negative numbers, got {w}")

    # Scaled by 1 / sqrt(lam), so that M = (I + Z_S Z_S')^-1 and the score drop is tr(Y' M Y).
    z = _standardise(x) / np.sqrt(ridge * n_boxes)
    flat = z.reshape(n_boxes, n_queries * n_classes)
    targets = _indicators(y, w)
    m = np.eye(n_boxes)
    g = np.einsum("nqc,nqd->qcd", z, z)  # Z_q' M Z_q with M = I
    b = np.einsum("nqc,nk->qck", z, targets)  # Z_q' M Y
    chosen = np.zeros(n_queries, bool)
    order: list[int] = []
    for _ in range(n):
        gain = _gains(g, b)
        # A chosen query would still "gain" by halving its own shrinkage: never take it twice.
        gain[chosen] = -np.inf
        q = int(np.argmax(gain))  # first maximum: ties go to the lower index
        order.append(q)
        chosen[q] = True
        # Woodbury: M <- M - U U' with U = M Z_q L^-T, L L' = I + Z_q' M Z_q.
        chol = np.linalg.cholesky(np.eye(n_classes) + g[q])
        u = np.linalg.solve(chol, (m @ z[:, q]).T).T  # [N, C]
        v = (u.T @ flat).reshape(n_classes, n_queries, n_classes).transpose(1, 0, 2)  # U' Z_q per candidate
        m -= u @ u.T
        g -= np.einsum("qkc,qkd->qcd", v, v)
        b -= np.einsum("qkc,kj->qcj", v, u.T @ targets)
    return np.asarray(order, dtype=np.int64)

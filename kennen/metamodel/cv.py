"""Cross-validation over configurations: out-of-fold predictions and the ``cv`` block of a metrics file.

Every metamodel is trained K times, once per fold of ``data/splits/folds.json``
(``kennen.splits.config_folds``), on the other folds' boxes, and predicts its own fold's boxes:
every box of the zoo is predicted once, by a metamodel that never saw its configuration.
The folds' predictions, put back in box order, are the *out-of-fold* predictions; their
accuracies are the headline, reported two ways (``kennen.stats``):

- ``cv.acc.<key>``: over boxes, every box counts once (the paper's averaging);
- ``cv.acc_config.<key>``: over configurations, every configuration counts once.

Both carry 95% intervals that resample configurations, and the block says how many boxes
and configurations were tested (``cv.n_boxes``, ``cv.n_configs``) in how many folds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kennen import stats


def out_of_fold(folds: Sequence[Sequence[int]], per_fold: Sequence[np.ndarray], n_boxes: int) -> np.ndarray:
    """Rows of ``per_fold[f]`` [len(folds[f]), ...] put back at their box ids: [n_boxes, ...]."""
    first = np.asarray(per_fold[0])
    out = np.zeros((n_boxes, *first.shape[1:]), dtype=first.dtype)
    seen = np.zeros(n_boxes, dtype=bool)
    for fold, rows in zip(folds, per_fold, strict=True):
        out[list(fold)] = rows
        seen[list(fold)] = True
    if not seen.all():
        raise ValueError(f"out_of_fold: {int((~seen).sum())} boxes are in no fold")
    return out


def checkpoint_rows(train: Sequence[int], checkpoint_box: np.ndarray) -> np.ndarray:
    """The checkpoint boxes a metamodel trained on the boxes ``train`` may learn from: those of their models.

    ``checkpoint_box`` [K] is each checkpoint box's final box (``kennen.queries.CheckpointBoxes.box``). A
    checkpoint has its model's configuration, so it sits in its model's fold: never beside a test box of
    its configuration.
    """
    return np.flatnonzero(np.isin(checkpoint_box, np.asarray(list(train), dtype=np.int64)))


def fold_of(folds: Sequence[Sequence[int]], n_boxes: int) -> np.ndarray:
    """The fold of every box [n_boxes] (int64), from the folds' box ids."""
    out = np.full(n_boxes, -1, dtype=np.int64)
    for f, fold in enumerate(folds):
        out[list(fold)] = f
    if (out < 0).any():
        raise ValueError(f"fold_of: {int((out < 0).sum())} boxes are in no fold")
    return out


def units_of(boxes: Sequence[dict[str, Any]], ids: Sequence[int] | None = None) -> list[Any]:
    """The configuration of each box (of ``ids``, or of every box): the bootstrap's unit."""
    rows = boxes if ids is None else [boxes[i] for i in ids]
    return [b["config"] for b in rows]


def metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    units: Sequence[Any],
    seed: int,
    keys: Sequence[str] | None = None,
    prefix: str = "cv",
) -> dict[str, float]:
    """The ``<prefix>`` block: accuracies over boxes and over configurations with intervals, and the counts."""
    out = stats.scored(y_true, y_pred, units, keys, per_config=False, seed=seed, prefix=f"{prefix}.acc")
    out |= stats.scored(y_true, y_pred, units, keys, per_config=True, seed=seed, prefix=f"{prefix}.acc_config")
    return out | {f"{prefix}.n_boxes": len(y_true), f"{prefix}.n_configs": len(set(map(str, units)))}


def seed_metrics(
    y_true: np.ndarray, preds: Sequence[np.ndarray], units: Sequence[Any], prefix: str = "cv.seeds"
) -> dict[str, float]:
    """Spread of the out-of-fold means over metamodel seeds: ``<prefix>.acc.mean`` and ``.acc_config.mean``
    with sd and 95% t-interval (``_sd``, ``_low``, ``_high``; the sd and interval need two seeds)."""
    out: dict[str, float] = {f"{prefix}.n": len(preds)}
    for name, per_config in (("acc", False), ("acc_config", True)):
        means = [stats.accuracies(y_true, p, units=units, per_config=per_config)["mean"] for p in preds]
        s = stats.seed_interval(means)
        out[f"{prefix}.{name}.mean"] = s["mean"]
        if len(preds) > 1:
            out |= {f"{prefix}.{name}.mean_{k}": s[k] for k in ("sd", "low", "high")}
    return out


def paired(
    y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, units: Sequence[Any], seed: int, prefix: str
) -> dict[str, float]:
    """``a`` minus ``b`` on the same boxes, over boxes and over configurations, each with its paired interval."""
    out = {}
    for name, per_config in (("acc", False), ("acc_config", True)):
        d = stats.paired_difference(y_true, pred_a, pred_b, units, per_config=per_config, seed=seed)
        out |= {f"{prefix}.{name}.{k}": v for k, v in d.items()}
    return out

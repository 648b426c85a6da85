"""kennen-i (paper §5): crafted queries that make the digit classifier answer an attribute with its top-1 label.

For each attribute ``a`` with ``k`` values, one query image ``x_a`` is optimised
over the training black boxes so that a box whose value is the ``j``-th (in
Table 1's order) answers digit ``j``:

    min_x  E_f [ L(f(x_a), j) ]       (projected, noisy SGD in image space; ``crafted.QueryStep``)

At test time the box is asked ``x_a`` and only its **top-1 label** ``d`` is
read: the prediction is value ``d`` when ``d < k``; a label outside the
attribute's range carries no value, and the prediction falls back to the
attribute's most frequent training value (counted as such in the metrics).

Options (``params.yaml``, ``kennen_i``):

- ``loss: digits`` (default) is the paper's L: cross-entropy over all 10
  digits, the objective that matches a top-1 read-out. ``first_k`` is the
  official code's: cross-entropy over the first ``k`` log-probabilities,
  renormalised (the code also predicts by the argmax over those ``k``, which
  reads more than the top-1 label; we never do).
- ``target: each`` (default) is the paper's one query per attribute;
  ``all`` is the official ``run.py``'s single query optimised for all 12
  attributes at once, every attribute reading the same label.

Cross-validation (ours, the headline): every target is crafted once per fold of
``data/splits/folds.json`` on the other folds' boxes and read on its own fold's boxes, so
every box is predicted once by crafted images that never saw its configuration
(``kennen.metamodel.cv``). The images saved for ``kennen whiten`` are crafted on every box
(``crafted.ALL_BOXES``): they learn from the most boxes, and the folds measure how images
crafted that way do on configurations they have not seen. Their confidence is the label
table of ``calibration.label_table`` fitted on the out-of-fold answers of every box
(:func:`calibrate_out_of_fold`): the digit ``j`` names value ``j`` in every fold's images,
so a table learnt from the folds' answers reads the all-box images' answers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from kennen import stats
from kennen.attributes import ATTRIBUTES
from kennen.config import bounded, require
from kennen.metamodel.calibration import (
    Calibrated,
    CalibrationParams,
    choose_threshold,
    cross_fitted_report,
    label_table,
    one_hot,
    table_confidence,
)
from kennen.metamodel.crafted import BoxZoo, QueryStep, ZooSource, to_pixels
from kennen.metamodel.kennen_o import targets

TARGETS = ("each", "all")
LOSSES = ("digits", "first_k")


@dataclass(frozen=True)
class KennenIParams:
    """``kennen_i`` section of params.yaml."""

    target: str = "each"
    loss: str = "digits"
    epochs: int = bounded(10_000, 200)  # passes over the training boxes (official: 200)
    step: QueryStep = field(default_factory=QueryStep)
    variants: tuple[str, ...] = ()  # extra targets to run and report next to the headline, e.g. [all]

    def check(self, where: str) -> None:
        require(self.target in TARGETS, f"{where}.target", f"expected one of {', '.join(TARGETS)}, got {self.target!r}")
        require(self.loss in LOSSES, f"{where}.loss", f"expected one of {', '.join(LOSSES)}, got {self.loss!r}")
        require(self.epochs >= 1, f"{where}.epochs", f"must be at least 1, got {self.epochs}")
        for v in self.variants:
            require(v in TARGETS, f"{where}.variants", f"{v!r} is not one of {', '.join(TARGETS)}")
        self.step.check(f"{where}.step")


def n_images(target: str) -> int:
    """Crafted images for a target: one per attribute, or one for all."""
    return len(ATTRIBUTES) if target == "each" else 1


def attribute_loss(log_probs: torch.Tensor, y: torch.Tensor, target: str, loss: str) -> torch.Tensor:
    """Sum over attributes of the mean cross-entropy between the boxes' answers and the value indices.

    ``log_probs`` [B, A, 10]: the boxes' log-probabilities on the A crafted images; ``y`` [B, 12].
    """
    total = log_probs.new_zeros(())
    for i, a in enumerate(ATTRIBUTES):
        out = log_probs[:, i if target == "each" else 0]
        if loss == "first_k":
            out = F.log_softmax(out[:, : a.n_classes], dim=1)
        total = total + F.nll_loss(out, y[:, i])
    return total


def craft(
    zoo: BoxZoo,
    boxes: Sequence[int],
    y: torch.Tensor,
    init: torch.Tensor,
    params: KennenIParams,
    seed: int,
    target: str | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    on_step: Callable[[torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Crafted images [A, 1, 28, 28] (normalised) learned on ``boxes`` of ``zoo`` with labels ``y`` [N, 12].

    ``init`` holds at least A starting images. ``on_step`` sees the images after every update (tests).
    """
    target = target or params.target
    x = init[: n_images(target)].clone().requires_grad_(True)
    boxes = list(boxes)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(params.epochs):
        total = 0.0
        for batch in torch.randperm(len(boxes), generator=gen).split(params.step.batch):
            loss = attribute_loss(zoo(x, [boxes[i] for i in batch.tolist()]), y[batch], target, params.loss)
            loss.backward()
            params.step.apply(x, gen)
            total += float(loss.detach()) * len(batch)
            if on_step is not None:
                on_step(x.detach())
        if on_epoch is not None:
            on_epoch(epoch, total / len(boxes))
    return x.detach()


def fallback_values(y_train: np.ndarray) -> np.ndarray:
    """Per attribute, the most frequent value index among the training boxes (ties: the smallest)."""
    return np.array([np.bincount(y_train[:, i], minlength=a.n_classes).argmax() for i, a in enumerate(ATTRIBUTES)])


def predict(labels: np.ndarray, fallback: np.ndarray, target: str) -> np.ndarray:
    """Value indices [B, 12] from the boxes' top-1 labels [B, A] on the crafted images, and nothing else."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError("kennen-i reads top-1 labels (integers), not scores")
    out = np.empty((len(labels), len(ATTRIBUTES)), dtype=np.int64)
    for i, a in enumerate(ATTRIBUTES):
        d = labels[:, i if target == "each" else 0]
        out[:, i] = np.where(d < a.n_classes, d, fallback[i])
    return out


def in_range(labels: np.ndarray, target: str) -> float:
    """Share (%) of (box, attribute) answers that name a valid value of the attribute."""
    hits = [labels[:, i if target == "each" else 0] < a.n_classes for i, a in enumerate(ATTRIBUTES)]
    return round(100.0 * float(np.mean(hits)), 2)


def evaluate_labels(zoo: BoxZoo, x: torch.Tensor, boxes: Sequence[int]) -> np.ndarray:
    """Top-1 labels [B, A] of ``boxes`` on the crafted images (all the boxes reveal to kennen-i)."""
    boxes = list(boxes)
    if not boxes:
        return np.zeros((0, len(x)), dtype=np.int64)
    return zoo.outputs(x, boxes).argmax(-1).numpy()


def run_target(
    target: str,
    source: ZooSource,
    train_ids: Sequence[int],
    test_ids: Sequence[int],
    init: np.ndarray,
    params: KennenIParams,
    seed: int,
) -> dict[str, Any]:
    """Executor entry point: craft for ``target`` on the training boxes, answer with the test boxes' top-1 labels.

    Returns the images (pixels), the fallback values, the test boxes' labels, truths and predictions,
    every training box's labels (``train_labels``, the out-of-zoo reference of the all-box images) and
    the loss per epoch. Without test boxes (the all-box images) the test entries are empty.
    """
    torch.set_num_threads(1)  # the same arithmetic on every executor (in-process, process pool, Dask)
    ids = [*train_ids, *test_ids]
    zoo = source.load(ids)
    y = targets([source.boxes[i] for i in ids])
    n = len(train_ids)
    losses: list[float] = []
    x = craft(
        zoo,
        range(n),
        y[:n],
        init=torch.from_numpy(init),
        params=params,
        seed=seed,
        target=target,
        on_epoch=lambda _, loss: losses.append(loss),
    )
    labels = evaluate_labels(zoo, x, range(n, len(ids)))
    fallback = fallback_values(y[:n].numpy())
    return {
        "target": target,
        "images": to_pixels(x),
        "fallback": fallback,
        "test": list(test_ids),
        "labels": labels,
        "y_true": y[n:].numpy(),
        "y_pred": predict(labels, fallback, target),
        "train_labels": evaluate_labels(zoo, x, range(n)),
        "losses": losses,
    }


def run_task(
    task: tuple[str, str],
    source: ZooSource,
    splits: dict[str, dict[str, list[int]]],
    init: np.ndarray,
    params: KennenIParams,
    seed: int,
) -> dict[str, Any]:
    """Executor entry point of the stage: ``task`` = (target, split), ``run_target`` on that split."""
    target, name = task
    split = splits[name]
    return run_target(target, source, split["train"], split["test"], init=init, params=params, seed=seed)


def cost(target: str, n_train: int) -> int:
    """Relative cost of crafting (images times training boxes: every epoch passes each box on each image)."""
    return n_images(target) * n_train


def tasks(order: Sequence[str], splits: dict[str, dict[str, list[int]]], names: Sequence[str]) -> list[tuple[str, str]]:
    """The stage's tasks (target, split) for every target in ``order`` and split in ``names``, the longest
    first (``cost``), so that on a pool of two workers the last to finish idles least."""
    todo = [(t, name) for t in order for name in names]
    return sorted(todo, key=lambda t: -cost(t[0], len(splits[t[1]]["train"])))  # stable on ties


def scores(result: dict[str, Any], units: Sequence[Any], seed: int) -> dict[str, float]:
    """A target's balanced accuracies (``acc.<attribute>``, ``acc.mean``) with their 95% intervals over the test
    boxes' configurations ``units`` (``_low``/``_high``; ``kennen.stats``, bootstrap seed ``seed``)."""
    return stats.scored(result["y_true"], result["y_pred"], units, seed=seed)


def per_attribute(labels: np.ndarray) -> np.ndarray:
    """Labels [N, 12], one per attribute: a single query for all (target ``all``) is read by every attribute."""
    labels = np.asarray(labels)
    return labels if labels.shape[1] == len(ATTRIBUTES) else np.repeat(labels, len(ATTRIBUTES), axis=1)


def calibrate_out_of_fold(
    labels: np.ndarray,
    y_pred: np.ndarray,
    y_true: np.ndarray,
    fold_of: np.ndarray,
    units: Sequence[Any],
    reference: np.ndarray,
    params: CalibrationParams,
    seed: int,
    name: str,
) -> Calibrated:
    """kennen-i's label table fitted on the out-of-fold answers of every box, for the all-box images.

    Args:
        labels: each box's top-1 labels [N, A] on the images crafted without its fold; y_pred, y_true: the
            values read from them and the truth [N, 12]; fold_of: each box's fold [N]; units: each box's
            configuration (the ECE intervals' unit).
        reference: every box's labels [N, A] on the all-box images: the out-of-zoo reference saved with them.
        params, seed, name: as ``calibration.calibrate_out_of_fold``.

    As ``calibration.calibrate_out_of_fold`` does for temperatures: what is saved (the table, the abstention
    threshold, the out-of-zoo threshold) is fitted on all boxes; what is reported is cross-fitted, so that
    no box scores a table fitted on itself: fold f's answers take their confidence from a table of the other
    folds' answers, are answered or not by a threshold chosen on the other folds, and are flagged out of the
    zoo against the other folds' boxes. Uncalibrated, every answer has confidence 1.
    """
    fold_of = np.asarray(fold_of)
    per, ok = per_attribute(labels), np.asarray(y_pred) == np.asarray(y_true)
    ref = one_hot(reference)
    conf_after = np.zeros(ok.shape)
    judged_by = np.zeros(len(ok))  # the abstention threshold each box is judged by: its fold's
    for f in np.unique(fold_of):
        inside, outside = fold_of == f, fold_of != f
        table_f = label_table(per[outside], ok[outside])
        conf_after[inside] = table_confidence(table_f, per[inside])
        judged_by[inside] = choose_threshold(
            table_confidence(table_f, per[outside]), ok[outside], params.target_accuracy
        )
    table = label_table(per, ok)
    m, rows, rc, threshold, limit = cross_fitted_report(
        name, np.ones(ok.shape), conf_after, ok, judged_by, ref, fold_of, units, params, seed
    )
    tensors = {"calibration.table": torch.tensor(table, dtype=torch.float32), "ood.reference": torch.from_numpy(ref)}
    fitted_on = f"the out-of-fold answers of all {len(ok)} boxes ({len(np.unique(fold_of))} folds)"
    return Calibrated(m, rows, rc, threshold, limit, tensors, fitted_on)

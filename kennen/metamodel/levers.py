"""What each way of using the zoo's boxes better adds to kennen-o, in the folds (ours): the ``levers`` stage.

A lever is a metamodel family, a way to pick the queries, or a way to read the answers
(``stages/levers.py`` describes each). :func:`query_sets` picks the queries of every fold on its
training boxes only, :func:`log_probabilities` trains every (family, selection, budget) in every fold
and puts the test folds' log-probabilities back in box order, :func:`lever_rows` scores every
combination and pairs it with the reference row on the same boxes.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from kennen import data as mnist_data
from kennen import stats
from kennen.attributes import ATTRIBUTES
from kennen.config import bounded, require
from kennen.errors import KennenError
from kennen.metamodel import baselines
from kennen.metamodel.cv import out_of_fold
from kennen.metamodel.decode import decode_valid, is_valid
from kennen.metamodel.kennen_o import BOXES, KennenOParams, features, model_seed, targets
from kennen.metamodel.runs import Job, run_jobs, training_rows
from kennen.metamodel.select import select_queries
from kennen.parallel import run_tasks
from kennen.queries import CheckpointBoxes
from kennen.splits import fold_split
from kennen.targets import load_target, parse_answers
from kennen.transfer.boxes import read_boxes as read_transfer_boxes
from kennen.transfer.score import SCORABLE, method_metrics, true_labels

MLPS = ("mlp", "mlp_small")
FAMILIES = (*MLPS, *baselines.FAMILIES)
SELECTIONS = ("first", "greedy")
DECODES = ("argmax", "valid")
N_CLASSES = tuple(a.n_classes for a in ATTRIBUTES)
log = logging.getLogger("kennen.levers")


@dataclasses.dataclass(frozen=True)
class LeversParams:
    """``levers`` section of params.yaml."""

    n_queries: tuple[int, ...] = bounded(10_000, (10, 100))
    families: tuple[str, ...] = FAMILIES
    small_hidden: int = bounded(10_000, 20)
    pca_dim: int = bounded(10_000, 50)
    knn_k: int = bounded(10_000, 5)
    ridge: float = bounded(1e6, 1.0)
    boxes: tuple[str, ...] = ("final",)

    def check(self, where: str) -> None:
        require(len(self.n_queries) >= 1, f"{where}.n_queries", "give at least one query budget")
        require(min(self.n_queries) >= 1, f"{where}.n_queries", f"each must be at least 1, got {self.n_queries}")
        for key in ("n_queries", "families", "boxes"):
            values = getattr(self, key)
            require(len(set(values)) == len(values), f"{where}.{key}", f"has a repeated value: {list(values)}")
        unknown = [f for f in self.families if f not in FAMILIES]
        require(not unknown, f"{where}.families", f"{unknown[:1]} is not in {', '.join(FAMILIES)}")
        require("mlp" in self.families, f"{where}.families", "must hold mlp, the reference row's family")
        unknown = [b for b in self.boxes if b not in BOXES]
        require(not unknown, f"{where}.boxes", f"{unknown[:1]} is not in {', '.join(BOXES)}")
        require("final" in self.boxes, f"{where}.boxes", "must hold final, the reference row's")
        for key in ("small_hidden", "pca_dim", "knn_k"):
            require(getattr(self, key) >= 1, f"{where}.{key}", f"must be at least 1, got {getattr(self, key)}")
        require(self.ridge > 0, f"{where}.ridge", f"must be positive, got {self.ridge}")


def query_sets(
    outputs: np.ndarray, y: np.ndarray, folds: list[list[int]], lp: LeversParams
) -> dict[tuple[str, int, int], np.ndarray]:
    """Query indices per (selection, n, fold). Greedy choices are nested (the first n of the largest)."""
    n_max = max(lp.n_queries)
    if n_max > outputs.shape[1]:
        raise KennenError(f"levers.n_queries: {n_max} exceeds the {outputs.shape[1]} stored queries (queries.n_max)")
    sets = {}
    for f in range(len(folds)):
        train = fold_split(folds, f)["train"]
        with threadpool_limits(1):  # one BLAS thread: near-tied gains must not depend on the machine's cores
            chosen = select_queries(outputs[train], y[train], n_max, ridge=lp.ridge)  # the training fold only
        for n in lp.n_queries:
            sets["first", n, f] = np.arange(n)
            sets["greedy", n, f] = chosen[:n]
    return sets


def log_probabilities(
    outputs: np.ndarray,
    boxes: list[dict[str, Any]],
    folds: list[list[int]],
    sets: dict[tuple[str, int, int], np.ndarray],
    lp: LeversParams,
    kp: KennenOParams,
    seed: int,
    checkpoints: CheckpointBoxes | None = None,
) -> dict[tuple[str, str, int, str], list[np.ndarray]]:
    """Out-of-fold class log-probabilities (per attribute [N, K_a]) of every (family, selection, n, boxes).

    With ``boxes`` ``checkpoints``, a fold's metamodel also learns from the checkpoint boxes of its training
    boxes' models (:func:`kennen.metamodel.cv.checkpoint_rows`); it is tested on final models only.
    """
    if "checkpoints" in lp.boxes and (checkpoints is None or not len(checkpoints.box)):
        raise KennenError("levers.boxes: checkpoints, but the zoo recorded none (set train_zoo.checkpoints)")
    y = targets(boxes)
    keys = list(itertools.product(lp.families, SELECTIONS, lp.n_queries, lp.boxes))
    per_fold: dict[tuple[str, str, int, str, int], list[np.ndarray]] = {}
    mlp_jobs, mlp_keys, sk_jobs = [], [], []
    x_of = {key: features(outputs[:, idx], len(idx), kp.output) for key, idx in sets.items()}  # [N, 10 n] each
    if "checkpoints" in lp.boxes:
        xc_of = {key: features(checkpoints.outputs[:, idx], len(idx), kp.output) for key, idx in sets.items()}
    for fam, sel, n, tb in keys:
        for f in range(len(folds)):
            split = fold_split(folds, f)
            x = x_of[sel, n, f]
            train, test = split["train"], split["test"]
            extra = (checkpoints, xc_of[sel, n, f]) if tb == "checkpoints" else None
            x_train, y_train, groups = training_rows(x, y, boxes, train, extra)
            if fam in MLPS:
                hidden = kp.hidden if fam == "mlp" else lp.small_hidden
                opt, stop = kp.optimisers[kp.optimiser], kp.early_stop
                job = Job(
                    x_train, y_train, x[test], hidden, opt, model_seed(seed), stop, groups=groups, logits=True,
                    n_boxes=len(train),
                )  # fmt: skip
                mlp_jobs.append(job)
                mlp_keys.append((fam, sel, n, tb, f))
            else:
                options = (N_CLASSES, lp.pca_dim, lp.knn_k)
                job = (fam, x_train.numpy(), y_train.numpy(), x[test].numpy(), *options)
                sk_jobs.append(((fam, sel, n, tb, f), *job))
    for key, out in zip(mlp_keys, run_jobs(mlp_jobs), strict=True):
        per_fold[key] = [torch.log_softmax(torch.from_numpy(z), 1).numpy() for z in out["logits"]]
    for job, probs in run_tasks(baselines.proba_task, sk_jobs, len(sk_jobs)):
        with np.errstate(divide="ignore"):  # a probability of 0 is a log-probability of -inf: never chosen
            per_fold[job[0]] = [np.log(p) for p in probs]
    return {
        k: [out_of_fold(folds, [per_fold[(*k, f)][a] for f in range(len(folds))], len(boxes)) for a in range(12)]
        for k in keys
    }


def lever_name(family: str, n_queries: int, selection: str, boxes: str, decode: str) -> str:
    """A lever's row name: ``mlp.q100.first.argmax``, ``logreg.q100.greedy.checkpoints.valid``."""
    return ".".join([family, f"q{n_queries}", selection, *([boxes] if boxes != "final" else []), decode])


def lever_rows(
    log_probs: dict[tuple[str, str, int, str], list[np.ndarray]],
    y: np.ndarray,
    units: list[Any],
    n_reference: int,
    max_members: int,
    seed: int,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Table rows and metrics of every lever, highest first, each paired with the reference row: kennen-o's
    recipe at ``n_reference`` (``kennen_o.n_queries``) queries; a lever trained with checkpoint boxes is also
    paired with the same lever without them (``ckpt_gap``)."""
    reference = lever_name("mlp", n_reference, "first", "final", "argmax")
    preds = {}
    for (fam, sel, n, tb), lq in log_probs.items():
        preds[fam, n, sel, tb, "argmax"] = np.stack([q.argmax(1) for q in lq], 1)
        preds[fam, n, sel, tb, "valid"] = decode_valid(lq, max_members)
    ref = next(p for key, p in preds.items() if lever_name(*key) == reference)
    rows, metrics = [], {"reference": reference, "n_boxes": len(y), "n_configs": len(set(map(str, units)))}
    for (fam, n, sel, tb, dec), pred in preds.items():
        name = lever_name(fam, n, sel, tb, dec)
        over_configs = stats.scored(y, pred, units, per_config=True, seed=seed, prefix="acc_config")
        row = {"lever": name, "family": fam, "n_queries": n, "selection": sel, "boxes": tb, "decode": dec}
        row |= {k: over_configs[f"acc_config.{k}"] for k in ("mean", "mean_low", "mean_high")}
        row["acc_mean"] = stats.accuracies(y, pred, units=units)["mean"]
        gap = stats.paired_difference(y, pred, ref, units, per_config=True, seed=seed)
        row |= {f"gap_{k}": v for k, v in gap.items()}
        row["valid"] = round(100 * float(is_valid(pred, max_members).mean()), 2)
        without = preds.get((fam, n, sel, "final", dec)) if tb == "checkpoints" else None
        ckpt_gap = (
            {} if without is None else stats.paired_difference(y, pred, without, units, per_config=True, seed=seed)
        )
        row |= {f"ckpt_gap_{k}": ckpt_gap.get(k, "") for k in ("diff", "low", "high", "beyond_noise")}
        metrics |= {f"{name}.ckpt_gap.{k}": v for k, v in ckpt_gap.items()}
        rows.append(row)
        metrics |= {f"{name}.acc_config.{k}": row[k] for k in ("mean", "mean_low", "mean_high")}
        metrics |= {f"{name}.acc.mean": row["acc_mean"], f"{name}.valid": row["valid"]}
        metrics |= {f"{name}.gap.{k}": v for k, v in gap.items()}
    rows.sort(key=lambda r: -r["mean"])
    for r in rows[:5]:
        log.info("%s: %.1f [%.1f, %.1f]", r["lever"], r["mean"], r["mean_low"], r["mean_high"])
    return rows, metrics


# --- the levers on the foreign boxes of the transfer stage -----------------------------------------------------------

# The reference's family and the best in the folds: each trained once, on every box.
FOREIGN_FAMILIES = ("mlp", "logreg")


def foreign_outputs(rows: list[dict[str, Any]], box_dir: Path, images: np.ndarray) -> np.ndarray:
    """Log-probabilities [boxes, Q, 10] of the foreign boxes (``.pt2`` programs, inspected) on ``images``."""
    out = []
    for r in rows:
        box = load_target(str(box_dir / r["file"]))
        answers = [box(np.ascontiguousarray(images[i : i + 100])) for i in range(0, len(images), 100)]
        out.append(np.concatenate([parse_answers(a, "logprob", len(a), r["file"]) for a in answers]))
    return np.stack(out).astype(np.float32)


def foreign_levers(
    outputs: np.ndarray,
    boxes: list[dict[str, Any]],
    checkpoints: CheckpointBoxes | None,
    foreign: np.ndarray,
    lp: LeversParams,
    kp: KennenOParams,
    seed: int,
) -> dict[tuple[str, str, str], np.ndarray]:
    """Predicted label indices [F, 12] of the foreign boxes by each (family, selection, training boxes).

    Every metamodel learns from every zoo box (and, with ``checkpoints``, from every checkpoint box), on
    ``kennen_o.n_queries`` queries: the first ones, or chosen greedily on all the zoo's boxes.
    """
    y, n = targets(boxes), kp.n_queries
    with threadpool_limits(1):
        sets = {"first": np.arange(n), "greedy": select_queries(outputs, y.numpy(), n, ridge=lp.ridge)}
    keys = list(itertools.product([f for f in FOREIGN_FAMILIES if f in lp.families], SELECTIONS, lp.boxes))
    jobs, sk_jobs = [], []
    for fam, sel, tb in keys:
        idx = sets[sel]
        x_test = features(foreign[:, idx], n, kp.output)
        extra = (checkpoints, features(checkpoints.outputs[:, idx], n, kp.output)) if tb == "checkpoints" else None
        x, y_train, groups = training_rows(
            features(outputs[:, idx], n, kp.output), y, boxes, list(range(len(boxes))), extra
        )
        if fam == "mlp":
            opt, stop = kp.optimisers[kp.optimiser], kp.early_stop
            job = Job(x, y_train, x_test, kp.hidden, opt, model_seed(seed), stop, groups=groups, n_boxes=len(boxes))
            jobs.append(((fam, sel, tb), job))
        else:
            options = (N_CLASSES, lp.pca_dim, lp.knn_k)
            # copies: sending a tensor to a worker moves its storage to shared memory, under any NumPy view of it
            arrays = (x.numpy().copy(), y_train.numpy().copy(), x_test.numpy().copy())
            sk_jobs.append(((fam, sel, tb), fam, *arrays, *options))
    preds = {}
    for (key, _), out in zip(jobs, run_jobs([j for _, j in jobs]), strict=True):
        preds[key] = np.asarray(out["y_pred"])
    for job, probs in run_tasks(baselines.proba_task, sk_jobs, len(sk_jobs)):
        preds[job[0]] = np.stack([p.argmax(1) for p in probs], 1)
    return preds


def foreign_metrics(
    preds: dict[tuple[str, str, str], np.ndarray], rows: list[dict[str, Any]], n_queries: int, seed: int
) -> dict[str, Any]:
    """Per regime and lever, the transfer stage's score (the ten scorable attributes) and the paired gap to kennen-o.

    Keys ``foreign.<regime>.<lever>.acc.mean`` (``_low``/``_high``: 95%, resampling the foreign boxes'
    configurations; the bootstrap draws from the base seed, the transfer stage's from ``transfer.seed``),
    ``.gap.*`` (minus ``mlp.first`` on final boxes, kennen-o's recipe, on the same boxes), ``.ckpt_gap.*`` (a
    lever with checkpoint boxes minus the same without) and ``foreign.<regime>.n_boxes`` (the boxes scored).
    """
    metrics: dict[str, Any] = {}
    reference = ("mlp", "first", "final")
    for regime in dict.fromkeys(r["regime"] for r in rows):
        pick = [i for i, r in enumerate(rows) if r["regime"] == regime]
        y_true = np.array([true_labels(rows[i]) for i in pick])
        units = [tuple(t) for t in y_true]
        metrics[f"foreign.{regime}.n_boxes"] = len(pick)
        for (fam, sel, tb), pred in preds.items():
            name = f"foreign.{regime}.{lever_name(fam, n_queries, sel, tb, 'argmax')}"
            scores = method_metrics(y_true, pred[pick], seed)
            metrics |= {f"{name}.{k}": scores[k] for k in ("acc.mean", "acc.mean_low", "acc.mean_high")}
            against = {"gap": reference, "ckpt_gap": (fam, sel, "final") if tb == "checkpoints" else None}
            for label, other in against.items():
                if other in preds and other != (fam, sel, tb):
                    gap = stats.paired_difference(
                        y_true, pred[pick], preds[other][pick], units, keys=SCORABLE, seed=seed
                    )
                    metrics |= {f"{name}.{label}.{k}": v for k, v in gap.items()}
    return metrics


def on_foreign_boxes(
    box_dir: Path, mnist: Path, query_index: np.ndarray, outputs: np.ndarray, boxes: list[dict[str, Any]],
    checkpoints: CheckpointBoxes | None, lp: LeversParams, kp: KennenOParams, seed: int, min_acc: float,
) -> dict[str, Any]:  # fmt: skip
    """:func:`foreign_metrics` of the ``transfer_boxes`` stage's boxes in ``box_dir`` (those the transfer stage
    scores: not diverged, test accuracy at least ``min_acc``), asked the zoo's query images."""
    rows = [r for r in read_transfer_boxes(box_dir / "boxes.csv") if not r["diverged"] and r["test_acc"] >= min_acc]
    if not rows:
        return {}
    images = mnist_data.normalise(mnist_data.load(mnist).test_images[query_index])
    preds = foreign_levers(outputs, boxes, checkpoints, foreign_outputs(rows, box_dir, images), lp, kp, seed)
    return foreign_metrics(preds, rows, kp.n_queries, seed)

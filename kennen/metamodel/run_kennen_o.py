"""The ``kennen_o`` stage: kennen-o on the R split with every optimiser setting, the headline one reported.

The headline setting is trained with ``kennen_o.seeds`` seeds and ``kennen_o.early_stop``, the
other settings with the first seed and their fixed schedule, all in parallel
(``kennen.metamodel.runs``); :func:`run` writes through ``kennen.metamodel.runner``. Every training
learns from ``kennen_o.boxes``: the final models' boxes (the paper's), or those and the checkpoint
boxes of their models (ours); with checkpoints, the headline setting is also cross-validated on the
final boxes alone, the paper's recipe, as a row of the methods table and a paired difference.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kennen import data as mnist_data
from kennen.attributes import KEYS
from kennen.config import base_seed, section
from kennen.errors import KennenError
from kennen.metamodel import baselines, cv
from kennen.metamodel.baselines import BASELINES
from kennen.metamodel.calibration import CalibrationParams, calibrate_out_of_fold, standardise
from kennen.metamodel.cv import fold_of, out_of_fold, units_of
from kennen.metamodel.kennen_o import Curve, KennenOParams, features, targets
from kennen.metamodel.runner import ATTRIBUTE_KEYS, Outputs, Report, finish
from kennen.metamodel.runs import Run, evaluate_runs, seed_metrics, stage_runs, write_predictions
from kennen.parallel import run_tasks
from kennen.queries import CheckpointBoxes, load_checkpoint_boxes, load_outputs, read_boxes
from kennen.splits import fold_split, read_folds, read_split

log = logging.getLogger("kennen.kennen_o")
ACC_KEYS = (*KEYS, "mean")
FINAL_BOXES = "final_boxes"  # the headline setting trained on final boxes only, next to one with checkpoints


def _training(curve: Curve) -> dict[str, float]:
    out = {"train.epochs": curve.epochs, "train.n_fit": curve.n_fit, "train.n_val": curve.n_val}
    return out | ({"train.best_epoch": curve.best_epoch + 1} if curve.best_epoch is not None else {})


def _curve(curve: Curve) -> list[dict[str, float]]:
    """DVCLive steps: train loss per epoch, the validation mean accuracy where early stopping measured it."""
    return [
        {"train/loss": loss} | ({"val/acc_mean": curve.val_acc[e]} if e < len(curve.val_acc) else {})
        for e, loss in enumerate(curve.loss)
    ]


def cv_runs(kp: KennenOParams, folds: list[list[int]]) -> tuple[list[tuple[str, int, int]], list[Run]]:
    """The cross-validation's trainings as ((setting, replica, fold) per run, runs).

    Every fold trains ``kp.seeds`` replicas of the headline setting (with early stopping,
    asking for the test rows' logits, which calibrate the saved metamodel) and one of every
    other setting on its fixed schedule, as the R split does; all on ``kp.boxes``. With checkpoint
    boxes, one more replica of the headline setting learns from the final boxes alone (``FINAL_BOXES``).
    """
    labels, runs = [], []
    ckpt = kp.boxes == "checkpoints"
    for name, opt in kp.optimisers.items():
        headline = name == kp.optimiser
        for k in range(kp.seeds if headline else 1):
            for f in range(len(folds)):
                labels.append((name, k, f))
                split = fold_split(folds, f)
                run = Run(split, kp.n_queries, kp.output, opt, replica=k, early_stop=headline, logits=headline)
                runs.append(dataclasses.replace(run, checkpoints=ckpt))
    if ckpt:
        for f in range(len(folds)):
            labels.append((FINAL_BOXES, 0, f))
            runs.append(Run(fold_split(folds, f), kp.n_queries, kp.output, kp.optimisers[kp.optimiser]))
    return labels, runs


def baseline_rows(x: np.ndarray, y: np.ndarray, folds: list[list[int]]) -> dict[str, np.ndarray]:
    """Out-of-fold predictions [N, 12] of every baseline (``kennen.metamodel.baselines``), in parallel."""
    jobs = []
    for kind in BASELINES:
        for f in range(len(folds)):
            split = fold_split(folds, f)
            jobs.append((len(jobs), kind, x[split["train"]], y[split["train"]], x[split["test"]]))
    done = {task[0]: pred for task, pred in run_tasks(baselines.task, jobs, len(jobs))}
    k = len(folds)
    return {kind: out_of_fold(folds, [done[i * k + f] for f in range(k)], len(x)) for i, kind in enumerate(BASELINES)}


def run(
    params: dict[str, Any],
    data: Path,
    outputs_npz: Path,
    boxes_csv: Path,
    splits: Path,
    out: Outputs,
    checkpoints_npz: Path | None = None,
) -> None:
    """Train, evaluate, calibrate and write kennen-o (module docstring; the stage's docstring lists the outputs).

    Args:
        params: the whole params tree (sections ``kennen_o``, ``calibration``, the seed, the zoo's provenance).
        data: ``mnist.npz``, for the query images saved with the metamodel.
        outputs_npz, boxes_csv, splits: the ``queries`` and ``splits`` stages' outputs.
        out: where to write.
        checkpoints_npz: the ``queries`` stage's checkpoint boxes (read with ``kennen_o.boxes: checkpoints``).
    """
    kp = section(KennenOParams, params, "kennen_o")
    cp = section(CalibrationParams, params, "calibration")
    seed = base_seed(params)
    boxes = read_boxes(boxes_csv)
    outputs, query_index = load_outputs(outputs_npz, boxes)
    checkpoints = _checkpoints(kp, checkpoints_npz, boxes, outputs.shape[1])
    ckpt = checkpoints is not None
    split = read_split(splits, "r", boxes)
    folds = read_folds(splits, boxes)
    all_ids = [b["box"] for b in boxes]
    r_names, r_runs = stage_runs(kp, split)
    r_runs = [dataclasses.replace(r, keep_model=False, checkpoints=ckpt) for r in r_runs]
    if ckpt:  # the paper's recipe beside it on the R split (Table 2): the headline setting on final boxes
        r_names.append(FINAL_BOXES)
        r_runs.append(Run(split, kp.n_queries, kp.output, kp.optimisers[kp.optimiser]))
    cv_labels, c_runs = cv_runs(kp, folds)
    final = Run(
        {"train": all_ids, "test": []}, kp.n_queries, kp.output, kp.optimisers[kp.optimiser], keep_model=True,
        checkpoints=ckpt,
    )  # fmt: skip
    results = evaluate_runs(
        [*r_runs, *c_runs, final], outputs, boxes, kp.hidden, seed, kp.early_stop, checkpoints=checkpoints
    )
    r_results, c_results, final_res = results[: len(r_runs)], results[len(r_runs) : -1], results[-1]

    # The paper's protocol: the R split (Table 2's row), as before.
    replicas = [res for name, res in zip(r_names, r_results, strict=True) if name == kp.optimiser]
    headline = replicas[0]
    metrics: dict[str, float] = {}
    for name, res in zip(r_names, r_results, strict=True):
        if res is headline or name != kp.optimiser:
            metrics[f"{name}.acc.mean"] = res.metrics["acc.mean"]
    h = headline.metrics
    counts = {"n_train": len(split["train"]), "n_test": len(split["test"])}
    counts["n_test_configs"] = len({boxes[i]["config"] for i in split["test"]})
    metrics = h | counts | seed_metrics(replicas) | metrics

    # The headline protocol: every box predicted once, by the fold's metamodel that never saw its configuration.
    y_all = targets(boxes).numpy()
    units = units_of(boxes)
    oof: dict[tuple[str, int], np.ndarray] = {}
    oof_logits: list[list[np.ndarray]] = []
    for (name, k, f), res in zip(cv_labels, c_results, strict=True):
        oof.setdefault((name, k), [None] * len(folds))[f] = res.y_pred
        if name == kp.optimiser and k == 0:
            oof_logits.append(res.logits)
    preds = {key: out_of_fold(folds, per_fold, len(boxes)) for key, per_fold in oof.items()}
    cv_pred = preds[kp.optimiser, 0]
    metrics |= cv.metrics(y_all, cv_pred, units, seed) | {"cv.k": len(folds)}
    metrics |= cv.seed_metrics(y_all, [preds[kp.optimiser, k] for k in range(kp.seeds)], units)
    x_all = features(outputs, kp.n_queries, kp.output)
    base = baseline_rows(x_all.numpy(), y_all, folds)
    table = []
    trained_on = " (with checkpoint boxes)" if ckpt else ""
    methods = {name: (f"kennen-o ({name}){trained_on}", preds[name, 0]) for name in kp.optimisers}
    if ckpt:
        methods[FINAL_BOXES] = (f"kennen-o ({kp.optimiser}; final boxes only: the paper's)", preds[FINAL_BOXES, 0])
    methods |= {kind: (f"{kind} (baseline)", p) for kind, p in base.items()}
    for tag, (method, pred) in methods.items():
        m = cv.metrics(y_all, pred, units, seed, prefix="m")
        table.append({"method": method} | {k[2:]: v for k, v in m.items()})
        metrics |= {f"cv.{tag}.{k}": m[f"m.{k}"] for k in ("acc.mean", "acc_config.mean")}
        metrics |= {
            f"cv.{tag}.{k}_{b}": m[f"m.{k}_{b}"] for k in ("acc.mean", "acc_config.mean") for b in ("low", "high")
        }
    for kind in (*base, *([FINAL_BOXES] if ckpt else [])):
        metrics |= cv.paired(y_all, cv_pred, methods[kind][1], units, seed, f"cv.vs_{kind}")
    for (name, k, f), res in zip(cv_labels, c_results, strict=True):
        if name == kp.optimiser and k == 0 and res.curve is not None:
            metrics[f"cv.fold{f}.epochs"] = res.curve.epochs
    metrics["cv.checkpoint_boxes"] = len(checkpoints.box) if ckpt else 0
    log.info(
        "kennen-o CV (%d folds, %d boxes, %d configurations): mean over boxes %.2f [%.2f, %.2f], over "
        "configurations %.2f [%.2f, %.2f]; R split %.2f",
        len(folds), len(boxes), metrics["cv.n_configs"], metrics["cv.acc.mean"], metrics["cv.acc.mean_low"],
        metrics["cv.acc.mean_high"], metrics["cv.acc_config.mean"], metrics["cv.acc_config.mean_low"],
        metrics["cv.acc_config.mean_high"], h["acc.mean"],
    )  # fmt: skip

    # The saved metamodel learns from every box; calibrated on the out-of-fold predictions of every box.
    model = final_res.model
    logits = [out_of_fold(folds, [fl[i] for fl in oof_logits], len(boxes)) for i in range(len(KEYS))]
    cal = calibrate_out_of_fold(
        logits, y_all, fold_of(folds, len(boxes)), units, standardise(model, x_all), cp, seed, "kennen-o"
    )
    metrics |= _training(final_res.curve) | cal.metrics
    images = mnist_data.load(data).test_images[query_index[: kp.n_queries]]
    tensors = {f"mlp.{k}": v for k, v in model.state_dict().items()}
    tensors["queries"] = torch.from_numpy(images[:, None].astype("float32") / 255.0)  # pixels in [0, 1]
    test_accuracy = {f"acc.{k}": metrics[f"cv.acc.{k}"] for k in ACC_KEYS}
    test_accuracy |= {f"acc.{k}_{b}": metrics[f"cv.acc.{k}_{b}"] for k in ACC_KEYS for b in ("low", "high")}
    report = Report(
        method="kennen-o",
        metrics=metrics,
        y_true=y_all,
        y_pred=cv_pred,
        confusion_title=f"kennen-o ({kp.output}, {kp.n_queries} queries), out-of-fold",
        calibration=cal,
        calibration_method="temperature scaling per attribute",
        n_val=len(boxes),
        curve=_curve(final_res.curve),
        tensors=tensors,
        meta={
            "method": "kennen-o",
            "n_queries": kp.n_queries,
            "output": kp.output,
            "hidden": kp.hidden,
            "optimiser": kp.optimiser,
            "attributes": ATTRIBUTE_KEYS,
            "boxes": kp.boxes,
            "trained_on": f"all {len(boxes)} boxes"
            + (f" and the {len(checkpoints.box)} checkpoint boxes of their models" if ckpt else "")
            + f"; test_accuracy: {len(folds)}-fold cross-validation over {metrics['cv.n_configs']} configurations",
            "query_index": query_index[: kp.n_queries].tolist(),
            "image_space": "pixels in [0, 1], [Q, 1, 28, 28]; normalise with MNIST mean/std before querying",
        },
        test_accuracy=test_accuracy,
        inputs=[outputs_npz, boxes_csv, splits],
        n_train=len(boxes),
        n_test=0,
        tables={"optimisers": _optimiser_rows(kp, r_names, r_results), "methods": table},
    )
    finish(report, out, params, cp)
    write_predictions(out.plots / "predictions.csv", headline.test_ids, headline.y_true, headline.y_pred)
    write_predictions(out.plots / "cv_predictions.csv", all_ids, y_all, cv_pred)


def _checkpoints(
    kp: KennenOParams, path: Path | None, boxes: list[dict[str, Any]], n_queries: int
) -> CheckpointBoxes | None:
    """The checkpoint boxes the stage learns from (``kennen_o.boxes: checkpoints``), or None."""
    if kp.boxes != "checkpoints":
        return None
    if path is None:
        raise KennenError("kennen_o.boxes: checkpoints needs the queries stage's checkpoint boxes (--checkpoints)")
    return load_checkpoint_boxes(path, boxes, n_queries)


def _optimiser_rows(kp: KennenOParams, names: list[str], results: list) -> list[dict[str, Any]]:
    """The R split's row per optimiser setting (its first seed), as Table 2 reports one."""
    rows, seen = [], set()
    for name, res in zip(names, results, strict=True):
        if name in seen:
            continue
        seen.add(name)
        accs = {k: res.metrics[f"acc.{k}"] for k in (*KEYS, "mean", "mean_low", "mean_high")}
        rows.append({"setting": name} | accs | {"epochs": res.curve.epochs})
    return rows

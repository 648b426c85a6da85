"""The ``kennen_o`` stage: kennen-o on the R split with every optimiser setting, the headline one reported.

The headline setting is trained with ``kennen_o.seeds`` seeds and ``kennen_o.early_stop``, the
other settings with the first seed and their fixed schedule, all in parallel
(``kennen.metamodel.runs``); :func:`run` writes through ``kennen.metamodel.runner``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kennen import data as mnist_data
from kennen.attributes import KEYS
from kennen.config import base_seed, section
from kennen.metamodel.calibration import Calibrated, CalibrationParams, calibrate_scores
from kennen.metamodel.kennen_o import Curve, KennenO, KennenOParams, configs, features, model_seed, targets
from kennen.metamodel.runner import ATTRIBUTE_KEYS, Outputs, Report, finish
from kennen.metamodel.runs import evaluate_runs, seed_metrics, stage_runs, write_predictions
from kennen.queries import load_outputs, read_boxes
from kennen.splits import read_split

log = logging.getLogger("kennen.kennen_o")
ACC_KEYS = (*KEYS, "mean")


def calibrate(
    kp: KennenOParams, cp: CalibrationParams, outputs: np.ndarray, boxes: list[dict[str, Any]],
    split: dict[str, list[int]], model: KennenO, seed: int,
) -> Calibrated:  # fmt: skip
    """The headline's calibration on its early-stopping carve (none without a carve: temperatures 1)."""
    x, y = features(outputs, kp.n_queries, kp.output), targets(boxes).numpy()
    train, test = split["train"], split["test"]
    # the carve the headline (replica 0) held out, whole configurations
    rows = kp.early_stop.carve(len(train), model_seed(seed), configs(boxes, train))
    val = [train[i] for i in rows[1].tolist()] if rows is not None else []
    return calibrate_scores(model, (x[val], y[val]), (x[test], y[test]), x[train], cp, seed, "kennen-o")


def _training(curve: Curve) -> dict[str, float]:
    out = {"train.epochs": curve.epochs, "train.n_fit": curve.n_fit, "train.n_val": curve.n_val}
    return out | ({"train.best_epoch": curve.best_epoch + 1} if curve.best_epoch is not None else {})


def _curve(curve: Curve) -> list[dict[str, float]]:
    """DVCLive steps: train loss per epoch, the validation mean accuracy where early stopping measured it."""
    return [{"train/loss": loss} | ({"val/acc_mean": curve.val_acc[e]} if e < len(curve.val_acc) else {})
            for e, loss in enumerate(curve.loss)]  # fmt: skip


def run(params: dict[str, Any], data: Path, outputs_npz: Path, boxes_csv: Path, splits: Path, out: Outputs) -> None:
    """Train, evaluate, calibrate and write kennen-o (module docstring; the stage's docstring lists the outputs).

    Args:
        params: the whole params tree (sections ``kennen_o``, ``calibration``, the seed, the zoo's provenance).
        data: ``mnist.npz``, for the query images saved with the metamodel.
        outputs_npz, boxes_csv, splits: the ``queries`` and ``splits`` stages' outputs.
        out: where to write.
    """
    kp = section(KennenOParams, params, "kennen_o")
    cp = section(CalibrationParams, params, "calibration")
    seed = base_seed(params)
    boxes = read_boxes(boxes_csv)
    outputs, query_index = load_outputs(outputs_npz, boxes)
    split = read_split(splits, "r", boxes)
    names, runs = stage_runs(kp, split)
    results = evaluate_runs(runs, outputs, boxes, kp.hidden, seed, kp.early_stop)
    replicas = [res for name, res in zip(names, results, strict=True) if name == kp.optimiser]
    headline = replicas[0]
    metrics: dict[str, float] = {}
    table = []
    for name, res in zip(names, results, strict=True):
        if res is not headline and name == kp.optimiser:
            continue  # the other seeds enter through seed_metrics
        log.info("kennen-o [%s]: mean %.2f [%.2f, %.2f], %d epochs", name, res.metrics["acc.mean"],
                 res.metrics["acc.mean_low"], res.metrics["acc.mean_high"], res.curve.epochs)  # fmt: skip
        accs = {k: res.metrics[f"acc.{k}"] for k in (*KEYS, "mean", "mean_low", "mean_high")}
        table.append({"setting": name} | accs | {"epochs": res.curve.epochs})
        metrics[f"{name}.acc.mean"] = res.metrics["acc.mean"]
    spread = seed_metrics(replicas)
    log.info("kennen-o over %d seeds: %s", len(replicas), {k: v for k, v in spread.items() if "mean" in k})
    counts = {"n_train": len(split["train"]), "n_test": len(split["test"])}
    cal = calibrate(kp, cp, outputs, boxes, split, headline.model, seed)
    h = headline.metrics
    images = mnist_data.load(data).test_images[query_index[: kp.n_queries]]
    tensors = {f"mlp.{k}": v for k, v in headline.model.state_dict().items()}
    tensors["queries"] = torch.from_numpy(images[:, None].astype("float32") / 255.0)  # pixels in [0, 1]
    report = Report(
        method="kennen-o",
        metrics=h | counts | _training(headline.curve) | spread | metrics | cal.metrics,
        y_true=headline.y_true,
        y_pred=headline.y_pred,
        confusion_title=f"kennen-o ({kp.output}, {kp.n_queries} queries)",
        calibration=cal,
        calibration_method="temperature scaling per attribute",
        n_val=int(cal.metrics["calibration.n_val"]),
        curve=_curve(headline.curve),
        tensors=tensors,
        meta={
            "method": "kennen-o",
            "n_queries": kp.n_queries,
            "output": kp.output,
            "hidden": kp.hidden,
            "optimiser": kp.optimiser,
            "attributes": ATTRIBUTE_KEYS,
            "query_index": query_index[: kp.n_queries].tolist(),
            "image_space": "pixels in [0, 1], [Q, 1, 28, 28]; normalise with MNIST mean/std before querying",
        },
        test_accuracy={f"acc.{k}": h[f"acc.{k}"] for k in ACC_KEYS}
        | {f"acc.{k}_{b}": h[f"acc.{k}_{b}"] for k in ACC_KEYS for b in ("low", "high")},
        inputs=[outputs_npz, boxes_csv, splits],
        n_train=len(split["train"]),
        n_test=len(split["test"]),
        tables={"optimisers": table},
    )
    finish(report, out, params, cp)
    write_predictions(out.plots / "predictions.csv", headline.test_ids, headline.y_true, headline.y_pred)

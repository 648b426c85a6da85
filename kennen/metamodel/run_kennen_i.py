"""The ``kennen_i`` stage: kennen-i's crafted queries for every target, cross-validated over configurations
(the headline) and on the R split, the headline target reported.

Every target (``kennen_i.target`` and the variants) is crafted once per fold, once on every box (the
images that are saved) and once on the R split's training boxes, all as parallel tasks on the executor,
the longest first; :func:`run` writes through ``kennen.metamodel.runner``.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import torch

from kennen import data as mnist_data
from kennen import stats
from kennen.attributes import ATTRIBUTES
from kennen.config import base_seed, section
from kennen.metamodel import cv
from kennen.metamodel.calibration import CalibrationParams
from kennen.metamodel.crafted import ALL_BOXES, ZooSource, draw_images, fold_name
from kennen.metamodel.cv import fold_of
from kennen.metamodel.kennen_i import KennenIParams, calibrate_out_of_fold, in_range, run_task, scores, tasks
from kennen.metamodel.kennen_o import targets
from kennen.metamodel.report import plot_images
from kennen.metamodel.runner import ATTRIBUTE_KEYS, Outputs, Report, finish, train_tasks
from kennen.metamodel.runs import write_predictions
from kennen.queries import read_boxes
from kennen.schemas import MODELS, box_members, check_shards, read_table
from kennen.seeds import Purpose, derive
from kennen.splits import fold_split, read_folds, read_split

log = logging.getLogger("kennen.kennen_i")
ACC_KEYS = (*ATTRIBUTE_KEYS, "mean")
MEANS = ("acc.mean", "acc.mean_low", "acc.mean_high", "acc_config.mean", "acc_config.mean_low", "acc_config.mean_high")


def _target_row(target: str, r_scores: dict[str, float], in_range_r: float, cv_block: dict[str, float]) -> dict:
    """``targets.csv`` row: the R split's in-range share, point accuracies and mean interval, then the
    cross-validated means over boxes and over configurations with their intervals."""
    point = {k.removeprefix("acc."): v for k, v in r_scores.items() if not k.endswith(("_low", "_high"))}
    return (
        {"target": target, "in_range": in_range_r}
        | point
        | {"mean_low": r_scores["acc.mean_low"], "mean_high": r_scores["acc.mean_high"]}
        | {"cv_" + k.replace(".", "_"): cv_block[f"cv.{k}"] for k in MEANS}
    )


def _describe(task: tuple[str, str], result: dict[str, Any]) -> str:
    target, name = task
    if not len(result["y_true"]):
        return f"kennen-i [{target}, {name}]: crafted on {len(result['train_labels'])} boxes"
    return f"kennen-i [{target}, {name}]: mean {stats.accuracies(result['y_true'], result['y_pred'])['mean']:.2f}"


def run(
    params: dict[str, Any], data: Path, boxes_csv: Path, models: Path, shards: Path, splits: Path, out: Outputs
) -> None:
    """Craft, evaluate, calibrate and write kennen-i (the stage's docstring lists the outputs).

    Args:
        params: the whole params tree (sections ``kennen_i``, ``calibration``, the seed, the zoo's provenance).
        data: ``mnist.npz`` (the crafting starts from random test images).
        boxes_csv, models, shards, splits: the zoo, the splits and the folds.
        out: where to write.
    """
    kp = section(KennenIParams, params, "kennen_i")
    cp = section(CalibrationParams, params, "calibration")
    boot = base_seed(params)  # the bootstrap's: the same resamples as every other metamodel's
    seed = derive(boot, Purpose.KENNEN_I)
    boxes = read_boxes(boxes_csv)
    split = read_split(splits, "r", boxes)
    folds = read_folds(splits, boxes)
    check_shards(shards, read_table(models, MODELS), box_members(boxes), models)
    all_ids = [b["box"] for b in boxes]
    every = {"r": split, ALL_BOXES: {"train": all_ids, "test": []}}
    every |= {fold_name(f): fold_split(folds, f) for f in range(len(folds))}
    mnist = mnist_data.load(data)
    # Official init "randval": random MNIST images (here drawn from the test set, as the queries are).
    init = mnist_data.normalise(mnist.test_images[draw_images(len(mnist.test_images), len(ATTRIBUTES), seed)])
    order = list(dict.fromkeys([kp.target, *kp.variants]))
    job = functools.partial(
        run_task, source=ZooSource.at(shards, models, boxes), splits=every, init=init, params=kp, seed=seed
    )
    results = train_tasks(job, tasks(order, every, list(every)), _describe)

    # The headline, first in the metrics: every box answers the images crafted without its configuration.
    y_all = targets(boxes).numpy()
    units = cv.units_of(boxes)
    oof = {
        t: {
            part: cv.out_of_fold(folds, [results[t, fold_name(f)][part] for f in range(len(folds))], len(boxes))
            for part in ("labels", "y_pred")
        }
        for t in order
    }
    head = oof[kp.target]
    blocks = {t: cv.metrics(y_all, oof[t]["y_pred"], units, boot) for t in order}
    metrics = blocks[kp.target] | {"cv.k": len(folds), "cv.in_range": in_range(head["labels"], kp.target)}
    for t in order:
        metrics |= {f"cv.{t}.{k}": blocks[t][f"cv.{k}"] for k in MEANS}

    # The paper's protocol: the R split, whose test boxes the defences stage shares.
    r_units = cv.units_of(boxes, split["test"])
    r_scores = {t: scores(results[t, "r"], r_units, seed=boot) for t in order}
    metrics |= r_scores[kp.target]
    for t in order:
        metrics |= {f"{t}.{k}": r_scores[t][k] for k in ("acc.mean", "acc.mean_low", "acc.mean_high")}
    r_head = results[kp.target, "r"]
    metrics |= {
        "in_range": in_range(r_head["labels"], kp.target),
        "n_train": len(split["train"]),
        "n_test": len(split["test"]),
        "n_test_configs": len({boxes[i]["config"] for i in split["test"]}),
    }
    table = [_target_row(t, r_scores[t], in_range(results[t, "r"]["labels"], t), cv_block=blocks[t]) for t in order]
    log.info(
        "kennen-i [%s] CV (%d folds, %d boxes, %d configurations): mean over boxes %.2f [%.2f, %.2f], over "
        "configurations %.2f [%.2f, %.2f]; R split %.2f",
        *(kp.target, len(folds), len(boxes), metrics["cv.n_configs"]),
        *(metrics[f"cv.{k}"] for k in MEANS),
        metrics["acc.mean"],
    )

    # The saved images are crafted on every box; their label table is fitted on every box's out-of-fold answers.
    final = {t: results[t, ALL_BOXES] for t in order}
    cal = calibrate_out_of_fold(
        head["labels"],
        head["y_pred"],
        y_all,
        fold_of(folds, len(boxes)),
        units=units,
        reference=final[kp.target]["train_labels"],
        params=cp,
        seed=boot,
        name="kennen-i",
    )
    metrics |= cal.metrics
    tensors = {f"queries.{t}": torch.from_numpy(final[t]["images"]) for t in order}
    tensors |= {f"fallback.{t}": torch.from_numpy(final[t]["fallback"]) for t in order}
    test_accuracy = {f"acc.{k}": metrics[f"cv.acc.{k}"] for k in ACC_KEYS}
    test_accuracy |= {f"acc.{k}_{b}": metrics[f"cv.acc.{k}_{b}"] for k in ACC_KEYS for b in ("low", "high")}
    report = Report(
        method="kennen-i",
        metrics=metrics,
        y_true=y_all,
        y_pred=head["y_pred"],
        confusion_title=f"kennen-i ({kp.target}, top-1 label), out-of-fold",
        calibration=cal,  # the headline target's
        calibration_method="out-of-fold accuracy per attribute and top-1 label (shrunk)",
        n_val=len(boxes),
        curve=[{"train/loss": loss} for loss in final[kp.target]["losses"]],
        tensors=tensors,
        meta={
            "method": "kennen-i",
            "target": kp.target,
            "targets": order,
            "loss": kp.loss,
            "output": "top1 label",
            "attributes": ATTRIBUTE_KEYS,
            "trained_on": f"all {len(boxes)} boxes; test_accuracy: {len(folds)}-fold cross-validation over "
            f"{metrics['cv.n_configs']} configurations",
            "image_space": "pixels in [0, 1], [A, 1, 28, 28]; normalise with MNIST mean/std before querying",
            "read_out": "top-1 label d -> value index d if d < #values, else fallback[attribute]",
        },
        test_accuracy=test_accuracy,
        inputs=[boxes_csv, models, shards, splits],
        n_train=len(boxes),
        n_test=0,
        tables={"targets": table},
    )
    finish(report, out, params, cp)
    write_predictions(out.plots / "cv_predictions.csv", all_ids, y_all, y_pred=head["y_pred"])
    titles = [a.title for a in ATTRIBUTES] if kp.target == "each" else ["all attributes"]
    plot_images(
        final[kp.target]["images"],
        titles,
        out.figures / "queries.png",
        title="kennen-i: crafted queries on every box (digit j = value j)",
    )

"""The ``kennen_i`` stage: kennen-i's crafted queries for every target, the headline target reported.

The headline target (``kennen_i.target``) and every variant run as parallel tasks on the
executor; :func:`run` writes through ``kennen.metamodel.runner``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch

from kennen import data as mnist_data
from kennen.attributes import ATTRIBUTES
from kennen.config import base_seed, section
from kennen.errors import KennenError
from kennen.metamodel.calibration import CalibrationParams, calibrate_labels
from kennen.metamodel.crafted import ZooSource, draw_images
from kennen.metamodel.kennen_i import KennenIParams, in_range, run_target, scores
from kennen.metamodel.kennen_o import accuracies
from kennen.metamodel.report import plot_images
from kennen.metamodel.runner import ATTRIBUTE_KEYS, Outputs, Report, finish, train_tasks
from kennen.queries import read_boxes
from kennen.seeds import Purpose, derive
from kennen.splits import read_split


def _target_row(target: str, result: dict[str, Any]) -> dict[str, Any]:
    """``targets.csv`` row: whether the labels fall in range, the point accuracies, the mean's interval."""
    m = scores(result)
    point = {k.removeprefix("acc."): v for k, v in m.items() if not k.endswith(("_low", "_high"))}
    return (
        {"target": target, "in_range": in_range(result["labels"], target)}
        | point
        | {"mean_low": m["acc.mean_low"], "mean_high": m["acc.mean_high"]}
    )


def run(
    params: dict[str, Any], data: Path, boxes_csv: Path, models: Path, shards: Path, splits: Path, out: Outputs
) -> None:
    """Craft, evaluate, calibrate and write kennen-i (the stage's docstring lists the outputs).

    Args:
        params: the whole params tree (sections ``kennen_i``, ``calibration``, the seed, the zoo's provenance).
        data: ``mnist.npz`` (the crafting starts from random test images).
        boxes_csv, models, shards, splits: the zoo and the splits.
        out: where to write.
    """
    kp = section(KennenIParams, params, "kennen_i")
    cp = section(CalibrationParams, params, "calibration")
    seed = derive(base_seed(params), Purpose.KENNEN_I)
    boxes = read_boxes(boxes_csv)
    split = read_split(splits, "r", boxes)
    if not split["train"] or not split["test"]:
        raise KennenError(f"{splits}: the R split has no training or no test boxes")
    mnist = mnist_data.load(data)
    # Official init "randval": random MNIST images (here drawn from the test set, as the queries are).
    init = mnist_data.normalise(mnist.test_images[draw_images(len(mnist.test_images), len(ATTRIBUTES), seed)])
    source = ZooSource.at(shards, models, boxes)
    order = list(dict.fromkeys([kp.target, *kp.variants]))
    job = functools.partial(
        run_target, source=source, train_ids=split["train"], test_ids=split["test"], init=init, params=kp, seed=seed,
        val_fraction=cp.val_fraction,
    )  # fmt: skip
    results = train_tasks(
        job, order, lambda t, r: f"kennen-i [{t}]: mean {accuracies(r['y_true'], r['y_pred'])['acc.mean']:.2f}"
    )
    head = results[kp.target]
    metrics = scores(head)
    table = [_target_row(t, results[t]) for t in order]
    for target in order:
        m = scores(results[target])
        metrics |= {f"{target}.{k}": m[k] for k in ("acc.mean", "acc.mean_low", "acc.mean_high")}
    metrics |= {"in_range": in_range(head["labels"], kp.target), "n_train": len(split["train"]),
                "n_test": len(split["test"])}  # fmt: skip
    cal = calibrate_labels((head["val_labels"], head["val_pred"], head["y_val"]),
                           (head["labels"], head["y_pred"], head["y_true"]), head["train_labels"], cp,
                           base_seed(params), "kennen-i")  # fmt: skip
    metrics |= cal.metrics | {"n_fit": head["n_fit"]}
    tensors = {f"queries.{t}": torch.from_numpy(results[t]["images"]) for t in order}
    tensors |= {f"fallback.{t}": torch.from_numpy(results[t]["fallback"]) for t in order}
    report = Report(
        method="kennen-i",
        metrics=metrics,
        y_true=head["y_true"],
        y_pred=head["y_pred"],
        confusion_title=f"kennen-i ({kp.target}, top-1 label)",
        calibration=cal,  # the headline target's
        calibration_method="validation accuracy per attribute and top-1 label (shrunk)",
        n_val=len(head["y_val"]),
        curve=[{"train/loss": loss} for loss in head["losses"]],
        tensors=tensors,
        meta={
            "method": "kennen-i",
            "target": kp.target,
            "targets": order,
            "loss": kp.loss,
            "output": "top1 label",
            "attributes": ATTRIBUTE_KEYS,
            "image_space": "pixels in [0, 1], [A, 1, 28, 28]; normalise with MNIST mean/std before querying",
            "read_out": "top-1 label d -> value index d if d < #values, else fallback[attribute]",
        },
        test_accuracy=metrics,
        inputs=[boxes_csv, models, shards, splits],
        n_train=len(split["train"]),
        n_test=len(split["test"]),
        tables={"targets": table},
    )
    finish(report, out, params, cp)
    titles = [a.title for a in ATTRIBUTES] if kp.target == "each" else ["all attributes"]
    plot_images(head["images"], titles, out.figures / "queries.png", "kennen-i: crafted queries (digit j = value j)")

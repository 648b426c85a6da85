"""The ``kennen_io`` stage: kennen-io cross-validated over configurations (the headline), on the R split
(Table 2) and on the E splits of ``kennen_io.splits`` (Table 3).

One task per fold, one for the all-box metamodel that is saved, one per R seed and one per E split,
run in parallel on the executor, the longest first; :func:`run` writes through ``kennen.metamodel.runner``.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kennen import data as mnist_data
from kennen import stats
from kennen.config import base_seed, section
from kennen.errors import KennenError
from kennen.metamodel.calibration import CalibrationParams, calibrate_out_of_fold, standardise
from kennen.metamodel.crafted import ALL_BOXES, ZooSource, fold_name
from kennen.metamodel.cv import fold_of, units_of
from kennen.metamodel.kennen_io import (
    KennenIOParams,
    cv_metrics,
    e_row,
    out_of_fold,
    phase_rows,
    r_metrics,
    run_task,
    seed_metrics,
    tasks,
)
from kennen.metamodel.kennen_o import KennenO, KennenOParams, targets
from kennen.metamodel.report import plot_bars, plot_images
from kennen.metamodel.runner import ATTRIBUTE_KEYS, Outputs, Report, e_split_rows, finish, train_tasks
from kennen.metamodel.runs import write_predictions
from kennen.paper import TABLE3_KENNEN_IO
from kennen.queries import load_outputs, read_boxes
from kennen.seeds import Purpose, derive
from kennen.splits import SplitParams, fold_split, read_folds, read_split

log = logging.getLogger("kennen.kennen_io")
SAMPLE = 12  # queries shown in the figure
ACC_KEYS = (*ATTRIBUTE_KEYS, "mean")


def check_splits(names: tuple[str, ...], held: dict[str, Any]) -> None:
    """Every split kennen-io is asked for is R or one of ``splits.extrapolation``."""
    unknown = [s for s in names if s != "r" and s not in held]
    if unknown:
        raise KennenError(f"kennen_io.splits: {unknown[0]!r} is not r or a split of splits.extrapolation")


def _plot_queries(init: np.ndarray, learned: np.ndarray, n_queries: int, figure: Path) -> None:
    """The first ``SAMPLE`` queries before (top row) and after training (bottom row)."""
    n = min(SAMPLE, n_queries)
    start = (init[:n] * mnist_data.STD + mnist_data.MEAN).clip(0, 1)
    plot_images(
        np.concatenate([start, learned[:n]]),
        [f"q{i} start" for i in range(n)] + [f"q{i} learned" for i in range(n)],
        figure,
        title=f"kennen-io: the first {n} of {n_queries} queries, before (top) and after training (bottom)",
        cols=n,
    )


def _ci(m: dict[str, float], key: str) -> str:
    """``key``'s value with its interval (``<key>_low``/``_high``, or ``.low``/``.high`` beside ``.diff``)."""
    stem = key.removesuffix(".diff")
    low, high = (m[f"{key}_{b}"] if stem == key else m[f"{stem}.{b}"] for b in ("low", "high"))
    return f"{m[key]:.2f} [{low:.2f}, {high:.2f}]"


def _describe(task: tuple[str, int], result: dict[str, Any]) -> str:
    name, k = task
    if not len(result["y_true"]):
        return f"kennen-io [{name}]: trained on {len(result['train_features'])} boxes"
    return f"kennen-io [{name}, seed {k}]: mean {stats.accuracies(result['y_true'], result['y_pred'])['mean']:.2f}"


def run(
    params: dict[str, Any],
    data: Path,
    outputs_npz: Path,
    boxes_csv: Path,
    models: Path,
    shards: Path,
    splits_dir: Path,
    out: Outputs,
) -> None:
    """Train, evaluate, calibrate and write kennen-io (the stage's docstring lists the outputs).

    Args:
        params: the whole params tree (sections ``kennen_io``, ``kennen_o`` (width, optimiser),
            ``calibration``, ``splits``, the seed, the zoo's provenance).
        data: ``mnist.npz``; outputs_npz: the stored queries (kennen-io starts from kennen-o's).
        boxes_csv, models, shards, splits_dir: the zoo, the splits and the folds.
        out: where to write.
    """
    kp = section(KennenIOParams, params, "kennen_io")
    ko = section(KennenOParams, params, "kennen_o")
    cp = section(CalibrationParams, params, "calibration")
    held = section(SplitParams, params, "splits").extrapolation
    check_splits(kp.splits, held)
    boot = base_seed(params)  # the bootstrap's: the same resamples as every other metamodel's
    seed = derive(boot, Purpose.KENNEN_IO)
    boxes = read_boxes(boxes_csv)
    _, query_index = load_outputs(outputs_npz, boxes)
    if kp.n_queries > len(query_index):
        raise KennenError(
            f"kennen_io.n_queries: {kp.n_queries} exceeds the {len(query_index)} stored queries (queries.n_max)"
        )
    mnist = mnist_data.load(data)
    # kennen-io starts from kennen-o's queries: the first n query images.
    init = mnist_data.normalise(mnist.test_images[query_index[: kp.n_queries]])
    splits = {name: read_split(splits_dir, name, boxes) for name in kp.splits}
    if not splits["r"]["train"] or not splits["r"]["test"]:
        raise KennenError(f"{splits_dir}: the R split has no training or no test boxes")
    folds = read_folds(splits_dir, boxes)
    all_ids = [b["box"] for b in boxes]
    cv_splits = {fold_name(f): fold_split(folds, f) for f in range(len(folds))}
    cv_splits[ALL_BOXES] = {"train": all_ids, "test": []}
    # An E split that this zoo cannot fill gets an empty row, as in kennen_o_sweep.
    runnable = [n for n, s in splits.items() if s["train"] and s["test"]] + list(cv_splits)
    every = splits | cv_splits
    job = functools.partial(
        run_task,
        source=ZooSource.at(shards, models, boxes),
        splits=every,
        init=init,
        params=kp,
        hidden=ko.hidden,
        opt=ko.optimisers[ko.optimiser],
        seed=seed,
    )
    todo = tasks(kp, every, runnable)
    results = train_tasks(job, todo, _describe)

    # The headline, first in the metrics: every box predicted once, by the fold's kennen-io that never saw
    # its configuration.
    y_all = targets(boxes).numpy()
    units = units_of(boxes)
    oof = out_of_fold(folds, [results[fold_name(f), 0] for f in range(len(folds))], len(boxes))
    metrics = cv_metrics(y_all, oof["y_pred"], oof["o_pred"], units=units, seed=boot) | {"cv.k": len(folds)}
    moved = [results[fold_name(f), 0]["moved"] for f in range(len(folds))]
    metrics["cv.queries.moved"] = round(float(np.mean(moved)), 5)

    # The paper's protocol: the R split (Table 2's row) and the E splits (Table 3).
    r = results["r", 0]
    r_metric = r_metrics(r, units_of(boxes, r["test"]), seed=boot)
    r_test = splits["r"]["test"]
    metrics |= r_metric | {"n_train": len(splits["r"]["train"]), "n_test": len(r_test)}
    metrics["n_test_configs"] = len({boxes[i]["config"] for i in r_test})
    metrics |= seed_metrics([results["r", k] for k in range(kp.seeds)])
    firsts = {name: res for (name, k), res in results.items() if k == 0 and name in splits}

    def table3_row(name: str) -> dict[str, Any]:
        test_units = units_of(boxes, splits[name]["test"])
        return e_row(name, splits[name], held[name], firsts[name], r_metric, units=test_units, seed=boot)

    rows, e_metrics = e_split_rows(kp.splits, splits, firsts, table3_row)
    metrics |= e_metrics
    log.info(
        "kennen-io CV (%d folds, %d boxes, %d configurations): mean over boxes %s, over configurations %s; "
        "io - o %s; R split %s",
        len(folds),
        len(boxes),
        metrics["cv.n_configs"],
        _ci(metrics, "cv.acc.mean"),
        _ci(metrics, "cv.acc_config.mean"),
        _ci(metrics, "cv.gap_vs_o.acc.diff"),
        _ci(metrics, "acc.mean"),
    )

    # The saved metamodel learns from every box; calibrated on the out-of-fold predictions of every box.
    final = results[ALL_BOXES, 0]
    model = KennenO(final["train_features"].shape[1], ko.hidden)
    model.load_state_dict(final["model"])
    reference = standardise(model, final["train_features"])  # every box, in box order
    cal = calibrate_out_of_fold(
        oof["logits"],
        y_all,
        fold_of(folds, len(boxes)),
        units=units,
        features=reference,
        params=cp,
        seed=boot,
        name="kennen-io",
    )
    metrics |= cal.metrics
    test_accuracy = {f"acc.{k}": metrics[f"cv.acc.{k}"] for k in ACC_KEYS}
    test_accuracy |= {f"acc.{k}_{b}": metrics[f"cv.acc.{k}_{b}"] for k in ACC_KEYS for b in ("low", "high")}
    report = Report(
        method="kennen-io",
        metrics=metrics,
        y_true=y_all,
        y_pred=oof["y_pred"],
        confusion_title=f"kennen-io ({kp.n_queries} learned queries, prob), out-of-fold",
        calibration=cal,
        calibration_method="temperature scaling per attribute",
        n_val=len(boxes),
        curve=[{f"train/{point['phase']}_loss": point["loss"]} for point in final["curve"]],
        tensors={f"mlp.{k}": v for k, v in final["model"].items()} | {"queries": torch.from_numpy(final["queries"])},
        meta={
            "method": "kennen-io",
            "n_queries": kp.n_queries,
            "output": "prob",
            "hidden": ko.hidden,
            "optimiser": ko.optimiser,
            "schedule": [[ph.train, ph.epochs] for ph in kp.schedule_for(ALL_BOXES)],
            "query_boxes": kp.query_boxes,
            "seed": final["seed"],
            "attributes": ATTRIBUTE_KEYS,
            "trained_on": f"all {len(boxes)} boxes; test_accuracy: {len(folds)}-fold cross-validation over "
            f"{metrics['cv.n_configs']} configurations",
            "image_space": "pixels in [0, 1], [Q, 1, 28, 28]; normalise with MNIST mean/std before querying",
        },
        test_accuracy=test_accuracy,
        inputs=[boxes_csv, models, shards, splits_dir],
        n_train=len(boxes),
        n_test=0,
        tables={"phases": phase_rows([results[t] for t in todo])} | ({"extrapolation": rows} if rows else {}),
    )
    finish(report, out, params, cp)
    write_predictions(out.plots / "cv_predictions.csv", all_ids, y_all, y_pred=oof["y_pred"])
    if rows:
        plot_bars(
            rows,
            "split",
            "relative",
            title="kennen-io on E splits, relative to R (R = 100, chance = 0)",
            figure=out.figures / "extrapolation.png",
            reference=TABLE3_KENNEN_IO,
        )
    _plot_queries(init, final["queries"], kp.n_queries, figure=out.figures / "queries.png")

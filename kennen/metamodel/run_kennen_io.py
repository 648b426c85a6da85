"""The ``kennen_io`` stage: kennen-io on the R split (Table 2) and on the E splits of ``kennen_io.splits`` (Table 3).

One task per split (and per extra metamodel seed of the R split), run in parallel on the
executor, the R split's first; :func:`run` writes through ``kennen.metamodel.runner``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kennen import data as mnist_data
from kennen.config import base_seed, section
from kennen.errors import KennenError
from kennen.metamodel.calibration import CalibrationParams, calibrate_scores
from kennen.metamodel.crafted import ZooSource
from kennen.metamodel.kennen_io import KennenIOParams, e_row, phase_rows, r_metrics, run_task, seed_metrics, tasks
from kennen.metamodel.kennen_o import KennenO, KennenOParams, accuracies
from kennen.metamodel.report import plot_bars, plot_images
from kennen.metamodel.runner import ATTRIBUTE_KEYS, Outputs, Report, e_split_rows, finish, train_tasks
from kennen.paper import TABLE3_KENNEN_IO
from kennen.queries import load_outputs, read_boxes
from kennen.seeds import Purpose, derive
from kennen.splits import SplitParams, read_split

SAMPLE = 12  # queries shown in the figure


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
        np.concatenate([start, learned[:n]]), [f"q{i} start" for i in range(n)] + [f"q{i} learned" for i in range(n)],
        figure, f"kennen-io: the first {n} of {n_queries} queries, before (top) and after training (bottom)", cols=n,
    )  # fmt: skip


def run(
    params: dict[str, Any], data: Path, outputs_npz: Path, boxes_csv: Path, models: Path, shards: Path, splits_dir: Path,
    out: Outputs,
) -> None:  # fmt: skip
    """Train, evaluate, calibrate and write kennen-io (the stage's docstring lists the outputs).

    Args:
        params: the whole params tree (sections ``kennen_io``, ``kennen_o`` (width, optimiser),
            ``calibration``, ``splits``, the seed, the zoo's provenance).
        data: ``mnist.npz``; outputs_npz: the stored queries (kennen-io starts from kennen-o's).
        boxes_csv, models, shards, splits_dir: the zoo and the splits.
        out: where to write.
    """
    kp = section(KennenIOParams, params, "kennen_io")
    ko = section(KennenOParams, params, "kennen_o")
    cp = section(CalibrationParams, params, "calibration")
    held = section(SplitParams, params, "splits").extrapolation
    check_splits(kp.splits, held)
    seed = derive(base_seed(params), Purpose.KENNEN_IO)
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
    # An E split that this zoo cannot fill gets an empty row, as in kennen_o_sweep.
    runnable = [n for n, s in splits.items() if s["train"] and s["test"]]
    job = functools.partial(
        run_task, source=ZooSource.at(shards, models, boxes), splits=splits, init=init, params=kp, hidden=ko.hidden,
        opt=ko.optimisers[ko.optimiser], seed=seed, val_fraction=cp.val_fraction,
    )  # fmt: skip
    todo = tasks(kp, runnable)
    results = train_tasks(
        job,
        todo,
        lambda t, r: f"kennen-io [{t[0]}, seed {t[1]}]: mean {accuracies(r['y_true'], r['y_pred'])['acc.mean']:.2f}",
    )
    r = results["r", 0]
    n_r = {"n_train": len(splits["r"]["train"]), "n_test": len(splits["r"]["test"])}
    metrics = r_metrics(r) | n_r | seed_metrics([results["r", k] for k in range(kp.seeds)])
    model = KennenO(r["features"]["test"].shape[1], ko.hidden)
    model.load_state_dict(r["model"])
    f = r["features"]
    cal = calibrate_scores(model, (f["val"], r["y_val"]), (f["test"], r["y_true"]), f["train"], cp,
                           base_seed(params), "kennen-io")  # fmt: skip
    metrics |= cal.metrics | {"n_fit": r["n_fit"]}
    firsts = {name: res for (name, k), res in results.items() if k == 0}
    rows, e_metrics = e_split_rows(
        kp.splits, splits, firsts, lambda name: e_row(name, splits[name], held[name], firsts[name], metrics)
    )
    metrics |= e_metrics
    report = Report(
        method="kennen-io",
        metrics=metrics,
        y_true=r["y_true"],
        y_pred=r["y_pred"],
        confusion_title=f"kennen-io ({kp.n_queries} learned queries, prob)",
        calibration=cal,
        calibration_method="temperature scaling per attribute",
        n_val=len(r["y_val"]),
        curve=[{f"train/{point['phase']}_loss": point["loss"]} for point in r["curve"]],
        tensors={f"mlp.{k}": v for k, v in r["model"].items()} | {"queries": torch.from_numpy(r["queries"])},
        meta={
            "method": "kennen-io",
            "n_queries": kp.n_queries,
            "output": "prob",
            "hidden": ko.hidden,
            "optimiser": ko.optimiser,
            "schedule": [[ph.train, ph.epochs] for ph in kp.schedule],
            "query_boxes": kp.query_boxes,
            "seed": r["seed"],
            "attributes": ATTRIBUTE_KEYS,
            "image_space": "pixels in [0, 1], [Q, 1, 28, 28]; normalise with MNIST mean/std before querying",
        },
        test_accuracy=metrics,
        inputs=[boxes_csv, models, shards, splits_dir],
        n_train=n_r["n_train"],
        n_test=n_r["n_test"],
        tables={"phases": phase_rows([results[t] for t in todo])} | ({"extrapolation": rows} if rows else {}),
    )
    finish(report, out, params, cp)
    if rows:
        plot_bars(rows, "split", "relative", "kennen-io on E splits, relative to R (R = 100, chance = 0)",
                  out.figures / "extrapolation.png", TABLE3_KENNEN_IO)  # fmt: skip
    _plot_queries(init, r["queries"], kp.n_queries, out.figures / "queries.png")

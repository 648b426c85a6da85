"""Many kennen-o trainings at once: parallel jobs, seed replicas, intervals, predictions files.

A stage's trainings (optimiser settings, seed replicas, sweep points) are independent,
so they run as tasks of ``kennen.parallel`` (a process pool by default), each on one
torch thread. One thread per task per core is both the fastest layout measured on the
2-core machine (``benchmarks/metamodel_speed.py``) and what makes a result independent
of the number of workers: a task computes the same numbers in any worker or in the
stage process. Training several MLPs as one batched model (stacked weights,
``torch.baddbmm``) was measured as well and not kept: on these CPUs a 1000-wide layer
on a batch of 100 boxes already fills the matrix units, and stacking three models
saved about 10% per model-step.

Each run is ``train_and_evaluate`` of its arguments (replica 0), the same training on
one thread; ``Result.metrics`` add 95% intervals that resample the test boxes'
configurations (``kennen.stats``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kennen.attributes import ATTRIBUTES
from kennen.errors import KennenError
from kennen.io import read_csv, write_csv
from kennen.metamodel.cv import checkpoint_rows
from kennen.metamodel.kennen_o import (
    EarlyStop,
    KennenO,
    KennenOParams,
    Optimiser,
    Result,
    accuracies,
    configs,
    features,
    fit_curve,
    model_seed,
    predict,
    targets,
    train_ids,
)
from kennen.parallel import run_tasks
from kennen.queries import CheckpointBoxes
from kennen.stats import bootstrap, seed_interval


def scored(
    y_true: np.ndarray, y_pred: np.ndarray, units: list[Any], seed: int, keys: list[str] | None = None
) -> dict[str, float]:
    """``accuracies`` over the test boxes plus their 95% intervals over resampled configurations ``units``
    (``acc.<key>_low``/``_high``)."""
    return accuracies(y_true, y_pred) | bootstrap(y_true, y_pred, units, keys, seed=seed)


@dataclass(frozen=True)
class Job:
    """One kennen-o training as a picklable task: training rows, test inputs, settings and the model seed."""

    x: torch.Tensor  # [N_train, D]
    y: torch.Tensor  # [N_train, 12]
    x_test: torch.Tensor  # [N_test, D]
    hidden: int
    opt: Optimiser
    seed: int  # the model seed (initialisation, batch order, carve)
    stop: EarlyStop | None = None
    keep_model: bool = False
    groups: tuple | None = None  # the training rows' configurations: the carve holds them out whole
    logits: bool = False  # also return the logits on the test rows (calibration on out-of-fold predictions)
    n_boxes: int | None = None  # the first n_boxes rows are final boxes, the rest checkpoints (None: all final)

    @property
    def cost(self) -> float:
        """Relative cost (multiply-adds of the fixed schedule), to start the longest jobs first."""
        return float(len(self.x) * (self.x.shape[1] + self.hidden) * self.hidden * self.opt.epochs)


def run_job(job: Job, threads: int | None = 1) -> dict[str, Any]:
    """Train and predict one job: ``{"y_pred": [N_test, 12], "state": state dict or None, "curve": Curve}``.

    A parallel task (module level, picklable). It runs on ``threads`` torch threads
    (None: as set), so that its numbers do not depend on where it runs.
    """
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        model, curve = fit_curve(
            job.x, job.y, job.hidden, job.opt, job.seed, stop=job.stop, groups=job.groups, n_boxes=job.n_boxes
        )
        state = model.state_dict() if job.keep_model else None
        out = {"y_pred": predict(model, job.x_test), "state": state, "curve": curve}
        if job.logits:
            with torch.inference_mode():
                out["logits"] = [z.double().numpy() for z in model.eval()(job.x_test).values()]
        return out
    finally:
        torch.set_num_threads(before)


def run_jobs(jobs: list[Job], max_workers: int | None = None) -> list[dict[str, Any]]:
    """``run_job`` of every job on the executor of ``kennen.parallel``; results in the order of ``jobs``."""
    index = {id(job): i for i, job in enumerate(jobs)}
    longest_first = sorted(jobs, key=lambda job: -job.cost)  # so that the last worker to finish idles least
    results: dict[int, dict[str, Any]] = {}
    for job, result in run_tasks(run_job, longest_first, len(jobs), max_workers):
        results[index[id(job)]] = result
    return [results[i] for i in range(len(jobs))]


@dataclass(frozen=True)
class Run:
    """One kennen-o training of a stage: split, features, optimiser setting and seed replica."""

    split: dict[str, list[int]]
    n_queries: int
    output: str
    opt: Optimiser
    n_train: int | None = None  # a seeded subset of the training boxes (None, or at least their number: all)
    replica: int = 0  # 0: the headline seed
    keep_model: bool = False
    early_stop: bool = True  # False: the fixed schedule whatever ``stop`` evaluate_runs is given
    logits: bool = False  # keep the test rows' logits (``Result.logits``)
    checkpoints: bool = False  # also learn from the checkpoint boxes of the training boxes' models


def stage_runs(kp: KennenOParams, split: dict[str, list[int]]) -> tuple[list[str], list[Run]]:
    """The ``kennen_o`` stage's trainings as (setting name per run, runs): ``kp.seeds`` replicas of the headline
    setting (the first keeps its model), one run of every other setting.

    Early stopping applies to the headline setting (and so to the sweeps) only: the other
    settings are comparisons as configured, and a slow learner such as the official SGD
    setting rises too slowly for a small validation carve to follow (measured: it stopped
    after about 20 of its 200 epochs, 6 points below its fixed schedule).
    """
    names, runs = [], []
    for name, opt in kp.optimisers.items():
        headline = name == kp.optimiser
        for k in range(kp.seeds if headline else 1):
            names.append(name)
            runs.append(
                Run(split, kp.n_queries, kp.output, opt, replica=k, keep_model=headline and k == 0, early_stop=headline)
            )
    return names, runs


def evaluate_runs(
    runs: list[Run],
    outputs: np.ndarray,
    boxes: list[dict[str, Any]],
    hidden: int,
    seed: int,
    stop: EarlyStop | None = None,
    max_workers: int | None = None,
    checkpoints: CheckpointBoxes | None = None,
) -> list[Result]:
    """Train and test every run in parallel; results in the order of ``runs``, metrics from ``scored``.

    Args:
        runs: the trainings.
        outputs: log-probabilities [N_boxes, Q, 10] (``queries.load_outputs``).
        boxes: the box table; row i of ``outputs`` is box i.
        hidden: kennen-o's width.
        seed: the base seed (subset: ``seed``; model: ``model_seed(seed, replica)``; the bootstrap's).
        stop: early stopping (None: the fixed schedule).
        max_workers: cap on local workers.
        checkpoints: the checkpoint boxes, for the runs that learn from them (``Run.checkpoints``).
    """
    if any(r.checkpoints for r in runs) and (checkpoints is None or not len(checkpoints.box)):
        raise KennenError("kennen_o.boxes: checkpoints, but the zoo recorded none (set train_zoo.checkpoints)")
    y = targets(boxes)
    x_cache: dict[tuple[int, str, bool], torch.Tensor] = {}

    def x_of(r: Run, of_checkpoints: bool = False) -> torch.Tensor:
        key = (r.n_queries, r.output, of_checkpoints)
        if key not in x_cache:
            x_cache[key] = features(checkpoints.outputs if of_checkpoints else outputs, r.n_queries, r.output)
        return x_cache[key]

    jobs = []
    for r in runs:
        x, train = x_of(r), train_ids(r.split, r.n_train, seed)
        extra = (checkpoints, x_of(r, True)) if r.checkpoints else None
        x_train, y_train, groups = training_rows(x, y, boxes, train, extra)
        jobs.append(
            Job(
                x_train,
                y_train,
                x[r.split["test"]],
                hidden,
                r.opt,
                model_seed(seed, r.replica),
                stop=stop if r.early_stop else None,
                keep_model=r.keep_model,
                groups=groups,
                logits=r.logits,
                n_boxes=len(train),
            )
        )
    results = []
    for r, job, out in zip(runs, jobs, run_jobs(jobs, max_workers), strict=True):
        model = None
        if out["state"] is not None:
            model = KennenO(job.x.shape[1], hidden)
            model.load_state_dict(out["state"])
            model.eval()
        test = r.split["test"]
        y_true = y[test].numpy()
        metrics = scored(y_true, out["y_pred"], list(configs(boxes, test)), seed) if test else {}
        results.append(Result(model, y_true, out["y_pred"], metrics, out["curve"], tuple(test), out.get("logits")))
    return results


def training_rows(
    x: torch.Tensor,
    y: torch.Tensor,
    boxes: list[dict[str, Any]],
    train: Sequence[int],
    checkpoints: tuple[CheckpointBoxes, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, tuple[Any, ...]]:
    """Features, labels and early-stopping carve groups of the boxes ``train``; with ``checkpoints`` (the boxes
    and their features), followed by the checkpoint boxes of those boxes' models, with their labels
    (:func:`kennen.metamodel.cv.checkpoint_rows`). The first ``len(train)`` rows are the final boxes."""
    x_train, y_train, groups = x[train], y[train], configs(boxes, train)
    if checkpoints is None:
        return x_train, y_train, groups
    ckpt, xc = checkpoints
    rows = checkpoint_rows(train, ckpt.box)
    owners = ckpt.box[rows]
    x_train, y_train = torch.cat([x_train, xc[rows]]), torch.cat([y_train, y[torch.from_numpy(owners)]])
    return x_train, y_train, groups + configs(boxes, owners.tolist())


def seed_metrics(results: list[Result]) -> dict[str, float]:
    """The spread of one setting over seed replicas: ``seeds.acc.mean`` with its t-interval and sd, per attribute mean and sd.

    Keys: ``seeds.n``, ``seeds.acc.mean``, ``seeds.acc.mean_low``, ``seeds.acc.mean_high``,
    ``seeds.acc.mean_sd``, ``seeds.acc.<key>`` and ``seeds.acc.<key>_sd``. With one replica
    only the means are given (an sd needs two).
    """
    out: dict[str, float] = {"seeds.n": len(results)}
    for key in [a.key for a in ATTRIBUTES] + ["mean"]:
        s = seed_interval([r.metrics[f"acc.{key}"] for r in results])
        out[f"seeds.acc.{key}"] = s["mean"]
        if len(results) > 1:
            out[f"seeds.acc.{key}_sd"] = s["sd"]
            if key == "mean":
                out["seeds.acc.mean_low"], out["seeds.acc.mean_high"] = s["low"], s["high"]
    return out


def write_predictions(path: Path, box_ids: list[int] | tuple[int, ...], y_true: np.ndarray, y_pred: np.ndarray) -> None:
    """Test-box predictions as CSV: ``box``, then ``<key>_true`` and ``<key>_pred`` per attribute (ATTRIBUTES order).

    One row per test box, in the split's (sorted) order. Values are label indices, the
    position of a value in ``Attribute.values`` (``kennen/attributes.py``), as
    ``kennen_o.targets`` and ``kennen_o.predict`` give them. ``read_predictions`` reads
    the file back, e.g. for ``uncertainty.paired_difference`` against another method on
    the same boxes.
    """
    columns = ["box"] + [f"{a.key}_{part}" for a in ATTRIBUTES for part in ("true", "pred")]
    rows = []
    for n, box in enumerate(box_ids):
        row: dict[str, int] = {"box": int(box)}
        for i, a in enumerate(ATTRIBUTES):
            row[f"{a.key}_true"], row[f"{a.key}_pred"] = int(y_true[n, i]), int(y_pred[n, i])
        rows.append(row)
    write_csv(path, rows, columns)


def read_predictions(path: Path) -> tuple[list[int], np.ndarray, np.ndarray]:
    """(box ids, y_true [N, 12], y_pred [N, 12]) from a file of ``write_predictions``."""
    rows = read_csv(path)
    try:
        ids = [int(r["box"]) for r in rows]
        y_true = np.array([[int(r[f"{a.key}_true"]) for a in ATTRIBUTES] for r in rows], dtype=np.int64)
        y_pred = np.array([[int(r[f"{a.key}_pred"]) for a in ATTRIBUTES] for r in rows], dtype=np.int64)
    except (KeyError, ValueError) as e:
        raise KennenError(f"{path}: not a kennen-o predictions file (column or value {e})") from None
    return ids, y_true.reshape(-1, len(ATTRIBUTES)), y_pred.reshape(-1, len(ATTRIBUTES))

"""The metamodel runner: what every metamodel stage does around its own training.

kennen-i, kennen-io (``kennen.metamodel.run_kennen_i`` / ``run_kennen_io``) and the ImageNet
family probe (``kennen.imagenet.run_probe``, which trains kennen-o's MLP with kennen-o's own
code) run their trainings as parallel tasks with :func:`train_tasks`; kennen-o
(``kennen.metamodel.run_kennen_o``) runs its settings and seed replicas through
``kennen.metamodel.runs``. The three MNIST metamodels then hand
one :class:`Report` to :func:`finish`, which writes the same set of outputs for each:
the metrics JSON, the calibration's plot data and reliability diagram, per-attribute
confusion matrices, DVCLive training curves, extra plot tables, and the trained
metamodel (``kennen.metamodel.artifact``) with its zoo provenance and the digest of the
data it learned from. :func:`e_split_rows` summarises the E splits (paper Table 3) next
to the R split's result.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from dvclive import Live

from kennen.attributes import ATTRIBUTES
from kennen.io import write_json
from kennen.log import progress
from kennen.metamodel.artifact import data_digest, save_metamodel, zoo_provenance
from kennen.metamodel.calibration import Calibrated, CalibrationParams
from kennen.metamodel.report import plot_reliability, write_confusions, write_table
from kennen.parallel import run_tasks

ATTRIBUTE_KEYS = [a.key for a in ATTRIBUTES]  # the metamodel JSON's ``attributes``: the heads' order
OUTPUTS = ("metrics", "headline", "plots", "figures", "model", "live")  # a metamodel stage's output arguments
E_KEYS = ("relative", "acc_mean", "acc_mean_low", "acc_mean_high")  # an E split's entries in the metrics


@dataclass(frozen=True)
class Outputs:
    """Where a metamodel stage writes: metrics JSON, its headline JSON, plot-data and figure folders, metamodel
    stem, DVCLive folder."""

    metrics: Path
    headline: Path
    plots: Path
    figures: Path
    model: Path
    live: Path

    @classmethod
    def of(cls, args: argparse.Namespace) -> Outputs:
        """From a stage's parsed ``--metrics --headline --plots --figures --model --live`` arguments."""
        return cls(*(Path(getattr(args, name)) for name in OUTPUTS))


@dataclass
class Report:
    """One trained metamodel, as :func:`finish` writes it.

    ``meta`` holds the method's own entries of the metamodel JSON (method, output type, ...);
    ``finish`` appends the zoo provenance, ``test_accuracy``, the data digest and the calibration.
    """

    method: str  # "kennen-o", "kennen-i", "kennen-io"
    metrics: dict[str, Any]
    y_true: np.ndarray  # [N_test, 12] label indices
    y_pred: np.ndarray  # [N_test, 12]
    confusion_title: str
    calibration: Calibrated
    calibration_method: str
    n_val: int  # boxes the calibration was fitted on
    curve: list[dict[str, float]]  # DVCLive: the metrics logged at each step, in logging order
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]
    test_accuracy: dict[str, float]
    inputs: list[Path]  # the files the metamodel learned from (their digest goes into the JSON)
    n_train: int  # the R split's boxes, for the zoo provenance
    n_test: int
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # plots/<name>.csv


def train_tasks(
    job: Callable[[Any], Any],
    tasks: Sequence[Any],
    describe: Callable[[Any, Any], str] | None = None,
    desc: str | None = None,
) -> dict[Any, Any]:
    """Run ``job`` on every task on the executor of ``kennen.parallel``.

    Args:
        job: the task function (picklable, module level).
        tasks: the tasks (hashable); the results come back keyed by task, so that what a stage builds from
            them follows the task order, never the order the workers finish in.
        describe: a log line per finished task, from (task, result).
        desc: a progress bar / periodic log line with this name.

    Returns:
        {task: result}, in the order the tasks finished.
    """
    log = logging.getLogger("kennen.runner")
    done = run_tasks(job, list(tasks), len(tasks))
    results = {}
    for task, result in progress(done, len(tasks), desc, log) if desc else done:
        results[task] = result
        if describe is not None:
            log.info("%s", describe(task, result))
    return results


def log_calibration(method: str, cal: Calibrated) -> None:
    logging.getLogger("kennen.runner").info(
        "%s calibration: ECE %.3f -> %.3f; min confidence %.2f answers %.1f%% at %.1f%%", method,
        cal.metrics["ece_before"], cal.metrics["ece_after"], cal.min_confidence, cal.metrics["abstain.coverage"],
        cal.metrics["abstain.accuracy"],
    )  # fmt: skip


def write_live(path: Path, steps: Iterable[dict[str, float]]) -> None:
    """DVCLive curves: one step per entry, each metric of the entry logged at that step."""
    live = Live(str(path), dvcyaml=False, save_dvc_exp=False, report=None)
    for step in steps:
        for name, value in step.items():
            live.log_metric(name, value)
        live.next_step()
    live.end()


def e_split_rows(
    names: Iterable[str],
    splits: dict[str, dict[str, list[int]]],
    results: dict[str, dict[str, Any]],
    row: Callable[[str], dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Table 3 rows of the E splits in ``names`` and their metrics (``<split>.relative`` etc.).

    ``row(name)`` builds a trained split's row; a split this zoo cannot fill (no training or no
    test boxes: not in ``results``) gets a row of NaNs and no metrics, as in ``kennen_o_sweep``.
    """
    rows, metrics = [], {}
    for name in names:
        if name == "r":
            continue
        if name in results:
            r = row(name)
            metrics |= {f"{name}.{k}": r[k] for k in E_KEYS}
        else:
            logging.getLogger("kennen.runner").warning("E split %s: no training or no test boxes in this zoo", name)
            nan = float("nan")
            r = {"split": name, "n_train": len(splits[name]["train"]), "n_test": len(splits[name]["test"]),
                 "acc_mean": nan, "r_acc_mean": nan, "relative": nan, "acc_mean_low": nan, "acc_mean_high": nan}  # fmt: skip
        rows.append(r)
    return rows, metrics


# The cross-validated means over configurations and over boxes, with their intervals, and what they were
# tested on. `dvc exp show` lists a file's keys in file order, so the metrics file leads with them;
# `dvc metrics diff` sorts the keys within a file, so they also go to a file of their own, listed first
# among the stage's metrics in dvc.yaml (files are shown in that order).
HEADLINE = tuple(f"cv.{kind}.mean{end}" for kind in ("acc_config", "acc") for end in ("", "_low", "_high"))
HEADLINE_COUNTS = ("cv.n_boxes", "cv.n_configs")


def headline_first(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` reordered: ``HEADLINE``, then the rest of the cross-validated block, then the others."""
    rank = {key: i for i, key in enumerate(HEADLINE)}
    order = sorted(metrics, key=lambda k: (rank.get(k, len(rank)), not k.startswith("cv.")))
    return {k: metrics[k] for k in order}


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline file: ``HEADLINE`` and ``HEADLINE_COUNTS``, those of them ``metrics`` has."""
    return {k: metrics[k] for k in (*HEADLINE, *HEADLINE_COUNTS) if k in metrics}


def finish(report: Report, out: Outputs, params: dict[str, Any], cp: CalibrationParams) -> None:
    """Write everything a metamodel stage outputs besides its own figures (module docstring)."""
    r, cal = report, report.calibration
    log_calibration(r.method, cal)
    write_json(out.metrics, headline_first(r.metrics))
    write_json(out.headline, headline(r.metrics))
    for name, rows in r.tables.items():
        write_table(out.plots / f"{name}.csv", rows)
    write_table(out.plots / "reliability.csv", cal.reliability)
    write_table(out.plots / "risk_coverage.csv", cal.risk_coverage)
    plot_reliability(cal.reliability, out.figures / "reliability.png", f"{r.method}: test boxes, all attributes")
    write_confusions(r.y_true, r.y_pred, out.plots / "confusion", out.figures / "confusion.png", r.confusion_title)
    write_live(out.live, r.curve)
    save_metamodel(
        out.model,
        r.tensors | cal.tensors,
        r.meta
        | {
            "zoo": zoo_provenance(params, r.n_train, r.n_test),
            "test_accuracy": r.test_accuracy,
            "provenance": {"data_sha256": data_digest(r.inputs)},
        }
        | cal.meta(r.calibration_method, r.n_val, cp),
    )

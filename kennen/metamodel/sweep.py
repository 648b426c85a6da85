"""Figure 4 and Table 3 analogues: kennen-o against training-set size, query count, output type, and E splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kennen.attributes import ATTRIBUTES, BY_KEY
from kennen.config import base_seed, require, section
from kennen.errors import KennenError
from kennen.io import read_json
from kennen.metamodel.encode import OUTPUT_TYPES
from kennen.metamodel.kennen_o import KennenOParams, Result
from kennen.metamodel.metrics import relative
from kennen.metamodel.report import plot_bars, plot_curve, write_table
from kennen.metamodel.runs import Run, evaluate_runs, read_predictions, scored
from kennen.metamodel.uncertainty import bootstrap
from kennen.paper import KENNEN_O_BY_OUTPUT, TABLE3_KENNEN_IO
from kennen.queries import load_outputs, read_boxes
from kennen.splits import SplitParams, read_split

SWEEPS = ("n_train", "n_queries", "output", "extrapolation")
# Attributes whose test values an E split never shows in training cannot be predicted: leave them out of
# its average, together with the attribute derived from them (size <-> split).
LINKED = {"size": ("split",), "split": ("size",)}


@dataclass(frozen=True)
class SweepParams:
    """``kennen_o_sweep`` section of params.yaml."""

    n_train: tuple[int, ...] = (50, 100, 200, 500, 1000, 2000, 5000)
    n_queries: tuple[int, ...] = (1, 10, 100, 1000)
    outputs: tuple[str, ...] = OUTPUT_TYPES

    def check(self, where: str) -> None:
        for key in ("n_train", "n_queries", "outputs"):
            require(len(getattr(self, key)) > 0, f"{where}.{key}", "needs at least one value")
        require(all(n >= 1 for n in self.n_train), f"{where}.n_train", "values must be at least 1")
        require(all(n >= 1 for n in self.n_queries), f"{where}.n_queries", "values must be at least 1")
        for o in self.outputs:
            require(o in OUTPUT_TYPES, f"{where}.outputs", f"{o!r} is not one of {', '.join(OUTPUT_TYPES)}")


def scaled(metrics: dict[str, float], keys: list[str]) -> float:
    """Mean over ``keys`` of accuracy rescaled to chance = 0, perfect = 100 (Figure 4's axis)."""
    return float(np.mean([relative(metrics[f"acc.{k}"], BY_KEY[k].chance, 100.0) for k in keys]))


def _row(x_name: str, x: Any, metrics: dict[str, float], n_train: int, per_attribute: bool = False) -> dict[str, Any]:
    keys = [a.key for a in ATTRIBUTES]
    row = {
        x_name: x,
        "n_train": n_train,
        "acc_mean": metrics["acc.mean"],
        "acc_mean_low": metrics["acc.mean_low"],  # 95% bootstrap interval over the test boxes
        "acc_mean_high": metrics["acc.mean_high"],
        "acc_scaled": round(scaled(metrics, keys), 2),
    }
    return row | ({k: metrics[f"acc.{k}"] for k in keys} if per_attribute else {})


def extrapolation_keys(held: dict[str, Any]) -> list[str]:
    """The attributes an E split's average keeps: all but the held-out ones and those linked to them."""
    skip = set(held) | {k for h in held for k in LINKED.get(h, ())}
    return [a.key for a in ATTRIBUTES if a.key not in skip]


def extrapolation_row(
    name: str, split: dict[str, list[int]], held: dict[str, Any], metrics: dict[str, float], r_metrics: dict[str, float]
) -> dict[str, Any]:
    """Table 3 row of one E split: mean accuracy over the attributes its training boxes can show, and relative to R.

    The average leaves out the held-out attributes (and the one linked to them); relative
    accuracy = 100 x (E - chance) / (R - chance) over the same attributes.
    """
    keys = extrapolation_keys(held)
    acc = float(np.mean([metrics[f"acc.{k}"] for k in keys]))
    r_acc = float(np.mean([r_metrics[f"acc.{k}"] for k in keys]))
    chance = float(np.mean([BY_KEY[k].chance for k in keys]))
    return {
        "split": name,
        "n_train": len(split["train"]),
        "n_test": len(split["test"]),
        "acc_mean": round(acc, 2),
        "r_acc_mean": round(r_acc, 2),
        "relative": round(relative(acc, chance, r_acc), 1),
    }


def _empty_row(name: str, split: dict[str, list[int]]) -> dict[str, Any]:
    nan = float("nan")
    return {"split": name, "n_train": len(split["train"]), "n_test": len(split["test"])} | dict.fromkeys(
        ("acc_mean", "acc_mean_low", "acc_mean_high", "r_acc_mean", "relative"), nan
    )


def run_sweep(
    name: str,
    sp: SweepParams,
    kp: KennenOParams,
    outputs: np.ndarray,
    boxes: list[dict[str, Any]],
    splits: dict[str, dict[str, list[int]]],
    held: dict[str, dict[str, Any]],
    seed: int,
    r_metrics: dict[str, float] | None = None,
    headline: tuple[list[int], np.ndarray, np.ndarray] | None = None,
) -> list[dict[str, Any]]:
    """Rows of one sweep; every point is a full kennen-o training with the headline settings (headline seed).

    The points run in parallel (``runs.evaluate_runs``). ``headline`` = (test box ids, y_true,
    y_pred) of the ``kennen_o`` stage's headline (``runs.read_predictions``): the point that is
    the headline's own training (R split, all its boxes, ``kennen_o.n_queries`` and
    ``kennen_o.output``) is read from it instead of being trained again, the same
    training with the same seed. Every row carries the 95% bootstrap interval of its mean
    over the test boxes (``acc_mean_low``, ``acc_mean_high``; for E splits over the kept attributes).
    """
    r = splits["r"]
    points = sweep_points(name, sp, kp, outputs, splits, held)
    scores = evaluate_points(points, kp, outputs, boxes, seed, r, headline if name != "extrapolation" else None)
    if name == "n_train":
        return [_row("n_train", n, scores[n].metrics, n) for n, _ in points]
    if name == "n_queries":
        return [_row("n_queries", q, scores[q].metrics, len(r["train"])) for q in sp.n_queries]
    if name == "output":
        # Per attribute too: Table 2 has a row per output type.
        return [_row("output", o, scores[o].metrics, len(r["train"]), per_attribute=True) for o in sp.outputs]
    assert r_metrics is not None
    rows = []
    for split_name, held_values in held.items():
        if split_name not in scores:
            rows.append(_empty_row(split_name, splits[split_name]))
            continue
        res = scores[split_name]
        row = extrapolation_row(split_name, splits[split_name], held_values, res.metrics, r_metrics)
        ci = bootstrap(res.y_true, res.y_pred, extrapolation_keys(held_values))  # the interval of the row's own mean
        rows.append(row | {"acc_mean_low": ci["acc.mean_low"], "acc_mean_high": ci["acc.mean_high"]})
    return rows


def sweep_points(
    name: str,
    sp: SweepParams,
    kp: KennenOParams,
    outputs: np.ndarray,
    splits: dict[str, dict[str, list[int]]],
    held: dict[str, dict[str, Any]],
) -> list[tuple[Any, Run]]:
    """The trainings of one sweep as (label, run): label = the swept value, or the E split's name."""
    opt = kp.optimisers[kp.optimiser]
    r = splits["r"]
    if name == "n_train":
        return [
            (n, Run(r, kp.n_queries, kp.output, opt, n_train=n))
            for n in sorted({min(n, len(r["train"])) for n in sp.n_train})
        ]
    if name == "n_queries":
        too_many = [q for q in sp.n_queries if q > outputs.shape[1]]
        if too_many:
            raise KennenError(
                f"kennen_o_sweep.n_queries: {too_many} exceed the {outputs.shape[1]} stored queries (queries.n_max)"
            )
        return [(q, Run(r, q, kp.output, opt)) for q in sp.n_queries]
    if name == "output":
        return [(o, Run(r, kp.n_queries, o, opt)) for o in sp.outputs]
    if name == "extrapolation":
        return [
            (s, Run(splits[s], kp.n_queries, kp.output, opt)) for s in held if splits[s]["train"] and splits[s]["test"]
        ]
    raise ValueError(f"unknown sweep {name!r}")


def evaluate_points(
    points: list[tuple[Any, Run]],
    kp: KennenOParams,
    outputs: np.ndarray,
    boxes: list[dict[str, Any]],
    seed: int,
    r: dict[str, list[int]],
    headline: tuple[list[int], np.ndarray, np.ndarray] | None,
) -> dict[Any, Result]:
    """The result of each point, keyed by its label; the headline's own point read from ``headline`` (curve None)."""
    out = {}
    if headline is not None and list(headline[0]) == list(r["test"]):
        ids, y_true, y_pred = headline
        for label, run in points:
            all_boxes = run.n_train is None or run.n_train >= len(r["train"])
            if all_boxes and (run.n_queries, run.output) == (kp.n_queries, kp.output):
                out[label] = Result(None, y_true, y_pred, scored(y_true, y_pred), None, tuple(ids))
    todo = [(label, run) for label, run in points if label not in out]
    results = evaluate_runs([run for _, run in todo], outputs, boxes, kp.hidden, seed, kp.early_stop)
    return out | {label: res for (label, _), res in zip(todo, results, strict=True)}


# How the curve sweeps are drawn: (x column, x label, title); the bar sweeps carry the paper's values.
_CURVES = {
    "n_train": ("n_train", "training boxes", "kennen-o vs. number of training models"),
    "n_queries": ("n_queries", "queries", "kennen-o vs. number of queries"),
}


def run_stage(name: str, params: dict[str, Any], outputs: Path, boxes_csv: Path, splits_dir: Path, r_metrics: Path,
              predictions: Path, plots: Path, figures: Path) -> list[dict[str, Any]]:  # fmt: skip
    """The ``kennen_o_sweep@<name>`` stage: run one sweep, write its table and figure, return its rows."""
    kp = section(KennenOParams, params, "kennen_o")
    sp = section(SweepParams, params, "kennen_o_sweep")
    held = section(SplitParams, params, "splits").extrapolation
    boxes = read_boxes(boxes_csv)
    out, _ = load_outputs(outputs, boxes)
    splits = {s: read_split(splits_dir, s, boxes) for s in ("r", *held)}
    headline = read_predictions(predictions)
    rows = run_sweep(name, sp, kp, out, boxes, splits, held, base_seed(params), read_json(r_metrics), headline)
    write_table(plots / f"sweep_{name}.csv", rows)
    figure = figures / f"sweep_{name}.png"
    if name in _CURVES:
        x, label, title = _CURVES[name]
        plot_curve(rows, x, label, title, figure, log_x=True)
    elif name == "output":
        plot_bars(rows, "output", "acc_mean", "kennen-o mean accuracy by output type", figure, KENNEN_O_BY_OUTPUT)
    else:
        title = "kennen-o on E splits, relative to R (R = 100, chance = 0)"
        plot_bars(rows, "split", "relative", title, figure, TABLE3_KENNEN_IO)
    return rows

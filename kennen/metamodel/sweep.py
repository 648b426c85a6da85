"""Figure 4 and Table 3 analogues: kennen-o against training-set size, query count, output type, and E splits.

The first three sweeps run in the cross-validation folds (``data/splits/folds.json``), as the
``kennen_o`` headline does: every point predicts every box once, out of fold, and its accuracy
is reported over boxes and over configurations with intervals that resample configurations
(``kennen.stats``). The point that is the headline's own training (all training boxes of each
fold, ``kennen_o.n_queries`` queries, ``kennen_o.output``) is read from the headline's
out-of-fold predictions instead of being trained again.

- ``n_train``: a learning curve. Each point draws ``subsets`` random subsets of n training boxes
  in every fold (the same subsets' seeds for every fold), so its spread shows the subset
  noise the one-subset curve of the paper's Figure 4 hides. A power law
  ``acc(n) = c - a * n^(-b)`` is fitted to the points' means over configurations, and refitted
  on configuration-bootstrap resamples to say how many boxes would reach given accuracies.
  With ``curves`` holding ``checkpoints`` (ours), a second curve learns from the same subsets' boxes
  and the checkpoint boxes of their models (its first ``checkpoint_subsets`` subsets); its columns in
  the table are prefixed ``checkpoints_``, its fit ``checkpoints.fit.*``.
- ``n_queries``, ``output``: one training per fold and point.
- ``extrapolation``: the paper's E splits (Table 3), one training each.

Apart from that second curve, every sweep learns from the final models' boxes: the paper's recipe,
whatever ``kennen_o.boxes`` the headline uses (a point is read back from the headline only when
its training is the headline's).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kennen.attributes import ATTRIBUTES, BY_KEY
from kennen.config import base_seed, bounded, require, section
from kennen.errors import KennenError
from kennen.io import write_json
from kennen.metamodel.cv import out_of_fold, units_of
from kennen.metamodel.encode import OUTPUT_TYPES
from kennen.metamodel.kennen_o import BOXES, KennenOParams, targets
from kennen.metamodel.metrics import relative
from kennen.metamodel.report import plot_bars, plot_curve, write_table
from kennen.metamodel.runs import Run, evaluate_runs, read_predictions
from kennen.paper import KENNEN_O_BY_OUTPUT, METHOD_MEANS, PAPER_ZOO, TABLE3_KENNEN_IO
from kennen.queries import CheckpointBoxes, load_checkpoint_boxes, load_outputs, read_boxes
from kennen.schemas import read_metrics
from kennen.splits import SplitParams, fold_split, read_folds, read_split, subset
from kennen.stats import accuracies as box_accuracies
from kennen.stats import bootstrap, resample

SWEEPS = ("n_train", "n_queries", "output", "extrapolation")
# Attributes whose test values an E split never shows in training cannot be predicted: leave them out of
# its average, together with the attribute derived from them (size <-> split).
LINKED = {"size": ("split",), "split": ("size",)}


@dataclass(frozen=True)
class SweepParams:
    """``kennen_o_sweep`` section of params.yaml."""

    n_train: tuple[int, ...] = bounded(100_000, (50, 100, 200, 500, 1000, 2000, 5000))
    n_queries: tuple[int, ...] = bounded(10_000, (1, 10, 100, 1000))  # MNIST test images
    outputs: tuple[str, ...] = OUTPUT_TYPES
    subsets: int = bounded(1_000, 5)  # random training subsets per learning-curve point (and fold)
    targets: tuple[float, ...] = (65.0, METHOD_MEANS["kennen-o"])  # accuracies the fitted curve is asked about
    curves: tuple[str, ...] = ("final",)  # learning curves by training boxes (kennen_o.BOXES); final comes first
    checkpoint_subsets: int = bounded(1_000, 3)  # subsets per point of the checkpoints curve (its first ones)

    def check(self, where: str) -> None:
        require(self.curves[:1] == ("final",), f"{where}.curves", f"must begin with final, got {list(self.curves)}")
        unknown = [c for c in self.curves if c not in BOXES]
        require(not unknown and len(set(self.curves)) == len(self.curves), f"{where}.curves",
                f"expected distinct values of {', '.join(BOXES)}, got {list(self.curves)}")  # fmt: skip
        require(self.checkpoint_subsets >= 1, f"{where}.checkpoint_subsets", "must be at least 1")
        for key in ("n_train", "n_queries", "outputs"):
            require(len(getattr(self, key)) > 0, f"{where}.{key}", "needs at least one value")
        require(all(n >= 1 for n in self.n_train), f"{where}.n_train", "values must be at least 1")
        require(all(n >= 1 for n in self.n_queries), f"{where}.n_queries", "values must be at least 1")
        require(self.subsets >= 1, f"{where}.subsets", f"must be at least 1, got {self.subsets}")
        for o in self.outputs:
            require(o in OUTPUT_TYPES, f"{where}.outputs", f"{o!r} is not one of {', '.join(OUTPUT_TYPES)}")


def scaled(metrics: dict[str, float], keys: list[str]) -> float:
    """Mean over ``keys`` of accuracy rescaled to chance = 0, perfect = 100 (Figure 4's axis)."""
    return float(np.mean([relative(metrics[f"acc.{k}"], BY_KEY[k].chance, 100.0) for k in keys]))


def _row(
    x_name: str, x: Any, y_true: np.ndarray, y_pred: np.ndarray, units: list[Any], seed: int, n_train: float
) -> dict[str, Any]:
    """A sweep point's row from its out-of-fold predictions: means over boxes and over configurations with
    their intervals, the chance-scaled mean, and every attribute's accuracy over boxes."""
    keys = [a.key for a in ATTRIBUTES]
    acc = box_accuracies(y_true, y_pred)
    acc_config = box_accuracies(y_true, y_pred, units=units, per_config=True)
    ci = bootstrap(y_true, y_pred, units, seed=seed)
    ci_config = bootstrap(y_true, y_pred, units, per_config=True, seed=seed)
    row = {
        x_name: x,
        "n_train": round(float(n_train), 1),
        "acc_mean": acc["mean"],
        "acc_mean_low": ci["acc.mean_low"],  # 95% interval over resampled configurations
        "acc_mean_high": ci["acc.mean_high"],
        "acc_config_mean": acc_config["mean"],
        "acc_config_mean_low": ci_config["acc.mean_low"],
        "acc_config_mean_high": ci_config["acc.mean_high"],
        "acc_scaled": round(scaled({f"acc.{k}": acc[k] for k in keys}, keys), 2),
    }
    return row | {k: acc[k] for k in keys}


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


Point = tuple[Any, int, str]  # (the swept value, the subset or seed replica, the training boxes)


def sweep_points(
    name: str,
    sp: SweepParams,
    kp: KennenOParams,
    outputs: np.ndarray,
    splits: dict[str, dict[str, list[int]]],
    folds: list[list[int]],
    held: dict[str, dict[str, Any]],
    seed: int,
) -> list[tuple[Point, int, Run]]:
    """The trainings of one sweep as ((value, replica), fold, run); fold -1 for an E split's single training.

    Learning-curve subsets are seeded by (value, replica, fold) and the metamodel seed by the replica, so
    a point's replicas differ in both; the checkpoints curve's subsets are the final curve's first ones.
    A value at least a fold's training size takes all of them.
    """
    opt = kp.optimisers[kp.optimiser]
    k = range(len(folds))
    if name == "n_train":
        smallest = min(len(fold_split(folds, f)["train"]) for f in k)
        values = sorted({min(n, smallest) for n in sp.n_train})
        out = []
        for boxes in sp.curves:
            ckpt = boxes == "checkpoints"
            for n in values:
                full = n >= smallest
                for r in range(sp.checkpoint_subsets if ckpt else sp.subsets):
                    for f in k:
                        split = fold_split(folds, f)
                        if not full:
                            split = {"train": subset(split["train"], n, seed, n, r, f), "test": split["test"]}
                        run = Run(split, kp.n_queries, kp.output, opt, replica=r, checkpoints=ckpt)
                        out.append(((n if not full else "all", r, boxes), f, run))
        return out
    if name == "n_queries":
        too_many = [q for q in sp.n_queries if q > outputs.shape[1]]
        if too_many:
            raise KennenError(
                f"kennen_o_sweep.n_queries: {too_many} exceed the {outputs.shape[1]} stored queries (queries.n_max)"
            )
        return [((q, 0, "final"), f, Run(fold_split(folds, f), q, kp.output, opt)) for q in sp.n_queries for f in k]
    if name == "output":
        return [((o, 0, "final"), f, Run(fold_split(folds, f), kp.n_queries, o, opt)) for o in sp.outputs for f in k]
    if name == "extrapolation":
        return [
            ((s, 0, "final"), -1, Run(splits[s], kp.n_queries, kp.output, opt))
            for s in held
            if splits[s]["train"] and splits[s]["test"]
        ]
    raise ValueError(f"unknown sweep {name!r}")


def _is_headline(name: str, point: Point, kp: KennenOParams) -> bool:
    value, replica, boxes = point
    return (
        replica == 0
        and boxes == kp.boxes
        and (
            (name == "n_train" and value == "all")
            or (name == "n_queries" and value == kp.n_queries)
            or (name == "output" and value == kp.output)
        )
    )


def evaluate_points(
    name: str,
    points: list[tuple[Point, int, Run]],
    kp: KennenOParams,
    outputs: np.ndarray,
    boxes: list[dict[str, Any]],
    folds: list[list[int]],
    seed: int,
    headline: np.ndarray | None,
    checkpoints: CheckpointBoxes | None = None,
) -> dict[Point, np.ndarray]:
    """Out-of-fold predictions [N, 12] of every point (E splits: the test boxes' predictions), by point.

    ``headline``: the ``kennen_o`` stage's out-of-fold predictions, which stand for the point that is
    its own training (not trained again; None: every point is trained). ``checkpoints``: the checkpoint
    boxes, for the points that learn from them.
    """
    known = {p for p, _, _ in points if headline is not None and _is_headline(name, p, kp)}
    todo = [(p, f, run) for p, f, run in points if p not in known]
    runs = [run for _, _, run in todo]
    results = evaluate_runs(runs, outputs, boxes, kp.hidden, seed, kp.early_stop, checkpoints=checkpoints)
    per_fold: dict[Point, list[np.ndarray]] = {}
    out: dict[Point, np.ndarray] = dict.fromkeys(known, headline)
    for (p, f, _), res in zip(todo, results, strict=True):
        if f < 0:
            out[p] = res.y_pred
        else:
            per_fold.setdefault(p, [None] * len(folds))[f] = res.y_pred
    return out | {p: out_of_fold(folds, preds, len(boxes)) for p, preds in per_fold.items()}


def power_law(n: np.ndarray, c: float, a: float, b: float) -> np.ndarray:
    """The learning curve's model: accuracy c - a * n^(-b) (c: the plateau)."""
    return c - a * np.power(n, -b)


def _fit(ns: np.ndarray, accs: np.ndarray) -> tuple[float, float, float] | None:
    import warnings

    from scipy.optimize import OptimizeWarning, curve_fit

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)  # few points: no covariance, the bootstrap gives one
            (c, a, b), _ = curve_fit(
                power_law, ns, accs, p0=(accs.max() + 5, 30.0, 0.5), bounds=([0, 0, 0.01], [100, 1e4, 3]), maxfev=5000
            )
    except (RuntimeError, ValueError):
        return None
    return float(c), float(a), float(b)


def boxes_for(target: float, c: float, a: float, b: float) -> float:
    """Training boxes at which the fitted curve reaches ``target`` (inf when its plateau is below)."""
    return float((a / (c - target)) ** (1.0 / b)) if c > target else float("inf")


def fit_learning_curve(
    y_true: np.ndarray,
    preds: dict[Point, np.ndarray],
    sizes: dict[Any, float],
    units: list[Any],
    targets_: tuple[float, ...],
    seed: int,
    n_boot: int = 200,
) -> dict[str, float]:
    """Fit ``power_law`` to the points' mean accuracy over configurations (mean over subsets), and refit it on
    ``n_boot`` configuration-bootstrap resamples: the parameters and the boxes needed for each target, with
    95% intervals (None: the curve's plateau stays below the target, so no number of boxes reaches it).

    ``sizes``: the mean number of training boxes of each swept value (``all`` included).
    """
    from kennen.stats import balanced_scores, per_config_weights

    values = sorted(sizes, key=lambda v: sizes[v])
    ns = np.array([sizes[v] for v in values], dtype=float)
    weights = resample(units, n_boot, seed) * per_config_weights(units)[None, :]
    keys = [a.key for a in ATTRIBUTES]

    def curve(w: np.ndarray) -> np.ndarray:  # [B, points]: mean over subsets of the mean accuracy
        per_value = {v: [] for v in values}
        for (v, *_), pred in preds.items():
            per_value[v].append(balanced_scores(w, y_true, pred, keys)["mean"])
        return np.stack([np.mean(per_value[v], axis=0) for v in values], axis=1)

    point = curve(per_config_weights(units)[None, :])[0]
    fit = _fit(ns, point)
    out: dict[str, float] = {"fit.points": len(values)}
    if fit is None:
        return out | {"fit.ok": 0.0}
    out |= {"fit.ok": 1.0, "fit.c": round(fit[0], 2), "fit.a": round(fit[1], 2), "fit.b": round(fit[2], 3)}
    boot = [f for f in (_fit(ns, row) for row in curve(weights)) if f is not None]
    for name, i in (("c", 0), ("b", 2)):
        lo, hi = np.percentile([f[i] for f in boot], [2.5, 97.5])
        out[f"fit.{name}_low"], out[f"fit.{name}_high"] = round(float(lo), 3), round(float(hi), 3)
    for t in targets_:
        need = np.array([boxes_for(t, *f) for f in boot])
        lo, hi = np.quantile(need, [0.025, 0.975], method="inverted_cdf")  # order statistics: inf stays inf
        key = f"fit.boxes_for_{t:g}"
        out[key], out[f"{key}_low"], out[f"{key}_high"] = (_finite(v) for v in (boxes_for(t, *fit), lo, hi))
    out["fit.n_boot"] = len(boot)
    return out


def _finite(v: float) -> float | None:
    return round(float(v), 0) if np.isfinite(v) else None


def run_sweep(
    name: str,
    sp: SweepParams,
    kp: KennenOParams,
    outputs: np.ndarray,
    boxes: list[dict[str, Any]],
    splits: dict[str, dict[str, list[int]]],
    folds: list[list[int]],
    held: dict[str, dict[str, Any]],
    seed: int,
    r_metrics: dict[str, float] | None = None,
    headline: np.ndarray | None = None,
    checkpoints: CheckpointBoxes | None = None,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Rows of one sweep, and its summary metrics (the learning curves' fits; empty for the other sweeps).

    Every point is a full kennen-o training per fold with the headline settings, in parallel
    (``runs.evaluate_runs``); ``headline``: the ``kennen_o`` stage's out-of-fold predictions;
    ``checkpoints``: the checkpoint boxes (needed when ``sp.curves`` holds ``checkpoints``).
    """
    points = sweep_points(name, sp, kp, outputs, splits, folds, held, seed)
    preds = evaluate_points(name, points, kp, outputs, boxes, folds, seed, headline, checkpoints)
    y = targets(boxes).numpy()
    units = units_of(boxes)
    if name == "extrapolation":
        assert r_metrics is not None
        rows = []
        for split_name, held_values in held.items():
            if (split_name, 0, "final") not in preds:
                rows.append(_empty_row(split_name, splits[split_name]))
                continue
            test = splits[split_name]["test"]
            y_test, pred = y[test], preds[split_name, 0, "final"]
            metrics = {f"acc.{k}": v for k, v in box_accuracies(y_test, pred).items()}
            row = extrapolation_row(split_name, splits[split_name], held_values, metrics, r_metrics)
            ci = bootstrap(y_test, pred, units_of(boxes, test), extrapolation_keys(held_values), seed=seed)
            rows.append(row | {"acc_mean_low": ci["acc.mean_low"], "acc_mean_high": ci["acc.mean_high"]})
        return rows, {}
    sizes = {}
    for (value, *_), _fold, run in points:
        sizes.setdefault(value, []).append(len(run.split["train"]))
    size = {v: float(np.mean(s)) for v, s in sizes.items()}
    if name != "n_train":
        values = dict.fromkeys(p[0] for p, _, _ in points)
        return [_row(name, v, y, preds[v, 0, "final"], units, seed, size[v]) for v in values], {}
    rows, fits = [], {}
    for boxes_ in sp.curves:
        curve = {p: pred for p, pred in preds.items() if p[2] == boxes_}
        prefix = "" if boxes_ == "final" else f"{boxes_}_"
        for i, value in enumerate(sorted(size, key=lambda v: size[v])):
            reps = [pred for p, pred in curve.items() if p[0] == value]
            per_rep = [box_accuracies(y, p, units=units, per_config=True)["mean"] for p in reps]
            per_rep_box = [box_accuracies(y, p)["mean"] for p in reps]
            row = _row("n_train", value, y, reps[0], units, seed, size[value])
            row |= {
                "subsets": len(reps),
                "acc_config_mean": round(float(np.mean(per_rep)), 2),
                "acc_config_sd": round(float(np.std(per_rep, ddof=1)), 2) if len(reps) > 1 else 0.0,
                "acc_mean": round(float(np.mean(per_rep_box)), 2),
                "acc_sd": round(float(np.std(per_rep_box, ddof=1)), 2) if len(reps) > 1 else 0.0,
            }
            if not prefix:
                rows.append(row)
            else:  # beside the final curve's point: the same subsets' boxes with their models' checkpoints
                keep = ("subsets", "acc_config_mean", "acc_config_sd", "acc_mean", "acc_sd")
                rows[i] |= {f"{prefix}{k}": row[k] for k in (*keep, "acc_config_mean_low", "acc_config_mean_high")}
        fit = fit_learning_curve(y, curve, size, units, sp.targets, seed)
        fits |= {(f"{boxes_}." if prefix else "") + k: v for k, v in fit.items()}
    return rows, fits


# How the curve sweeps are drawn: (x column, x label, title); the bar sweeps carry the paper's values.
_CURVES = {
    "n_train": ("n_train", "training boxes (mean over folds)", "kennen-o vs. number of training boxes (CV)"),
    "n_queries": ("n_queries", "queries", "kennen-o vs. number of queries (CV)"),
}


def run_stage(
    name: str,
    params: dict[str, Any],
    outputs: Path,
    boxes_csv: Path,
    splits_dir: Path,
    r_metrics: Path,
    predictions: Path,
    plots: Path,
    figures: Path,
    metrics: Path,
    checkpoints: Path | None = None,
) -> list[dict[str, Any]]:
    """The ``kennen_o_sweep@<name>`` stage: run one sweep, write its table, figure and summary metrics (the
    learning curves' fits; ``{}`` for the other sweeps). ``checkpoints``: the ``queries`` stage's checkpoint
    boxes, read for the learning curve with checkpoints (``kennen_o_sweep.curves``)."""
    kp = section(KennenOParams, params, "kennen_o")
    sp = section(SweepParams, params, "kennen_o_sweep")
    held = section(SplitParams, params, "splits").extrapolation
    boxes = read_boxes(boxes_csv)
    out, _ = load_outputs(outputs, boxes)
    splits = {s: read_split(splits_dir, s, boxes) for s in ("r", *held)}
    folds = read_folds(splits_dir, boxes)
    ids, _, headline = read_predictions(predictions)
    if ids != [b["box"] for b in boxes]:
        raise KennenError(f"{predictions}: not the out-of-fold predictions of every box of {boxes_csv}")
    seed = base_seed(params)
    ckpt = None
    if name == "n_train" and "checkpoints" in sp.curves:
        if checkpoints is None:
            raise KennenError("kennen_o_sweep.curves: checkpoints needs the checkpoint boxes (--checkpoints)")
        ckpt = load_checkpoint_boxes(checkpoints, boxes, out.shape[1])
    r_metric = read_metrics(r_metrics, "kennen_o")
    rows, fit = run_sweep(name, sp, kp, out, boxes, splits, folds, held, seed, r_metric, headline, ckpt)
    write_table(plots / f"sweep_{name}.csv", rows)
    write_json(metrics, fit)
    figure = figures / f"sweep_{name}.png"
    if name == "n_train":
        plot_learning_curve(rows, fit, figure)
    elif name in _CURVES:
        x, label, title = _CURVES[name]
        plot_curve(rows, x, label, title, figure, log_x=True)
    elif name == "output":
        plot_bars(rows, "output", "acc_mean", "kennen-o mean accuracy by output type", figure, KENNEN_O_BY_OUTPUT)
    else:
        title = "kennen-o on E splits, relative to R (R = 100, chance = 0)"
        plot_bars(rows, "split", "relative", title, figure, TABLE3_KENNEN_IO)
    return rows


def plot_learning_curve(rows: list[dict[str, Any]], fit: dict[str, float], path: Path) -> None:
    """Mean accuracy over configurations against training boxes, +-1 sd over subsets, and the fitted power law;
    the same for the curve with checkpoint boxes where the rows have it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kennen.io import atomic_path

    n = np.array([r["n_train"] for r in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    grid = np.geomspace(max(n.min() / 2, 1), n.max() * 30, 200)
    series = (("", "final boxes", "C0"), ("checkpoints_", "with checkpoint boxes (ours)", "C1"))
    for prefix, label, color in series:
        if f"{prefix}acc_config_mean" not in rows[0]:
            continue
        acc = np.array([r[f"{prefix}acc_config_mean"] for r in rows])
        sd = np.array([r.get(f"{prefix}acc_config_sd", 0.0) for r in rows])
        ax.errorbar(n, acc, yerr=sd, fmt="o", color=color, capsize=3, label=f"CV, {label} (+-1 sd over subsets)")
        f = prefix.replace("_", ".")
        if fit.get(f"{f}fit.ok"):
            curve = power_law(grid, fit[f"{f}fit.c"], fit[f"{f}fit.a"], fit[f"{f}fit.b"])
            ax.plot(grid, curve, "--", color=color, label=f"c - a n^-b, {label}")
    paper = METHOD_MEANS["kennen-o"]
    ax.axhline(paper, color="grey", lw=0.8, ls=":", label=f"paper kennen-o ({PAPER_ZOO['n_train']:,} boxes)")
    ax.set_xscale("log")
    ax.set_xlabel("training boxes per fold")
    ax.set_ylabel("mean balanced accuracy (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)

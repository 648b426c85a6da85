"""Confidence that ``kennen whiten`` can be trusted with: calibration, abstention, an out-of-zoo check.

Ours; the paper and the official code report arg-max predictions only. Everything here is
fitted on predictions of boxes the metamodel was not fitted on: the pipeline's metamodels are
calibrated on the **out-of-fold predictions of every box** of the cross-validation
(:func:`calibrate_out_of_fold`; kennen-i's label table in ``kennen_i.calibrate_out_of_fold``), fitted
on all boxes for what is saved and cross-fitted for what is reported (:func:`cross_fitted_report`):

- **Calibration.** kennen-o and kennen-io give logits: one temperature per attribute,
  ``softmax(logits / T)``, fitted by minimising the validation negative log-likelihood
  (temperature scaling, Guo et al. 2017, "On Calibration of Modern Neural Networks").
  kennen-i gives a hard value read from a top-1 label ``d``, with no score at all: its
  confidence is the validation accuracy of the value that label ``d`` names, per attribute
  and label, shrunk towards the attribute's overall validation accuracy
  (``(hits + PRIOR * acc) / (n + PRIOR)``, a histogram-binning calibrator with one bin per
  label, Zadrozny & Elkan 2001). Uncalibrated, kennen-i's confidence is 1 for every answer.
- **Expected calibration error** (ECE): top-label confidence against correctness, equal-width
  bins, pooled over the 12 attributes (every box contributes 12 answers), with a 95% interval
  over resampled configurations (``kennen.stats``). Per attribute too, though a few dozen boxes
  per attribute value leave such a figure noisy.
- **Abstention.** An answer below ``min_confidence`` is "unknown". The default threshold is
  the smallest one on a 0.05 grid whose answered validation accuracy reaches
  ``target_accuracy`` (the selective-classification rule of Geifman & El-Yaniv 2017,
  without their bound); the test boxes' coverage and answered accuracy at every grid point
  are written as a risk-coverage table.
- **Out of the zoo.** A box's feature vector (the metamodel's input, standardised as the
  metamodel standardises it) is compared with those of the training boxes: the root-mean-square
  distance to the nearest one. The box is flagged when that distance exceeds the
  ``ood_quantile`` quantile of the training boxes' own leave-one-out nearest-neighbour
  distances.

Accuracies here are plain (share of answers right), not the paper's class-balanced ones:
they describe what a user sees, answer by answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kennen import stats
from kennen.attributes import ATTRIBUTES
from kennen.config import require

PRIOR = 2.0  # pseudo-boxes of kennen-i's label calibration, at the attribute's overall validation accuracy
GRID = tuple(round(0.05 * i, 2) for i in range(20))  # thresholds 0.00 .. 0.95


@dataclass(frozen=True)
class CalibrationParams:
    """``calibration`` section of params.yaml."""

    bins: int = 10
    target_accuracy: float = 0.9
    ood_quantile: float = 0.99

    def check(self, where: str) -> None:
        require(self.bins >= 2, f"{where}.bins", f"must be at least 2, got {self.bins}")
        require(
            0 < self.target_accuracy <= 1, f"{where}.target_accuracy", f"must be in (0, 1], got {self.target_accuracy}"
        )
        require(0 < self.ood_quantile <= 1, f"{where}.ood_quantile", f"must be in (0, 1], got {self.ood_quantile}")


def carve_rows(n: int, n_val: int, seed: int, groups: Sequence[Any] | None = None) -> tuple[list[int], list[int]]:
    """(fitting rows, validation rows) of ``n`` rows, both sorted: at least ``n_val`` rows held out.

    With ``groups`` (one key per row: the box's configuration) whole groups are held out, drawn in
    a seeded order until ``n_val`` rows are reached, as the R split keeps a configuration's seeds
    and their ensembles on one side (``kennen.splits``). A validation box then never has a sibling
    among the fitting boxes: with one it is read off its near-copy, and the carve overstates the
    accuracy on unseen configurations. Measured on the default zoo (one machine, one zoo, kennen-o's
    headline seed): a carve of single boxes fitted ``alg`` a temperature of 2.0 where its test boxes
    needed the search's upper bound (the MLP is near chance on ``alg`` for new configurations),
    and the pooled test ECE after calibration was 0.067; whole configurations gave 0.037.
    Without ``groups`` every row is its own group. ``n_val`` is capped so that at least one row
    is fitted on.
    """
    keys = list(range(n)) if groups is None else list(groups)
    if len(keys) != n:
        raise ValueError(f"carve_rows: {len(keys)} group keys for {n} rows")
    units = sorted(set(keys))
    members: dict[Any, list[int]] = {}
    for row, key in enumerate(keys):
        members.setdefault(key, []).append(row)
    order = torch.randperm(len(units), generator=torch.Generator().manual_seed(seed)).tolist()
    val: list[int] = []
    for u in order:
        if len(val) >= n_val or len(val) + len(members[units[u]]) >= n:
            break
        val += members[units[u]]
    held = set(val)
    return [r for r in range(n) if r not in held], sorted(val)


def carve(
    ids: list[int], fraction: float, seed: int, groups: Sequence[Any] | None = None
) -> tuple[list[int], list[int]]:
    """(fitting ids, validation ids) of ``ids``: a seeded ``fraction`` held out, both in their original order.

    ``groups``: one configuration key per id, held out whole (``carve_rows``).
    """
    n_val = min(max(round(fraction * len(ids)), 1), len(ids) - 1) if len(ids) > 1 else 0
    fit_rows, val_rows = carve_rows(len(ids), n_val, seed, groups)
    return [ids[r] for r in fit_rows], [ids[r] for r in val_rows]


# --- calibrators -------------------------------------------------------------------------------


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature T > 0 minimising the mean NLL of ``softmax(logits / T)`` for labels ``y``.

    A golden-section search on log T in [log 0.05, log 20] (the NLL is unimodal in T for
    fixed logits); 1.0 when there is nothing to fit on.
    """
    if len(y) == 0:
        return 1.0
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        return float(-_log_softmax(logits / np.exp(log_t))[rows, y].mean())

    lo, hi = np.log(0.05), np.log(20.0)
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(b)
    return round(float(np.exp((lo + hi) / 2)), 4)


def scaled(logits: list[np.ndarray], temperatures: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(predicted index [N, 12], top-label probability [N, 12]) of per-attribute ``logits`` [N, K_a], scaled by T."""
    pred, conf = [], []
    for i, z in enumerate(logits):
        p = np.exp(_log_softmax(z / (1.0 if temperatures is None else temperatures[i])))
        pred.append(p.argmax(1))
        conf.append(p.max(1))
    return np.stack(pred, 1), np.stack(conf, 1)


def label_table(labels: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """kennen-i's calibrator [12, 10]: per attribute and top-1 label, the shrunk validation accuracy.

    ``labels`` [N, 12]: the label each validation box answered for each attribute's query;
    ``correct`` [N, 12]: whether the value read from it was right.
    """
    table = np.zeros((len(ATTRIBUTES), 10))
    for i in range(len(ATTRIBUTES)):
        overall = float(correct[:, i].mean()) if len(correct) else 0.5
        for d in range(10):
            hit = correct[labels[:, i] == d, i]
            table[i, d] = (hit.sum() + PRIOR * overall) / (len(hit) + PRIOR)
    return table.round(4)


def table_confidence(table: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Confidence [N, 12] of kennen-i's answers from their labels [N, 12] (``label_table``)."""
    return np.stack([table[i, labels[:, i]] for i in range(len(ATTRIBUTES))], 1)


# --- evaluation ---------------------------------------------------------------------------------


def ece(conf: np.ndarray, correct: np.ndarray, bins: int = 10, weights: np.ndarray | None = None) -> float:
    """Expected calibration error of answers with confidence ``conf`` and correctness ``correct``.

    ``conf``/``correct``: [N] or [N, A] (a box's answers are its row); ``weights`` [N]: how much each
    box counts (a bootstrap resample's counts), 1 by default.
    """
    conf, correct = np.asarray(conf, dtype=float), np.asarray(correct, dtype=float)
    if not conf.size:
        return float("nan")
    w = np.ones(len(conf)) if weights is None else np.asarray(weights, dtype=float)
    w = np.broadcast_to(w.reshape(-1, *([1] * (conf.ndim - 1))), conf.shape).ravel()
    conf, correct = conf.ravel(), correct.ravel()
    which = np.minimum((conf * bins).astype(int), bins - 1)
    # per bin, count * |mean confidence - accuracy| = |sum of confidences - number right|
    gap = np.bincount(which, weights=w * conf, minlength=bins) - np.bincount(which, weights=w * correct, minlength=bins)
    return float(np.abs(gap).sum() / max(w.sum(), 1e-12))


def ece_interval(
    conf: np.ndarray, correct: np.ndarray, bins: int, seed: int, units: Sequence[Any] | None = None
) -> tuple[float, float]:
    """95% interval of ``ece`` over resampled configurations (``units``, one per row; None: every row its own)."""
    units = list(range(len(conf))) if units is None else units
    return stats.interval(lambda w: ece(conf, correct, bins, w), units, stats.N_BOOT, seed)


def reliability(conf: np.ndarray, correct: np.ndarray, bins: int, label: str) -> list[dict[str, Any]]:
    """Reliability-diagram rows: per non-empty bin its mean confidence, accuracy and count (pooled answers)."""
    conf, correct = np.ravel(conf), np.ravel(correct).astype(float)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        m = which == b
        if m.any():
            rows.append({"calibration": label, "bin": round((b + 0.5) / bins, 4),
                         "confidence": round(float(conf[m].mean()), 4),
                         "accuracy": round(float(correct[m].mean()), 4), "count": int(m.sum())})  # fmt: skip
    return rows


def selective(conf: np.ndarray, correct: np.ndarray, threshold: float) -> tuple[float, float]:
    """(coverage, accuracy of the answered) at ``threshold``; accuracy is NaN when nothing is answered."""
    answered = np.ravel(conf) >= threshold
    coverage = float(answered.mean()) if answered.size else 0.0
    acc = float(np.ravel(correct)[answered].mean()) if answered.any() else float("nan")
    return coverage, acc


def choose_threshold(conf: np.ndarray, correct: np.ndarray, target: float) -> float:
    """The smallest grid threshold whose answered accuracy on (validation) answers reaches ``target``.

    The largest grid point when none does.
    """
    for t in GRID:
        coverage, acc = selective(conf, correct, t)
        if coverage > 0 and acc >= target:
            return t
    return GRID[-1]


def risk_coverage(conf: np.ndarray, correct: np.ndarray) -> list[dict[str, float]]:
    """Coverage and answered accuracy at every grid threshold (the accuracy/coverage trade-off)."""
    rows = []
    for t in GRID:
        coverage, acc = selective(conf, correct, t)
        rows.append({"min_confidence": t, "coverage": round(coverage, 4), "accuracy": round(acc, 4)})
    return rows


# --- out of the zoo -------------------------------------------------------------------------------


def nn_distance(x: np.ndarray, reference: np.ndarray, exclude_self: bool = False) -> np.ndarray:
    """RMS distance [M] of each row of ``x`` [M, D] to its nearest row of ``reference`` [N, D].

    ``exclude_self``: ``x`` is ``reference`` and a row's distance to itself does not count
    (the leave-one-out distances that set the threshold).
    """
    x64, r64 = torch.from_numpy(np.asarray(x, np.float64)), torch.from_numpy(np.asarray(reference, np.float64))
    d = torch.cdist(x64, r64)
    if exclude_self:
        d.fill_diagonal_(float("inf"))
    return (d.min(1).values / np.sqrt(x64.shape[1])).numpy()


def ood_threshold(reference: np.ndarray, quantile: float) -> float:
    """The ``quantile`` of the reference boxes' leave-one-out nearest-neighbour distances."""
    if len(reference) < 2:
        return float("inf")
    return round(float(np.quantile(nn_distance(reference, reference, exclude_self=True), quantile)), 5)


# --- one metamodel's calibration, as the stages write it ---------------------------------------------


def cross_fitted_report(
    name: str,
    conf_before: np.ndarray,
    conf_after: np.ndarray,
    ok: np.ndarray,
    judged_by: np.ndarray,
    features: np.ndarray,
    fold_of: np.ndarray,
    units: Sequence[Any],
    params: CalibrationParams,
    seed: int,
) -> tuple[dict[str, float], list[dict[str, Any]], list[dict[str, Any]], float, float]:
    """What every metamodel's out-of-fold calibration reports, whatever its calibrator.

    Args:
        name: the metamodel (the reliability rows' label).
        conf_before, conf_after: every box's confidence [N, 12] uncalibrated and cross-fitted (from what was
            fitted on the other folds); ok: whether each answer is right [N, 12].
        judged_by: the abstention threshold chosen on the other folds, per box [N].
        features: every box's features [N, D] as the saved metamodel compares them (its out-of-zoo reference).
        fold_of: each box's fold [N]; units: each box's configuration (the ECE intervals' unit).
        params, seed: the ``calibration`` params and the bootstrap's seed.

    Returns:
        (metrics, reliability rows, risk-coverage rows, the abstention threshold and the out-of-zoo limit
        fitted on every box). Metric keys: ``calibration.n_val``; ``ece_before``, ``ece_after`` with
        ``_low``/``_high``; ``ece_after.<attribute>``; ``abstain.min_confidence``, ``abstain.coverage``,
        ``abstain.accuracy`` (answered), ``abstain.accuracy_all``, ``abstain.val_coverage``; ``ood.threshold``,
        ``ood.test_rate`` (% of boxes flagged against the other folds' boxes).
    """
    flagged = np.zeros(len(ok), dtype=bool)
    for f in np.unique(fold_of):
        inside, outside = fold_of == f, fold_of != f
        flagged[inside] = nn_distance(features[inside], features[outside]) > ood_threshold(
            features[outside], params.ood_quantile
        )
    take = conf_after >= judged_by[:, None]
    threshold = choose_threshold(conf_after, ok, params.target_accuracy)
    limit = ood_threshold(features, params.ood_quantile)
    m: dict[str, float] = {"calibration.n_val": len(ok)}
    for key, conf in (("ece_before", conf_before), ("ece_after", conf_after)):
        m[key] = round(ece(conf, ok, params.bins), 4)
        m[f"{key}_low"], m[f"{key}_high"] = (round(v, 4) for v in ece_interval(conf, ok, params.bins, seed, units))
    for i, a in enumerate(ATTRIBUTES):
        m[f"ece_after.{a.key}"] = round(ece(conf_after[:, i], ok[:, i], params.bins), 4)
    n_taken = int(take.sum())
    m |= {
        "abstain.min_confidence": threshold,
        "abstain.coverage": round(100 * n_taken / take.size, 2),
        "abstain.accuracy": round(100 * float(ok[take].mean()), 2) if n_taken else 0.0,
        "abstain.accuracy_all": round(100 * float(ok.mean()), 2),
        "abstain.val_coverage": round(100 * selective(conf_after, ok, threshold)[0], 2),
        "ood.threshold": limit,
        "ood.test_rate": round(100 * float(flagged.mean()), 2),
    }
    rows = reliability(conf_before, ok, params.bins, f"{name} before")
    rows += reliability(conf_after, ok, params.bins, f"{name} after")
    return m, rows, risk_coverage(conf_after, ok), threshold, limit


@dataclass
class Calibrated:
    """A metamodel's calibration as the stage writes it: metrics, plot rows, and what whiten needs."""

    metrics: dict[str, float]
    reliability: list[dict[str, Any]]
    risk_coverage: list[dict[str, Any]]
    min_confidence: float
    ood_threshold: float
    tensors: dict[str, torch.Tensor]  # ``calibration.*`` and ``ood.reference``, saved with the metamodel
    fitted_on: str = ""  # what the calibrators were fitted on ("": a validation carve, described by ``meta``)

    def meta(self, method: str, n_val: int, params: CalibrationParams) -> dict[str, Any]:
        """The ``calibration`` and ``ood`` entries of the metamodel's JSON."""
        m = self.metrics
        return {
            "calibration": {
                "method": method,
                "fitted_on": self.fitted_on
                or (f"a validation carve of {n_val} training boxes" if n_val else "nothing (no carve)"),
                "ece_before": m["ece_before"],
                "ece_after": m["ece_after"],
                "bins": params.bins,
                "min_confidence": self.min_confidence,
                "target_accuracy": params.target_accuracy,
                "coverage": m["abstain.coverage"],
                "answered_accuracy": m["abstain.accuracy"],
            },
            "ood": {
                "threshold": self.ood_threshold,
                "quantile": params.ood_quantile,
                "distance": "RMS distance of the standardised features to the nearest training box",
                "test_rate": m["ood.test_rate"],
            },
        }


@torch.inference_mode()
def logits_of(model: torch.nn.Module, x: torch.Tensor) -> list[np.ndarray]:
    """kennen-o's (or kennen-io's) logits per attribute, [N, K_a] each, in ATTRIBUTES order."""
    model.eval()
    out = model(x)
    return [out[a.key].double().numpy() for a in ATTRIBUTES]


def standardise(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """Features as the metamodel's first layer sees them (its own standardisation), float32."""
    return ((x - model.mean) / model.std).numpy().astype(np.float32)


def one_hot(labels: np.ndarray) -> np.ndarray:
    """kennen-i's feature vector [N, A * 10]: the top-1 labels one-hot (RMS distance ~ share of labels that differ)."""
    return np.eye(10, dtype=np.float32)[labels].reshape(len(labels), -1)


def calibrate_out_of_fold(
    logits: list[np.ndarray],
    y: np.ndarray,
    fold_of: np.ndarray,
    units: Sequence[Any],
    features: np.ndarray,
    params: CalibrationParams,
    seed: int,
    name: str,
) -> Calibrated:
    """Temperature scaling fitted on the out-of-fold logits of every box, for the metamodel trained on all boxes.

    Args:
        logits: per attribute [N, K_a]: each box's logits from the fold's metamodel that never saw its
            configuration (``kennen.metamodel.cv``).
        y: true labels [N, 12]; fold_of: each box's fold [N]; units: each box's configuration.
        features: every box's features [N, D], standardised as the all-box metamodel standardises them:
            the out-of-zoo reference saved with it.
        params: the ``calibration`` params; seed: the bootstrap's; name: the metamodel (the reliability rows' label).

    What is saved (temperatures, abstention threshold, out-of-zoo threshold) is fitted on all boxes.
    What is *reported* is cross-fitted, so that no box scores a calibrator fitted on itself: the
    boxes of fold f are scaled with temperatures fitted on the other folds, answered or not by a
    threshold chosen on the other folds, and flagged out of the zoo against the other folds' boxes.
    The ECE is then over all boxes, with intervals over configurations. (The all-box metamodel is
    not the fold models it is calibrated through: with about a quarter more boxes it is, if
    anything, more accurate than they are, so the reported coverage is conservative.)
    """
    fold_of = np.asarray(fold_of)

    def fit(rows: np.ndarray) -> np.ndarray:
        return np.array([fit_temperature(z[rows], y[rows, i]) for i, z in enumerate(logits)])

    pred, conf_before = scaled(logits)
    ok = pred == y
    conf_after = np.zeros_like(conf_before)
    judged_by = np.zeros(len(y))  # the abstention threshold each box is judged by: its fold's
    for f in np.unique(fold_of):
        inside, outside = fold_of == f, fold_of != f
        temps_f = fit(outside)
        conf_after[inside] = scaled([z[inside] for z in logits], temps_f)[1]
        conf_out = scaled([z[outside] for z in logits], temps_f)[1]
        judged_by[inside] = choose_threshold(conf_out, ok[outside], params.target_accuracy)
    temps = fit(np.ones(len(y), dtype=bool))
    m, rows, rc, threshold, limit = cross_fitted_report(
        name, conf_before, conf_after, ok, judged_by, features, fold_of, units, params, seed
    )
    m |= {f"calibration.temperature.{a.key}": float(t) for a, t in zip(ATTRIBUTES, temps, strict=True)}
    tensors = {
        "calibration.temperature": torch.tensor(temps, dtype=torch.float32),
        "ood.reference": torch.from_numpy(np.asarray(features, dtype=np.float32)),
    }
    fitted_on = f"the out-of-fold predictions of all {len(y)} boxes ({len(np.unique(fold_of))} folds)"
    return Calibrated(m, rows, rc, threshold, limit, tensors, fitted_on)

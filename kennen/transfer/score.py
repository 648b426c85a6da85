"""Whitening the foreign boxes and scoring the answers (``reports/metrics/transfer.json``).

Each box goes through ``kennen whiten``'s own code path: ``load_target`` on its
``.pt2`` file, then ``whiten`` with the method asked for. kennen-o and kennen-io
read the box's log-probabilities (``--output-type logprob``); kennen-i reads only
top-1 labels, so its box is wrapped to answer ``argmax`` (``--output-type label``).

Ten attributes are scored, all of Table 1 but ``split`` and ``ens``, by
class-balanced accuracy over the boxes (paper §3), with 95% bootstrap intervals
over boxes. ``size`` is the fraction of the foreign pool (all, half or quarter)
a box was trained on. Left out of the score:

- ``split``: a foreign subset holds other images than the zoo subset of the same
  name, so no predicted value is right or wrong. Reported apart: how often each
  split value is predicted (``split.pred.<value>``, percent of boxes) and the
  balanced accuracy of the size the predicted split implies (``split.size_acc``).
- ``ens``: every foreign box is a single model.

Metric keys, flat: ``<regime>.<method>.acc.<attribute>``, ``.acc.mean`` and their
``_low``/``_high`` bounds (95%, resampling configurations: the foreign boxes' own), ``.in_zoo_mean``
(the same ten attributes' cross-validated mean over the zoo's boxes, from the method's own metrics), ``.split.*``; per regime
``n_boxes``, ``n_scored``, ``box_acc_median``; and ``chance_mean`` over the ten.
Per method and regime also ``ood_rate``, ``answered``, ``answered_acc``, ``all_acc`` and ``ece``
(``confidence_metrics``). ``<method>`` is the file name: ``kennen_o``, ``kennen_io``, ``kennen_i``.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kennen.attributes import ATTRIBUTES, BY_KEY, SPLITS, size_of_split
from kennen.errors import KennenError
from kennen.metamodel.calibration import ece
from kennen.metamodel.metrics import balanced_accuracy
from kennen.schemas import read_metrics
from kennen.stats import bootstrap
from kennen.whiten import FILES, BlackBox, Report, load_target, whiten

log = logging.getLogger("kennen.transfer")

SCORABLE: tuple[str, ...] = tuple(a.key for a in ATTRIBUTES if a.key not in ("split", "ens"))
OUTPUT_TYPES = {"kennen-o": "logprob", "kennen-io": "logprob", "kennen-i": "label"}
PREDICTION_COLUMNS = ("regime", "box", "method", "attribute", "true", "predicted", "probability", "answered", "correct")
_INDEX = {a.key: i for i, a in enumerate(ATTRIBUTES)}


def chance_mean() -> float:
    """Mean chance accuracy (%) over the ten scored attributes."""
    return float(np.mean([BY_KEY[k].chance for k in SCORABLE]))


def true_labels(row: Mapping[str, Any]) -> np.ndarray:
    """A box's label indices [12] in ATTRIBUTES order, from its table row."""
    return np.array([a.index(row[a.key]) for a in ATTRIBUTES])


def _labels_only(box: BlackBox) -> BlackBox:
    """The box answering top-1 labels [B] instead of log-probabilities [B, 10]."""
    return lambda images: np.asarray(box(images)).argmax(1)


def whiten_box(path: Path, method: str, models_dir: Path) -> Report:
    """``kennen whiten <path> --method <method>`` on a foreign box's program."""
    box = load_target(str(path))
    output_type = OUTPUT_TYPES[method]
    if output_type == "label":
        box = _labels_only(box)
    return whiten(box, str(path), output_type, method, models_dir)


def predicted_labels(report: Report) -> np.ndarray:
    """The report's predicted label indices [12] in ATTRIBUTES order."""
    found = {f.attribute: BY_KEY[f.attribute].labels.index(f.best_guess) for f in report.findings}  # answered or not
    return np.array([found[a.key] for a in ATTRIBUTES])


def method_metrics(y_true: np.ndarray, y_pred: np.ndarray, seed: int) -> dict[str, float]:
    """Scores of one method on one regime's boxes; ``y_true``/``y_pred`` are label indices [N, 12]."""
    acc = {k: balanced_accuracy(y_true[:, _INDEX[k]], y_pred[:, _INDEX[k]]) for k in SCORABLE}
    out = {f"acc.{k}": round(v, 2) for k, v in acc.items()}
    out["acc.mean"] = round(float(np.mean(list(acc.values()))), 2)
    units = [tuple(row) for row in y_true]  # the box's configuration: boxes of one configuration resample together
    out |= bootstrap(y_true, y_pred, units, keys=SCORABLE, seed=seed)
    split, size = BY_KEY["split"], BY_KEY["size"]
    predicted = y_pred[:, _INDEX["split"]]
    for i, value in enumerate(SPLITS):
        out[f"split.pred.{value}"] = round(100.0 * float(np.mean(predicted == i)), 2)
    implied = np.array([size.index(size_of_split(split.values[j])) for j in predicted])
    out["split.size_acc"] = round(balanced_accuracy(y_true[:, _INDEX["size"]], implied), 2)
    return out


def confidence_metrics(reports: Sequence[Report], y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """What calibration and abstention do on foreign boxes (issue 16), over the ten scored attributes.

    ``ood_rate``: % of boxes whiten flags as outside the zoo; ``answered``: % of answers given at the
    metamodel's default ``--min-confidence``; ``answered_acc`` and ``all_acc``: plain accuracy (%) of
    the answers given and of all answers; ``ece``: expected calibration error of the calibrated
    probabilities (10 bins). A figure that does not exist (nothing answered, no calibration) is left out.
    """
    cols = [_INDEX[k] for k in SCORABLE]
    ok = (y_true == y_pred)[:, cols]
    found = [{f.attribute: f for f in rep.findings} for rep in reports]
    answered = np.array([[fd[k].answered for k in SCORABLE] for fd in found])
    prob = np.array([[np.nan if fd[k].probability is None else fd[k].probability for k in SCORABLE] for fd in found])
    flagged = [rep.ood is not None and rep.ood.outside for rep in reports]
    out = {
        "ood_rate": round(100.0 * float(np.mean(flagged)), 2),
        "answered": round(100.0 * float(answered.mean()), 2),
        "answered_acc": round(100.0 * float(ok[answered].mean()), 2) if answered.any() else float("nan"),
        "all_acc": round(100.0 * float(ok.mean()), 2),
        "ece": round(ece(prob, ok, 10), 4) if not np.isnan(prob).any() else float("nan"),
    }
    return {
        k: v for k, v in out.items() if v == v
    }  # nothing answered or nothing calibrated: no figure (JSON has no NaN)


def in_zoo_mean(metrics: Mapping[str, Any], source: str) -> float:
    """The mean of ``cv.acc.<attribute>`` (cross-validated, over boxes) over the ten scored attributes in a
    metamodel stage's metrics."""
    missing = [k for k in SCORABLE if f"cv.acc.{k}" not in metrics]
    if missing:
        raise KennenError(f"{source}: no cv.acc.{missing[0]}; rerun the stage that writes it")
    return round(float(np.mean([metrics[f"cv.acc.{k}"] for k in SCORABLE])), 2)


def score_boxes(
    rows: Sequence[Mapping[str, Any]],
    box_dir: Path,
    models_dir: Path,
    methods: Sequence[str],
    in_zoo: Mapping[str, Path],
    seed: int,
    min_acc: float = 0.0,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Whiten every scored box with every method and score the predictions.

    Args:
        rows: the boxes' table (``make_boxes``), in table order.
        box_dir: the folder the rows' ``file`` paths are relative to.
        models_dir: the folder of the trained metamodels (``models/``).
        methods: ``kennen-o``, ``kennen-io``, ``kennen-i``.
        in_zoo: method -> its stage's metrics JSON (the cross-validated figures).
        seed: the bootstrap's seed.
        min_acc: boxes below this test accuracy (or diverged) are counted but not whitened.

    Returns:
        (flat metrics, one prediction row per box, method and attribute).
    """
    metrics: dict[str, float] = {"chance_mean": round(chance_mean(), 2)}
    zoo_means = {m: in_zoo_mean(read_metrics(Path(in_zoo[m]), m.replace("-", "_")), str(in_zoo[m])) for m in methods}
    predictions = []
    for regime in dict.fromkeys(r["regime"] for r in rows):
        boxes = [r for r in rows if r["regime"] == regime]
        scored = [r for r in boxes if not r["diverged"] and r["test_acc"] >= min_acc]
        metrics[f"{regime}.n_boxes"] = len(boxes)
        metrics[f"{regime}.n_scored"] = len(scored)
        metrics[f"{regime}.box_acc_median"] = round(float(statistics.median(r["test_acc"] for r in boxes)), 2)
        y_true = np.array([true_labels(r) for r in scored]).reshape(len(scored), len(ATTRIBUTES))
        for method in methods:
            key = f"{regime}.{FILES[method]}"
            metrics[f"{key}.in_zoo_mean"] = zoo_means[method]
            reports = [whiten_box(box_dir / r["file"], method, models_dir) for r in scored]
            y_pred = np.array([predicted_labels(rep) for rep in reports]).reshape(y_true.shape)
            if scored:
                metrics |= {f"{key}.{k}": v for k, v in method_metrics(y_true, y_pred, seed).items()}
                metrics |= {f"{key}.{k}": v for k, v in confidence_metrics(reports, y_true, y_pred).items()}
                log.info("%s %s: mean %.2f over %d boxes (in the zoo: %.2f)",
                         regime, method, metrics[f"{key}.acc.mean"], len(scored), zoo_means[method])  # fmt: skip
            for r, rep, t, p in zip(scored, reports, y_true, y_pred, strict=True):
                found = {f.attribute: f for f in rep.findings}
                for i, a in enumerate(ATTRIBUTES):
                    f = found[a.key]
                    predictions.append({
                        "regime": regime, "box": r["box"], "method": FILES[method], "attribute": a.key,
                        "true": a.labels[t[i]], "predicted": f.best_guess,
                        "probability": "" if f.probability is None else f.probability, "answered": f.answered,
                        "correct": bool(t[i] == p[i]),
                    })  # fmt: skip
    return metrics, predictions

"""Intervals for metamodel accuracies: bootstrap over test boxes, spread over metamodel seeds.

With a few hundred test boxes, a per-attribute class-balanced accuracy moves by
several points from one draw of test boxes to the next (a rerun on another
machine moved them by up to 13 points while the means moved by 1-2), so every
headline accuracy carries a 95% interval:

- ``bootstrap``: percentile bootstrap over the test boxes. One resample of the
  boxes serves all attributes at once, so the mean's interval is that of the
  mean, not a combination of per-attribute intervals. Resamples are weights
  (multinomial counts) on the boxes, vectorised over resamples.
- ``seed_interval``: the spread over metamodels trained with different seeds on
  the same split, as mean +- t * sd / sqrt(n) (Student's t, n - 1 degrees of freedom).
- ``paired_difference``: the bootstrap interval of the difference between two
  predictors on the same test boxes (e.g. kennen-io minus kennen-o); a difference
  is called only when its interval excludes 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kennen.attributes import ATTRIBUTES
from kennen.seeds import Purpose, generator

LEVEL = 95.0
N_BOOT = 1000
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def _weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap resamples of ``n`` boxes as counts [n_boot, n] (each row sums to n)."""
    rng = generator(seed, Purpose.BOOTSTRAP)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def _balanced(w: np.ndarray, y_true: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Class-balanced accuracy (%) of one attribute under each resample ``w`` [B, N]: mean recall over present classes."""
    classes = np.unique(y_true)
    onehot = (y_true[:, None] == classes[None, :]).astype(np.float64)  # [N, C]
    den = w @ onehot  # [B, C] boxes of each class in each resample
    num = w @ (onehot * correct[:, None])
    present = den > 0
    recall = np.where(present, num / np.where(present, den, 1.0), 0.0)
    return 100.0 * recall.sum(1) / present.sum(1)


def resampled(
    y_true: np.ndarray, y_pred: np.ndarray, keys: Sequence[str], n_boot: int = N_BOOT, seed: int = 0
) -> dict[str, np.ndarray]:
    """Per-attribute balanced accuracy under each bootstrap resample ``{key: [n_boot]}``, plus ``mean`` over ``keys``.

    ``y_true``/``y_pred`` are label indices [N, 12] in ATTRIBUTES order.
    """
    index = {a.key: i for i, a in enumerate(ATTRIBUTES)}
    w = _weights(len(y_true), n_boot, seed)
    out = {k: _balanced(w, y_true[:, index[k]], y_true[:, index[k]] == y_pred[:, index[k]]) for k in keys}
    out["mean"] = np.mean([out[k] for k in keys], axis=0)
    return out


def _percentiles(samples: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(samples, [(100 - LEVEL) / 2, 100 - (100 - LEVEL) / 2])
    return round(float(lo), 2), round(float(hi), 2)


def bootstrap(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    keys: Sequence[str] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    prefix: str = "acc",
) -> dict[str, float]:
    """95% bootstrap intervals as metrics: ``<prefix>.<key>_low``/``_high`` for each key and for ``mean``.

    Args:
        y_true, y_pred: label indices [N, 12] in ATTRIBUTES order.
        keys: the attributes to score and average (default: all 12).
        n_boot: resamples.
        seed: the resampling seed (fixed, so a rerun gives the same interval).
        prefix: metric key prefix.
    """
    keys = list(keys or [a.key for a in ATTRIBUTES])
    if len(y_true) == 0:
        return {}
    samples = resampled(y_true, y_pred, keys, n_boot, seed)
    out: dict[str, float] = {}
    for k, s in samples.items():
        out[f"{prefix}.{k}_low"], out[f"{prefix}.{k}_high"] = _percentiles(s)
    return out


def paired_difference(
    y_true: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    keys: Sequence[str] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, float]:
    """Mean accuracy of ``a`` minus ``b`` on the same test boxes, with its 95% bootstrap interval.

    Returns ``{"diff", "low", "high", "beyond_noise"}`` (1.0 when the interval excludes 0, else 0.0).
    """
    keys = list(keys or [a.key for a in ATTRIBUTES])
    a = resampled(y_true, pred_a, keys, n_boot, seed)["mean"]
    b = resampled(y_true, pred_b, keys, n_boot, seed)["mean"]  # same seed: the same resamples of the boxes
    point_a = resampled_point(y_true, pred_a, keys)
    point_b = resampled_point(y_true, pred_b, keys)
    lo, hi = _percentiles(a - b)
    return {"diff": round(point_a - point_b, 2), "low": lo, "high": hi, "beyond_noise": float(lo > 0 or hi < 0)}


def resampled_point(y_true: np.ndarray, y_pred: np.ndarray, keys: Sequence[str]) -> float:
    """The mean over ``keys`` of balanced accuracy on the boxes as they are (no resampling)."""
    index = {a.key: i for i, a in enumerate(ATTRIBUTES)}
    w = np.ones((1, len(y_true)))
    return float(
        np.mean([_balanced(w, y_true[:, index[k]], y_true[:, index[k]] == y_pred[:, index[k]])[0] for k in keys])
    )


def seed_interval(values: Sequence[float]) -> dict[str, float]:
    """Mean, standard deviation and the 95% t-interval of the mean of one accuracy over metamodel seeds."""
    v = np.asarray(values, dtype=np.float64)
    mean = float(v.mean())
    if len(v) < 2:
        return {"mean": round(mean, 2), "sd": float("nan"), "low": float("nan"), "high": float("nan"), "n": len(v)}
    sd = float(v.std(ddof=1))
    half = float(_T95.get(len(v) - 1, 1.96) * sd / np.sqrt(len(v)))
    return {
        "mean": round(mean, 2),
        "sd": round(sd, 2),
        "low": round(mean - half, 2),
        "high": round(mean + half, 2),
        "n": len(v),
    }

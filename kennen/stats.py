"""Statistics of metamodel accuracies: the one bootstrap (over configurations) and the spread over seeds.

The unit that carries the information is the zoo's *configuration*, not the box: a
configuration's seed-siblings and the ensembles built from them are black boxes that a
metamodel predicts alike, so boxes of one configuration are not independent draws. Every
interval on the results page therefore comes from :func:`resample`, which draws
configurations with replacement and takes all boxes of each drawn configuration along
(a cluster bootstrap). Passing each box as its own unit gives the plain box bootstrap;
the tests use that to show how much narrower (and wrong) it is on clustered data.

- Accuracies (:func:`accuracies`, :func:`bootstrap`): class-balanced accuracy per
  attribute (paper §3) and their plain mean, either **over boxes** (every box counts
  once, the paper's) or **over configurations** (every box weighs 1 / its configuration's
  boxes, so that every configuration counts once). Resamples are weights on the boxes,
  vectorised over resamples.
- Paired differences (:func:`paired_difference`): two predictors on the same boxes are
  resampled with the same configurations; a difference is called only when its 95%
  interval excludes 0.
- Any other statistic (:func:`interval`): e.g. the expected calibration error, or the
  ImageNet probe's mean over its tries, through the same resampling.
- Seeds (:func:`seed_interval`): mean +- t * sd / sqrt(n) over metamodels trained with
  different seeds, Student's t with n - 1 degrees of freedom (SciPy).

Every resampling draws from ``seeds.generator(seed, Purpose.BOOTSTRAP)``: the same
(seed, units) give the same resamples, which is what pairs two predictors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats as _scipy_stats

from kennen.attributes import ATTRIBUTES
from kennen.seeds import Purpose, generator

LEVEL = 95.0
N_BOOT = 1000
KEYS = tuple(a.key for a in ATTRIBUTES)
_INDEX = {k: i for i, k in enumerate(KEYS)}


def resample(units: Sequence[Any], n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """Cluster-bootstrap weights [n_boot, N]: how often each box is drawn when whole units are drawn.

    Each resample draws as many units as there are, with replacement (multinomial counts),
    and every box gets its unit's count, so a unit's boxes always come and go together.

    Args:
        units: the unit of each box (its configuration), any hashable values [N].
        n_boot: resamples.
        seed: the resampling seed (the base seed; fixed, so a rerun gives the same interval).
    """
    _, inverse = np.unique(np.asarray([str(u) for u in units]), return_inverse=True)
    n_units = int(inverse.max()) + 1 if len(inverse) else 0
    if n_units == 0:
        return np.zeros((n_boot, 0))
    counts = generator(seed, Purpose.BOOTSTRAP).multinomial(n_units, np.full(n_units, 1.0 / n_units), size=n_boot)
    return counts[:, inverse].astype(np.float64)


def per_config_weights(units: Sequence[Any]) -> np.ndarray:
    """[N]: 1 / (boxes of the box's unit), so that every unit weighs 1 in a weighted accuracy."""
    _, inverse, sizes = np.unique(np.asarray([str(u) for u in units]), return_inverse=True, return_counts=True)
    return 1.0 / sizes[inverse]


def _balanced(w: np.ndarray, y_true: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Class-balanced accuracy (%) of one attribute under each row of weights ``w`` [B, N]: mean recall over present classes."""
    classes = np.unique(y_true)
    onehot = (y_true[:, None] == classes[None, :]).astype(np.float64)  # [N, C]
    den = w @ onehot  # [B, C] weight of each class in each resample
    num = w @ (onehot * correct[:, None])
    present = den > 0
    recall = np.where(present, num / np.where(present, den, 1.0), 0.0)
    return 100.0 * recall.sum(1) / np.maximum(present.sum(1), 1)


def balanced_scores(
    w: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, keys: Sequence[str]
) -> dict[str, np.ndarray]:
    """Balanced accuracy per attribute in ``keys`` and their ``mean`` under each row of box weights ``w`` [B, N]."""
    out = {k: _balanced(w, y_true[:, _INDEX[k]], y_true[:, _INDEX[k]] == y_pred[:, _INDEX[k]]) for k in keys}
    out["mean"] = np.mean([out[k] for k in keys], axis=0)
    return out


def _box_weights(units: Sequence[Any] | None, n: int, per_config: bool) -> np.ndarray:
    if not per_config:
        return np.ones(n)
    if units is None:
        raise ValueError("accuracy over configurations needs the boxes' configurations")
    return per_config_weights(units)


def accuracies(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    keys: Sequence[str] | None = None,
    units: Sequence[Any] | None = None,
    per_config: bool = False,
) -> dict[str, float]:
    """Balanced accuracy (%) per attribute and their mean: ``{key: acc, "mean": acc}``, rounded to 0.01.

    Args:
        y_true, y_pred: label indices [N, 12] in ATTRIBUTES order.
        keys: the attributes to score and average (default: all 12).
        units: each box's configuration (needed with ``per_config``).
        per_config: every configuration counts once (else every box).
    """
    keys = list(keys or KEYS)
    w = _box_weights(units, len(y_true), per_config)[None, :]
    return {k: round(float(v[0]), 2) for k, v in balanced_scores(w, y_true, y_pred, keys).items()}


def _percentiles(samples: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(samples, [(100 - LEVEL) / 2, 100 - (100 - LEVEL) / 2])
    return round(float(lo), 2), round(float(hi), 2)


def resampled(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    units: Sequence[Any],
    keys: Sequence[str] | None = None,
    per_config: bool = False,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Per-attribute balanced accuracy under each resample of the units ``{key: [n_boot]}``, plus ``mean``."""
    keys = list(keys or KEYS)
    w = resample(units, n_boot, seed) * _box_weights(units, len(y_true), per_config)[None, :]
    return balanced_scores(w, y_true, y_pred, keys)


def bootstrap(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    units: Sequence[Any],
    keys: Sequence[str] | None = None,
    per_config: bool = False,
    n_boot: int = N_BOOT,
    seed: int = 0,
    prefix: str = "acc",
) -> dict[str, float]:
    """95% intervals over resampled units as metrics: ``<prefix>.<key>_low``/``_high`` per key and for ``mean``."""
    if len(y_true) == 0:
        return {}
    out: dict[str, float] = {}
    for k, s in resampled(y_true, y_pred, units, keys, per_config, n_boot, seed).items():
        out[f"{prefix}.{k}_low"], out[f"{prefix}.{k}_high"] = _percentiles(s)
    return out


def scored(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    units: Sequence[Any],
    keys: Sequence[str] | None = None,
    per_config: bool = False,
    seed: int = 0,
    prefix: str = "acc",
) -> dict[str, float]:
    """``<prefix>.<key>`` accuracies plus their intervals (:func:`bootstrap`), the form every metrics file uses."""
    acc = accuracies(y_true, y_pred, keys, units, per_config)
    return {f"{prefix}.{k}": v for k, v in acc.items()} | bootstrap(
        y_true, y_pred, units, keys, per_config, seed=seed, prefix=prefix
    )


def paired_difference(
    y_true: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    units: Sequence[Any],
    keys: Sequence[str] | None = None,
    per_config: bool = False,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, float]:
    """Mean accuracy of ``a`` minus ``b`` on the same boxes, with the 95% interval over the same resamples.

    Returns ``{"diff", "low", "high", "beyond_noise"}`` (1.0 when the interval excludes 0, else 0.0).
    """
    a = resampled(y_true, pred_a, units, keys, per_config, n_boot, seed)["mean"]
    b = resampled(y_true, pred_b, units, keys, per_config, n_boot, seed)["mean"]  # same seed: same resamples
    diff = (
        accuracies(y_true, pred_a, keys, units, per_config)["mean"]
        - accuracies(y_true, pred_b, keys, units, per_config)["mean"]
    )
    lo, hi = _percentiles(a - b)
    return {"diff": round(diff, 2), "low": lo, "high": hi, "beyond_noise": float(lo > 0 or hi < 0)}


def interval(
    statistic: Callable[[np.ndarray], float], units: Sequence[Any], n_boot: int = N_BOOT, seed: int = 0
) -> tuple[float, float]:
    """95% interval of any ``statistic(weights [N]) -> float`` over resampled units.

    The statistic receives each resample as box weights (a box drawn twice weighs 2), e.g. a
    weighted ECE or a weighted mean; the same units and seed give the same resamples as the
    accuracies'.
    """
    w = resample(units, n_boot, seed)
    lo, hi = np.percentile([statistic(row) for row in w], [(100 - LEVEL) / 2, 100 - (100 - LEVEL) / 2])
    return float(lo), float(hi)


def t_quantile(df: int, level: float = LEVEL) -> float:
    """Two-sided Student-t quantile for ``df`` degrees of freedom at ``level`` percent."""
    return float(_scipy_stats.t.ppf(0.5 + level / 200.0, df))


def seed_interval(values: Sequence[float]) -> dict[str, float]:
    """Mean, standard deviation and the 95% t-interval of the mean of one accuracy over metamodel seeds."""
    v = np.asarray(values, dtype=np.float64)
    mean = float(v.mean())
    if len(v) < 2:
        return {"mean": round(mean, 2), "sd": float("nan"), "low": float("nan"), "high": float("nan"), "n": len(v)}
    sd = float(v.std(ddof=1))
    half = t_quantile(len(v) - 1) * sd / np.sqrt(len(v))
    return {
        "mean": round(mean, 2),
        "sd": round(sd, 2),
        "low": round(mean - half, 2),
        "high": round(mean + half, 2),
        "n": len(v),
    }

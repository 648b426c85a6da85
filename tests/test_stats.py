"""kennen.stats: the one bootstrap (over configurations), accuracies over boxes and configurations, seed spread."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from kennen import stats
from kennen.metamodel.metrics import balanced_accuracy

REPO = Path(__file__).resolve().parents[1]


def _clustered(n_configs: int, per_config: int, rng: np.random.Generator, p: float = 0.6):
    """Boxes in configurations whose boxes are predicted alike: a configuration is right or wrong as a whole
    (per attribute), so the boxes of one configuration carry one draw of information, not ``per_config``."""
    units = np.repeat(np.arange(n_configs), per_config)
    y_true = rng.integers(0, 2, size=(n_configs, 12))[units]
    right = (rng.random((n_configs, 12)) < p)[units]
    return y_true, np.where(right, y_true, 1 - y_true), units.tolist()


def test_accuracy_over_boxes_is_sklearn_balanced_accuracy_and_over_configurations_weighs_each_once():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, size=(40, 12))
    y_pred = rng.integers(0, 3, size=(40, 12))
    acc = stats.accuracies(y_true, y_pred)
    for i, k in enumerate(stats.KEYS):
        assert acc[k] == pytest.approx(round(balanced_accuracy(y_true[:, i], y_pred[:, i]), 2))
    # one configuration of 10 identical boxes, 10 configurations of one box: over configurations, the big one
    # counts as much as any single box
    units = [0] * 10 + list(range(1, 11))
    y_true = np.zeros((20, 12), dtype=int)
    y_pred = np.zeros((20, 12), dtype=int)
    y_pred[:10] = 1  # the big configuration is wrong
    assert stats.accuracies(y_true, y_pred)["mean"] == 50.0
    assert stats.accuracies(y_true, y_pred, units=units, per_config=True)["mean"] == pytest.approx(100 * 10 / 11, 0.01)


def test_configuration_bootstrap_is_wider_than_the_box_bootstrap_on_clustered_data_and_covers_the_truth():
    """Resampling boxes treats siblings as independent and is too narrow; resampling configurations is not."""
    rng = np.random.default_rng(1)
    truth, covered_config, covered_box, ratio = 60.0, 0, 0, []
    n_trials = 60
    for trial in range(n_trials):
        y_true, y_pred, units = _clustered(40, 6, rng)
        point = stats.accuracies(y_true, y_pred)["mean"]
        box = stats.bootstrap(y_true, y_pred, list(range(len(units))), n_boot=400, seed=trial)
        conf = stats.bootstrap(y_true, y_pred, units, n_boot=400, seed=trial)
        ratio.append((conf["acc.mean_high"] - conf["acc.mean_low"]) / (box["acc.mean_high"] - box["acc.mean_low"]))
        assert conf["acc.mean_low"] <= point <= conf["acc.mean_high"]
        covered_config += conf["acc.mean_low"] <= truth <= conf["acc.mean_high"]
        covered_box += box["acc.mean_low"] <= truth <= box["acc.mean_high"]
    assert np.median(ratio) > 1.8  # about sqrt(6) for 6 boxes of one mind per configuration
    assert covered_config / n_trials >= 0.85  # about the nominal 95%
    assert covered_box / n_trials < 0.8  # the box bootstrap misses far more often


def test_resamples_keep_a_configurations_boxes_together_and_are_paired_by_seed():
    units = ["a", "a", "b", "c", "c", "c"]
    w = stats.resample(units, n_boot=50, seed=3)
    assert w.shape == (50, 6)
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 3] == w[:, 4]).all() and (w[:, 4] == w[:, 5]).all()
    assert (w[:, [0, 2, 3]].sum(1) == 3).all()  # three configurations drawn per resample
    assert (stats.resample(units, 50, 3) == w).all() and not (stats.resample(units, 50, 4) == w).all()


def test_paired_difference_of_a_predictor_with_itself_is_zero_and_a_clear_gain_is_beyond_noise():
    rng = np.random.default_rng(2)
    y_true, y_pred, units = _clustered(60, 3, rng)
    same = stats.paired_difference(y_true, y_pred, y_pred, units)
    assert same == {"diff": 0.0, "low": 0.0, "high": 0.0, "beyond_noise": 0.0}
    better = np.where(rng.random(y_true.shape) < 0.5, y_true, y_pred)
    gain = stats.paired_difference(y_true, better, y_pred, units, per_config=True)
    assert gain["diff"] > 0 and gain["low"] > 0 and gain["beyond_noise"] == 1.0


def test_interval_of_any_statistic_uses_the_same_resamples():
    units = list(range(30))
    values = np.arange(30, dtype=float)
    lo, hi = stats.interval(lambda w: float((w * values).sum() / w.sum()), units, n_boot=300, seed=5)
    assert lo < values.mean() < hi


@pytest.mark.parametrize("n", [2, 3, 11, 12, 30, 200])
def test_seed_interval_uses_the_t_quantile_for_any_number_of_seeds(n):
    values = np.linspace(50, 60, n)
    s = stats.seed_interval(values)
    half = scipy_stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n)
    assert s["high"] - s["mean"] == pytest.approx(half, abs=0.011)
    assert stats.t_quantile(1) == pytest.approx(12.706, abs=1e-3) and stats.t_quantile(29) == pytest.approx(2.045, 1e-3)


def test_there_is_one_bootstrap_in_the_library():
    """No module but kennen/stats.py draws resamples (multinomial counts or index draws with replacement)."""
    pattern = re.compile(r"\.multinomial\(|integers\(0, *(n|len)|\bchoice\([^)]*replace=True")
    offenders = []
    for path in (REPO / "kennen").rglob("*.py"):
        if path.name == "stats.py" and path.parent.name == "kennen":
            continue
        if pattern.search(path.read_text()):
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == []

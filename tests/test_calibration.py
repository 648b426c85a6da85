"""Calibration, abstention and the out-of-zoo check (``kennen/metamodel/calibration.py``) on data with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kennen.attributes import ATTRIBUTES
from kennen.metamodel import calibration as cal
from kennen.metamodel.kennen_o import KennenO


def _sampled(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits [n, k] and labels drawn from softmax(logits): a perfectly calibrated model."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.0, size=(n, k))
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in p])
    return z, y


def test_temperature_recovers_the_overconfidence_factor():
    z, y = _sampled(4000, 5, seed=0)
    assert cal.fit_temperature(3.0 * z, y) == pytest.approx(3.0, rel=0.1)  # logits 3x too sharp: T ~ 3
    assert cal.fit_temperature(z, y) == pytest.approx(1.0, rel=0.1)
    assert cal.fit_temperature(z[:0], y[:0]) == 1.0


def test_ece_is_small_when_calibrated_and_large_when_overconfident():
    z, y = _sampled(4000, 5, seed=1)
    for scale, low, high in ((1.0, 0.0, 0.03), (4.0, 0.1, 1.0)):
        pred, conf = cal.scaled([scale * z])
        assert low <= cal.ece(conf, pred == y[:, None], 10) <= high
    # one bin, all answers at 0.9 and 60% right: |0.9 - 0.6|
    assert cal.ece(np.full(10, 0.9), np.arange(10) < 6, 10) == pytest.approx(0.3)


def test_ece_interval_brackets_the_point():
    z, y = _sampled(200, 4, seed=2)
    pred, conf = cal.scaled([2.0 * z] * len(ATTRIBUTES))
    ok = pred == y[:, None]
    low, high = cal.ece_interval(conf, ok, 10, seed=0)
    assert low <= cal.ece(conf, ok, 10) <= high


def test_scaling_keeps_the_argmax():
    z, _ = _sampled(50, 6, seed=3)
    p1, c1 = cal.scaled([z])
    p2, c2 = cal.scaled([z], np.array([2.5]))
    assert (p1 == p2).all() and (c2 <= c1 + 1e-12).all()


def test_label_table_shrinks_towards_the_attribute_accuracy():
    labels = np.zeros((10, len(ATTRIBUTES)), dtype=int)
    labels[:5] = 1
    correct = np.zeros((10, len(ATTRIBUTES)), dtype=bool)
    correct[:4] = True  # label 1: 4 of 5 right; label 0: 0 of 5; overall 0.4
    table = cal.label_table(labels, correct)
    assert table[0, 1] == pytest.approx((4 + 2 * 0.4) / (5 + 2), abs=1e-4)
    assert table[0, 0] == pytest.approx((0 + 2 * 0.4) / (5 + 2), abs=1e-4)
    assert table[0, 7] == pytest.approx(0.4)  # a label never seen: the attribute's accuracy
    assert (cal.table_confidence(table, labels)[:5] == table[0, 1]).all()


def test_threshold_is_the_lowest_reaching_the_target():
    conf = np.array([0.95, 0.9, 0.8, 0.6, 0.4, 0.3])
    ok = np.array([1, 1, 1, 0, 1, 0], bool)
    assert cal.choose_threshold(conf, ok, 0.99) == 0.65  # answers >= 0.65: 3 of 3 right
    assert cal.choose_threshold(conf, ok, 0.6) == 0.0
    rows = cal.risk_coverage(conf, ok)
    assert rows[0] == {"min_confidence": 0.0, "coverage": 1.0, "accuracy": round(4 / 6, 4)}
    assert cal.selective(conf, ok, 0.99) == (0.0, pytest.approx(float("nan"), nan_ok=True))


def test_nearest_neighbour_distance_and_threshold():
    ref = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    loo = cal.nn_distance(ref, ref, exclude_self=True)
    assert loo == pytest.approx(np.array([1.0, 1.0, 2.0]) / np.sqrt(2))
    assert cal.nn_distance(np.array([[3.0, 4.0]]), ref)[0] == pytest.approx(np.sqrt(13) / np.sqrt(2))  # to (0, 2)
    assert cal.ood_threshold(ref, 1.0) == pytest.approx(2 / np.sqrt(2), abs=1e-5)


def test_carve_is_seeded_disjoint_and_complete():
    ids = list(range(100, 150))
    fit, val = cal.carve(ids, 0.2, seed=7)
    assert len(val) == 10 and sorted(fit + val) == ids and not set(fit) & set(val)
    assert cal.carve(ids, 0.2, seed=7) == (fit, val) and cal.carve(ids, 0.2, seed=8) != (fit, val)
    assert fit == sorted(fit) and val == sorted(val)


def test_grouped_carve_holds_out_whole_configurations():
    """No validation box may share its configuration (seeds, ensembles) with a fitting box."""
    ids = list(range(100, 160))
    groups = [f"c{i // 4}" if i < 140 else f"s{i}" for i in ids]  # 10 configurations of 4 boxes, 20 single ones
    fit, val = cal.carve(ids, 0.25, seed=3, groups=groups)
    assert sorted(fit + val) == ids and 15 <= len(val) <= 18  # whole groups: at most one group past 15
    by_id = dict(zip(ids, groups, strict=True))
    assert not {by_id[i] for i in fit} & {by_id[i] for i in val}
    assert cal.carve(ids, 0.25, seed=3, groups=groups) == (fit, val) and fit == sorted(fit) and val == sorted(val)
    assert cal.carve(ids, 0.25, seed=4, groups=groups) != (fit, val)


def test_grouped_carve_leaves_something_to_fit_and_singletons_match_the_plain_carve():
    fit, val = cal.carve(list(range(6)), 0.9, seed=0, groups=["a"] * 5 + ["b"])
    assert fit and sorted(fit + val) == list(range(6))  # the group of 5 with "b" would leave nothing to fit
    assert cal.carve_rows(30, 6, 5) == cal.carve_rows(30, 6, 5, groups=list(range(30)))  # one row a group
    with pytest.raises(ValueError, match="group keys"):
        cal.carve_rows(3, 1, 0, groups=["a"])


def test_out_of_fold_calibration_lowers_the_ece_of_an_overconfident_metamodel():
    """A metamodel whose heads are the true logits scaled 4x: temperatures fitted out of fold undo the 4."""
    torch.manual_seed(0)
    n_in = 8
    model = KennenO(n_in, 16)
    # heads read the input directly through a fixed body: sharp, but right on average
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for head in model.heads.values():
            head.weight.mul_(20.0)
    n = 800
    x = torch.randn(n, n_in)
    with torch.no_grad():
        out = model(x)
    y = []
    for a in ATTRIBUTES:
        p = torch.softmax(out[a.key] / 4.0, 1).double().numpy()  # the truth is 4x softer than the logits
        y.append(np.minimum((p.cumsum(1) < rng.random((n, 1))).sum(1), a.n_classes - 1))  # inverse CDF
    y = np.array(y).T
    logits = [out[a.key].double().numpy() for a in ATTRIBUTES]
    fold_of = np.arange(n) % 2
    features = cal.standardise(model, x)
    result = cal.calibrate_out_of_fold(logits, y, fold_of, list(range(n)), features, cal.CalibrationParams(), 0, "test")
    m = result.metrics
    assert m["ece_after"] < m["ece_before"] and m["ece_after"] < 0.06
    assert 3.0 < m["calibration.temperature.act"] < 5.5
    assert m["ece_before_low"] <= m["ece_before"] <= m["ece_before_high"]
    assert result.tensors["calibration.temperature"].shape == (len(ATTRIBUTES),)
    assert result.tensors["ood.reference"].shape == (n, n_in)
    assert 0.0 <= m["ood.test_rate"] <= 100.0 and m["calibration.n_val"] == n
    assert {r["calibration"] for r in result.reliability} == {"test before", "test after"}
    meta = result.meta("temperature scaling per attribute", n, cal.CalibrationParams())
    assert meta["calibration"]["ece_after"] == m["ece_after"] and meta["ood"]["threshold"] == result.ood_threshold
    assert meta["calibration"]["fitted_on"] == f"the out-of-fold predictions of all {n} boxes (2 folds)"


def test_out_of_zoo_flags_a_far_box_and_not_a_zoo_box():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(300, 20))
    limit = cal.ood_threshold(ref, 0.99)
    assert cal.nn_distance(rng.normal(size=(1, 20)), ref)[0] < limit * 1.2
    assert cal.nn_distance(rng.normal(size=(1, 20)) + 10, ref)[0] > limit


def test_params_are_checked():
    from kennen.config import from_dict
    from kennen.errors import KennenError

    with pytest.raises(KennenError, match="calibration.val_fraction"):  # fitted on out-of-fold predictions: no carve
        from_dict(cal.CalibrationParams, {"val_fraction": 0.2}, "calibration")
    with pytest.raises(KennenError, match="calibration.bins"):
        from_dict(cal.CalibrationParams, {"bins": 1}, "calibration")

"""kennen.metamodel.sweep: sweeps in the cross-validation folds, the headline's point read, the learning curve."""

from __future__ import annotations

import numpy as np
import pytest

from kennen.metamodel import sweep
from kennen.metamodel.cv import out_of_fold
from kennen.metamodel.kennen_o import EarlyStop, KennenOParams, Optimiser
from kennen.metamodel.runs import evaluate_runs
from kennen.metamodel.sweep import SweepParams, boxes_for, fit_learning_curve, power_law, run_sweep, sweep_points
from kennen.splits import config_folds, fold_split
from tests.test_runs import _world

KP = KennenOParams(
    optimisers={"default": Optimiser("adam", 3e-3, epochs=4, batch=16)},
    n_queries=4,
    hidden=16,
    early_stop=EarlyStop(0.2, patience=2, min_val=5),
)
SP = SweepParams(n_train=(20, 1000), n_queries=(2, 4), outputs=("prob", "top1"), subsets=2)


@pytest.fixture
def world(monkeypatch):
    monkeypatch.setenv("KENNEN_EXECUTOR", "serial")
    outputs, boxes, r = _world()
    e = {"train": [i for i in r["train"] if boxes[i]["act"] != "elu"], "test": r["test"]}
    splits = {"r": r, "e_act": e, "e_empty": {"train": [], "test": r["test"]}}
    return outputs, boxes, splits, config_folds(boxes, 3, 5)


def _headline(world) -> np.ndarray:
    """The kennen_o stage's out-of-fold predictions: its headline setting, replica 0, in every fold."""
    outputs, boxes, _, folds = world
    runs = [sweep.Run(fold_split(folds, f), KP.n_queries, KP.output, KP.optimisers["default"]) for f in range(3)]
    results = evaluate_runs(runs, outputs, boxes, KP.hidden, 3, KP.early_stop)
    return out_of_fold(folds, [r.y_pred for r in results], len(boxes))


@pytest.mark.parametrize("name", ["n_train", "n_queries", "output"])
@pytest.mark.slow
def test_the_headline_point_is_read_from_its_predictions_and_equals_a_retraining(world, monkeypatch, name):
    outputs, boxes, splits, folds = world
    headline = _headline(world)
    trained = []

    def spy(runs, *args, **kwargs):
        trained.extend(runs)
        return evaluate_runs(runs, *args, **kwargs)

    monkeypatch.setattr(sweep, "evaluate_runs", spy)
    rows, _ = run_sweep(name, SP, KP, outputs, boxes, splits, folds, {}, 3, headline=headline)
    points = sweep_points(name, SP, KP, outputs, splits, folds, {}, 3)
    assert len(trained) == len(points) - len(folds)  # the headline point's folds are not trained again
    retrained, _ = run_sweep(name, SP, KP, outputs, boxes, splits, folds, {}, 3)  # every point trained
    assert rows == retrained  # the same training, the same seed: the same numbers
    for row in rows:
        assert row["acc_mean_low"] <= row["acc_mean"] <= row["acc_mean_high"] or name == "n_train"
        assert row["acc_config_mean_low"] <= row["acc_config_mean_high"]


def test_learning_curve_subsets_come_from_the_training_folds_only(world):
    outputs, boxes, splits, folds = world
    points = sweep_points("n_train", SP, KP, outputs, splits, folds, {}, 3)
    assert {p[0] for p, _, _ in points} == {20, "all"}
    for (value, replica, boxes_), f, run in points:
        assert not set(run.split["train"]) & set(folds[f]) and run.split["test"] == folds[f]
        assert boxes_ == "final" and not run.checkpoints
        if value == 20:
            assert len(run.split["train"]) == 20 and run.replica == replica
    subsets = {(p, f): tuple(run.split["train"]) for p, f, run in points if p[0] == 20}
    assert subsets[(20, 0, "final"), 0] != subsets[(20, 1, "final"), 0]  # subsets differ between replicas


def test_the_checkpoint_curve_learns_from_the_final_curves_first_subsets(world):
    from dataclasses import replace

    outputs, boxes, splits, folds = world
    sp = replace(SP, curves=("final", "checkpoints"), checkpoint_subsets=1)
    points = sweep_points("n_train", sp, KP, outputs, splits, folds, {}, 3)
    final = {(p[0], p[1], f): run for p, f, run in points if p[2] == "final"}
    ckpt = {(p[0], p[1], f): run for p, f, run in points if p[2] == "checkpoints"}
    assert {k[1] for k in ckpt} == {0} and len(ckpt) == len(final) // SP.subsets
    for key, run in ckpt.items():
        assert run.checkpoints and run.split == final[key].split and run.replica == final[key].replica


def test_power_law_fit_recovers_a_known_curve_and_answers_targets():
    rng = np.random.default_rng(0)
    n_boxes, sizes = 200, {25: 25.0, 50: 50.0, 100: 100.0, 200: 200.0, "all": 400.0}
    c, a, b = 80.0, 120.0, 0.5
    units = [i // 2 for i in range(n_boxes)]
    y_true = rng.integers(0, 2, size=(n_boxes, 12))
    preds = {}
    for v, n in sizes.items():
        p_right = power_law(np.array(n), c, a, b) / 100
        for r in range(3):
            right = rng.random((n_boxes, 12)) < p_right
            preds[v, r, "final"] = np.where(right, y_true, 1 - y_true)
    fit = fit_learning_curve(y_true, preds, sizes, units, (65.0, 99.0), seed=1, n_boot=50)
    assert fit["fit.ok"] == 1.0 and abs(fit["fit.c"] - c) < 10
    assert fit["fit.boxes_for_65_low"] <= fit["fit.boxes_for_65"] <= fit["fit.boxes_for_65_high"]
    assert fit["fit.boxes_for_99"] is None  # the plateau (about 80) never reaches 99
    assert boxes_for(70.0, 80.0, 100.0, 1.0) == pytest.approx(10.0)


def test_extrapolation_rows_have_the_interval_of_their_own_mean(world):
    outputs, boxes, splits, folds = world
    held = {"e_act": {"act": ["elu"]}, "e_empty": {"act": ["elu"]}}
    r_metrics = {f"acc.{k}": 50.0 for k in ("act", "drop", "pool", "ks", "n_conv", "n_fc", "n_par", "ens", "alg", "bs",
                                             "split", "size")}  # fmt: skip
    rows, _ = run_sweep("extrapolation", SP, KP, outputs, boxes, splits, folds, held, 3, r_metrics)
    assert [r["split"] for r in rows] == ["e_act", "e_empty"]
    assert rows[0]["acc_mean_low"] <= rows[0]["acc_mean"] <= rows[0]["acc_mean_high"]
    assert rows[1]["acc_mean"] != rows[1]["acc_mean"] and set(rows[1]) == set(rows[0])  # NaN: nothing to train on

"""kennen.metamodel.sweep: rows with bootstrap intervals; the headline's own point is read, not retrained."""

from __future__ import annotations

import pytest

from kennen.metamodel import sweep
from kennen.metamodel.kennen_o import EarlyStop, KennenOParams, Optimiser
from kennen.metamodel.runs import Run, evaluate_runs
from kennen.metamodel.sweep import SweepParams, run_sweep
from tests.test_runs import _world

KP = KennenOParams(
    optimisers={"default": Optimiser("adam", 3e-3, epochs=4, batch=16)},
    n_queries=4,
    hidden=16,
    early_stop=EarlyStop(0.2, patience=2, min_val=5),
)
SP = SweepParams(n_train=(20, 1000), n_queries=(2, 4), outputs=("prob", "top1"))


@pytest.fixture
def world(monkeypatch):
    monkeypatch.setenv("KENNEN_EXECUTOR", "serial")
    outputs, boxes, r = _world()
    e = {"train": [i for i in r["train"] if boxes[i]["act"] != "elu"], "test": r["test"]}
    splits = {"r": r, "e_act": e, "e_empty": {"train": [], "test": r["test"]}}
    return outputs, boxes, splits


def _headline(world):
    outputs, boxes, splits = world
    opt = KP.optimisers[KP.optimiser]
    res = evaluate_runs([Run(splits["r"], KP.n_queries, KP.output, opt)], outputs, boxes, KP.hidden, 3, KP.early_stop)[
        0
    ]
    return res, (list(res.test_ids), res.y_true, res.y_pred)


@pytest.mark.parametrize("name", ["n_train", "n_queries", "output"])
def test_the_headline_point_is_read_from_its_predictions_and_equals_a_retraining(world, monkeypatch, name):
    outputs, boxes, splits = world
    res, headline = _headline(world)
    trained = []

    def spy(runs, *args, **kwargs):
        trained.extend(runs)
        return evaluate_runs(runs, *args, **kwargs)

    monkeypatch.setattr(sweep, "evaluate_runs", spy)
    rows = run_sweep(name, SP, KP, outputs, boxes, splits, {}, 3, headline=headline)
    assert len(trained) == len(rows) - 1  # one point fewer trained
    retrained = run_sweep(name, SP, KP, outputs, boxes, splits, {}, 3)  # no predictions: every point trained
    assert rows == retrained  # the same training, the same seed: the same numbers
    assert any(row["acc_mean"] == res.metrics["acc.mean"] for row in rows)
    for row in rows:
        assert row["acc_mean_low"] <= row["acc_mean"] <= row["acc_mean_high"]


def test_extrapolation_rows_have_the_interval_of_their_own_mean(world):
    outputs, boxes, splits = world
    res, _ = _headline(world)
    held = {"e_act": {"act": ["elu"]}, "e_empty": {"act": ["elu"]}}
    rows = run_sweep("extrapolation", SP, KP, outputs, boxes, splits, held, 3, res.metrics)
    assert [r["split"] for r in rows] == ["e_act", "e_empty"]
    assert rows[0]["acc_mean_low"] <= rows[0]["acc_mean"] <= rows[0]["acc_mean_high"]
    assert rows[1]["acc_mean"] != rows[1]["acc_mean"] and set(rows[1]) == set(rows[0])  # NaN: nothing to train on

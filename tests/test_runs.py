"""kennen.metamodel.runs: parallel trainings agree with one at a time, never read test boxes; seeds; predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kennen.attributes import ATTRIBUTES
from kennen.errors import KennenError
from kennen.metamodel.kennen_o import EarlyStop, Optimiser, Result, accuracies, train_and_evaluate
from kennen.metamodel.runs import Run, evaluate_runs, read_predictions, seed_metrics, write_predictions

OPT = Optimiser("adam", 3e-3, weight_decay=1e-3, epochs=6, batch=16)
STOP = EarlyStop(0.2, patience=2, min_val=5)


def _world(n: int = 90, q: int = 4, seed: int = 0):
    """Outputs [n, q, 10] that carry the first two attributes, and the box table."""
    rng = np.random.default_rng(seed)
    boxes = [
        {a.key: a.values[rng.integers(a.n_classes)] for a in ATTRIBUTES} | {"box": i, "config": f"c{i // 2}"}
        for i in range(n)
    ]
    labels = np.array([[a.index(b[a.key]) for a in ATTRIBUTES] for b in boxes])
    logits = rng.normal(size=(n, q, 10)) + 2.0 * np.eye(10)[labels[:, 0] + 4 * labels[:, 1]][:, None]
    outputs = (logits - np.log(np.exp(logits).sum(-1, keepdims=True))).astype(np.float32)
    return outputs, boxes, {"train": list(range(0, n, 3)) + list(range(1, n, 3)), "test": list(range(2, n, 3))}


@pytest.mark.parametrize("executor", ["serial", "process"])
@pytest.mark.slow
def test_parallel_runs_agree_with_one_at_a_time(monkeypatch, executor):
    """The same trainings, in a pool of 2 workers or serially, as ``train_and_evaluate`` one by one.

    Both run the same operations in the same order on one torch thread, so the numbers are
    expected to be bitwise equal; the weights get ``atol=1e-6`` only to allow a BLAS kernel
    that picks its code path by memory alignment, and the predictions must then be equal.
    """
    monkeypatch.setenv("KENNEN_EXECUTOR", executor)
    monkeypatch.setenv("KENNEN_WORKERS", "2")
    outputs, boxes, split = _world()
    runs = [
        Run(split, 4, "prob", OPT, keep_model=True),
        Run(split, 2, "top1", OPT, n_train=30, keep_model=True),
        Run(split, 4, "prob", OPT, replica=1),
    ]
    results = evaluate_runs(runs, outputs, boxes, 16, seed=3, stop=STOP)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        refs = [train_and_evaluate(outputs, boxes, split, r.n_queries, r.output, 16, OPT, 3, r.n_train, stop=STOP)
                for r in runs[:2]]  # fmt: skip
    finally:
        torch.set_num_threads(before)
    for res, ref in zip(results, refs, strict=False):
        np.testing.assert_array_equal(res.y_pred, ref.y_pred)
        for k, v in ref.model.state_dict().items():
            torch.testing.assert_close(res.model.state_dict()[k], v, atol=1e-6, rtol=0)
        assert res.curve.val_acc == pytest.approx(ref.curve.val_acc) and res.test_ids == tuple(split["test"])
        assert {"acc.mean", "acc.mean_low", "acc.mean_high", "acc.act_low"} <= set(res.metrics)
    assert results[2].model is None and not np.array_equal(results[2].y_pred, results[0].y_pred)  # another seed


def test_training_never_reads_the_test_boxes(monkeypatch):
    """Test boxes' outputs replaced by NaN: early stopping, the kept epoch and the weights do not change."""
    monkeypatch.setenv("KENNEN_EXECUTOR", "serial")
    outputs, boxes, split = _world()
    spoiled = outputs.copy()
    spoiled[split["test"]] = np.nan
    a, b = (evaluate_runs([Run(split, 4, "prob", OPT, keep_model=True)], o, boxes, 16, 3, STOP)[0]
            for o in (outputs, spoiled))  # fmt: skip
    assert a.curve.val_acc == b.curve.val_acc and a.curve.best_epoch == b.curve.best_epoch
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k


def _result(y_true: np.ndarray, y_pred: np.ndarray) -> Result:
    return Result(None, y_true, y_pred, accuracies(y_true, y_pred))


def test_seed_metrics_give_the_spread_over_seeds():
    rng = np.random.default_rng(0)
    y = np.stack([rng.integers(0, a.n_classes, 50) for a in ATTRIBUTES], 1)
    results = [_result(y, np.where(rng.random(y.shape) < p, y, 0)) for p in (0.5, 0.6, 0.7)]
    m = seed_metrics(results)
    means = [r.metrics["acc.mean"] for r in results]
    assert m["seeds.n"] == 3 and m["seeds.acc.mean"] == pytest.approx(np.mean(means), abs=0.01)
    assert m["seeds.acc.mean_sd"] == pytest.approx(np.std(means, ddof=1), abs=0.01)
    assert m["seeds.acc.mean_low"] < m["seeds.acc.mean"] < m["seeds.acc.mean_high"]
    assert {f"seeds.acc.{a.key}_sd" for a in ATTRIBUTES} <= set(m)
    one = seed_metrics(results[:1])  # one seed: means only, no NaN for the JSON
    assert one["seeds.acc.mean"] == means[0] and "seeds.acc.mean_sd" not in one


def test_predictions_file_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    y_true = np.stack([rng.integers(0, a.n_classes, 7) for a in ATTRIBUTES], 1)
    y_pred = np.stack([rng.integers(0, a.n_classes, 7) for a in ATTRIBUTES], 1)
    write_predictions(tmp_path / "p.csv", [3, 5, 8, 9, 10, 12, 20], y_true, y_pred)
    ids, t, p = read_predictions(tmp_path / "p.csv")
    assert ids == [3, 5, 8, 9, 10, 12, 20]
    np.testing.assert_array_equal(t, y_true)
    np.testing.assert_array_equal(p, y_pred)
    header = (tmp_path / "p.csv").read_text().splitlines()[0]
    assert header.startswith("box,act_true,act_pred,drop_true,drop_pred")
    (tmp_path / "bad.csv").write_text("box,act\n1,2\n")
    with pytest.raises(KennenError, match="bad.csv: not a kennen-o predictions file"):
        read_predictions(tmp_path / "bad.csv")


def test_stage_runs_seed_the_headline_and_early_stop_it_only():
    from kennen.metamodel.kennen_o import KennenOParams
    from kennen.metamodel.runs import stage_runs

    kp = KennenOParams(optimisers={"default": OPT, "official": Optimiser("sgd", 1e-4)}, seeds=3)
    names, runs = stage_runs(kp, {"train": [0, 1], "test": [2]})
    assert names == ["default", "default", "default", "official"]
    assert [r.replica for r in runs] == [0, 1, 2, 0] and [r.keep_model for r in runs] == [True, False, False, False]
    assert [r.early_stop for r in runs] == [True, True, True, False]  # comparison settings keep their schedule


def test_checkpoint_boxes_of_test_boxes_never_reach_a_metamodel():
    """A run learning from checkpoint boxes gets only those of its training boxes' models: poison (NaN) every
    other checkpoint, and the trained weights stay finite; unpoisoned, the checkpoints change the model."""
    from kennen.queries import CheckpointBoxes

    outputs, boxes, split = _world()
    rng = np.random.default_rng(1)
    owner = np.repeat(np.arange(len(boxes)), 2)
    ckpt_outputs = outputs[owner] + rng.normal(scale=0.1, size=(len(owner), *outputs.shape[1:])).astype(np.float32)
    clean = CheckpointBoxes(ckpt_outputs.copy(), owner, np.full(len(owner), 1.0, dtype=np.float32))
    ckpt_outputs[np.isin(owner, split["test"])] = np.nan
    poisoned = CheckpointBoxes(ckpt_outputs, owner, clean.epoch)
    run = Run(split, 4, "prob", OPT, keep_model=True, checkpoints=True)
    (res,) = evaluate_runs([run], outputs, boxes, 16, 1, STOP, checkpoints=poisoned)
    assert all(torch.isfinite(v).all() for v in res.model.state_dict().values())
    assert res.curve.n_fit + res.curve.n_val > len(split["train"])  # it did learn from checkpoint rows
    (same,) = evaluate_runs([run], outputs, boxes, 16, 1, STOP, checkpoints=clean)
    assert np.array_equal(same.y_pred, res.y_pred)
    (without,) = evaluate_runs([Run(split, 4, "prob", OPT, keep_model=True)], outputs, boxes, 16, 1, STOP)
    assert without.curve.n_fit < res.curve.n_fit
    with pytest.raises(KennenError, match="checkpoints"):
        evaluate_runs([run], outputs, boxes, 16, 1, STOP)

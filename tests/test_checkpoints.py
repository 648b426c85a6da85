"""Checkpoint boxes (ours): assembled from the shards' checkpoint files, and refused when they do not fit."""

from __future__ import annotations

import numpy as np
import pytest

from kennen.errors import KennenError
from kennen.queries import CheckpointBoxes, checkpoint_boxes, load_checkpoint_boxes
from kennen.zoo.store import write_checkpoints
from kennen.zoo.train import TrainResult

QUERIES = np.array([5, 3, 8, 1])


def _result(model_id: int, epochs: int = 2) -> TrainResult:
    rng = np.random.default_rng(model_id)
    outputs = np.log(rng.dirichlet(np.ones(10), (epochs, len(QUERIES)))).astype(np.float32)
    return TrainResult(model_id, {"w": np.zeros(1, np.float32)}, 95.0, 0.1, 1.0, False, outputs)


def _zoo(tmp_path):
    """Models 0, 1 in shard 0 and 2 in shard 1; model 1 was pruned."""
    models = [{"model_id": i, "shard": s} for i, s in ((0, 0), (1, 0), (2, 1))]
    write_checkpoints(tmp_path, 0, [_result(0), _result(1)], (0.5, 1.0), QUERIES)
    write_checkpoints(tmp_path, 1, [_result(2)], (0.5, 1.0), QUERIES)
    return models


def test_checkpoint_boxes_of_the_kept_models_in_box_order(tmp_path):
    c = checkpoint_boxes(_zoo(tmp_path), [2, 0], tmp_path, QUERIES[:3])  # the stage's 3 queries: a prefix
    assert c.box.tolist() == [0, 0, 1, 1] and c.epoch.tolist() == [0.5, 1.0, 0.5, 1.0]  # box 0 is model 0
    np.testing.assert_array_equal(c.outputs[3], _result(2).checkpoints[1, :3])


def test_checkpoints_on_other_queries_or_epochs_are_refused(tmp_path):
    models = _zoo(tmp_path)
    with pytest.raises(KennenError, match="train_zoo.checkpoint_queries must be at least queries.n_max"):
        checkpoint_boxes(models, [0], tmp_path, np.array([5, 3, 8, 1, 9]))  # more queries than recorded
    with pytest.raises(KennenError, match="train_zoo.checkpoint_queries must be at least queries.n_max"):
        checkpoint_boxes(models, [0], tmp_path, np.array([3, 5]))  # another draw
    write_checkpoints(tmp_path, 1, [_result(2, 1)], (1.0,), QUERIES)
    with pytest.raises(KennenError, match="shards recorded different checkpoints"):
        checkpoint_boxes(models, [0, 2], tmp_path, QUERIES)


def test_a_zoo_without_checkpoints_has_no_checkpoint_boxes(tmp_path):
    models = [{"model_id": 0, "shard": 0}]
    write_checkpoints(tmp_path, 0, [_result(0)], (), np.zeros(0, int))
    c = checkpoint_boxes(models, [0], tmp_path, QUERIES)
    assert c.outputs.shape == (0, 4, 10) and len(c.box) == 0


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"box": np.array([0, 2])}, "box 2 is not a single model's row"),
        ({"outputs": np.zeros((2, 3, 10), np.float32)}, r"outputs must be float32 \[boxes, 4, 10\]"),
        ({"outputs": np.full((2, 4, 10), 0.5, np.float32)}, "must be finite log-probabilities"),
        ({"epoch": np.zeros(3, np.float32)}, "box and epoch must hold 2 values each"),
    ],
)
def test_a_bad_checkpoint_boxes_file_is_one_line(tmp_path, change, needle):
    boxes = [{"box": 0, "kind": "single"}, {"box": 1, "kind": "single"}, {"box": 2, "kind": "ensemble"}]
    good = {"outputs": np.full((2, 4, 10), np.log(0.1), np.float32), "box": np.array([0, 1]), "epoch": np.ones(2)}
    arrays = good | change
    CheckpointBoxes(arrays["outputs"], arrays["box"], arrays["epoch"]).save(tmp_path / "c.npz")
    with pytest.raises(KennenError, match=needle):
        load_checkpoint_boxes(tmp_path / "c.npz", boxes, 4)
    with pytest.raises(KennenError, match="file not found"):
        load_checkpoint_boxes(tmp_path / "absent.npz", boxes, 4)

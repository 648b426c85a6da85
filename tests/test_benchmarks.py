"""Smoke tests of the benchmark scripts that have no test of their own, on tiny params."""

from __future__ import annotations

import importlib.util
import json
import sys

import yaml

from kennen import data as mnist_data
from tests.conftest import REPO, tiny_params


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checkpoint_cost_trains_the_same_weights_with_and_without(tmp_path, idx_dir, monkeypatch):
    params = tiny_params(idx_dir, train_zoo={"epochs": 3, "checkpoints": [1.0, 2.0], "checkpoint_queries": 20})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    mnist_data.save(mnist_data.read_idx_dir(idx_dir), tmp_path / "mnist.npz")
    out = tmp_path / "cost.json"
    argv = ["checkpoint_cost.py", "--models", "2", "--params", str(tmp_path / "params.yaml")]
    monkeypatch.setattr(sys, "argv", [*argv, "--data", str(tmp_path / "mnist.npz"), "--out", str(out)])
    _load("checkpoint_cost").main()
    result = json.loads(out.read_text())
    assert result["models"] == 2 and result["same_weights"] is True
    assert result["bytes_per_model"] == 2 * 20 * 10 * 4 and result["ratio"] > 0

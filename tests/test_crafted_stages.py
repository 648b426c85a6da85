"""Smoke tests of the ``kennen_i`` and ``kennen_io`` stages: their ``main`` on a tiny zoo built by the real stages.

The upstream stages run in-process with the tiny params of ``conftest.py``, from the commands in
``dvc.yaml`` (so the paths are the pipeline's), in a temporary folder; a few seconds on a CPU.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shlex
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from kennen.attributes import KEYS
from kennen.io import read_csv
from tests.conftest import REPO, tiny_params

UPSTREAM = ("data", "sample_zoo", ("train_zoo", 0), ("train_zoo", 1), "zoo_table", "prune", "ensembles", "queries",
            "splits")  # fmt: skip


def run_stage(root: Path, stage: str | tuple[str, int], *extra: str) -> int:
    """``main`` of a pipeline stage with its ``dvc.yaml`` command line, in ``root``."""
    name, shard = stage if isinstance(stage, tuple) else (stage, None)
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][name]
    cmd = spec["do"]["cmd"] if "foreach" in spec else spec["cmd"]
    argv = shlex.split(cmd.replace("${item.shard}", str(shard)))
    assert argv[:2] == ["python", "-m"]
    with _chdir(root):
        return importlib.import_module(argv[2]).main([*argv[3:], *extra])


@contextlib.contextmanager
def _chdir(path: Path):
    """``contextlib.chdir`` (Python 3.11+), for Python 3.10."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory, idx_dir):
    root = tmp_path_factory.mktemp("crafted_stages")
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(idx_dir), sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KENNEN_EXECUTOR", "serial")
        for stage in UPSTREAM:
            assert run_stage(root, stage) == 0, stage
    return root


@pytest.fixture
def serial(monkeypatch):
    monkeypatch.setenv("KENNEN_EXECUTOR", "serial")


def test_kennen_io_stage(tiny_zoo, serial):
    assert run_stage(tiny_zoo, "kennen_io") == 0
    m = json.loads((tiny_zoo / "reports/metrics/kennen_io.json").read_text())
    for k in (*KEYS, "mean"):
        assert m[f"acc.{k}_low"] <= m[f"acc.{k}"] <= m[f"acc.{k}_high"]
    assert m["gap_vs_o.low"] <= m["gap_vs_o.diff"] <= m["gap_vs_o.high"]
    assert m["gap_vs_o.diff"] == pytest.approx(m["acc.mean"] - m["gap_vs_o.o_mean"], abs=0.02)
    assert m["queries.moved"] > 0 and m["query_phase1.moved"] > 0
    phases = read_csv(tiny_zoo / "reports/plots/kennen_io/phases.csv")
    assert [p["train"] for p in phases if p["split"] == "r"] == ["metamodel", "queries", "metamodel"]
    meta = json.loads((tiny_zoo / "models/kennen_io.json").read_text())
    assert meta["query_boxes"] == 4 and meta["test_accuracy"]["acc.mean"] == m["acc.mean"]
    assert load_file(str(tiny_zoo / "models/kennen_io.safetensors"))["queries"].shape == (5, 1, 28, 28)
    _assert_calibrated(tiny_zoo, "kennen_io", m, meta)


def _assert_calibrated(root: Path, stage: str, m: dict, meta: dict) -> None:
    """A crafted stage's calibration: fitted on a carve held out of training, written where whiten reads it."""
    for key in ("ece_before", "ece_after"):
        assert 0 <= m[f"{key}_low"] <= m[key] <= m[f"{key}_high"] <= 1
    assert m["calibration.n_val"] > 0 and m["n_fit"] + m["calibration.n_val"] == m["n_train"]
    assert len(read_csv(root / f"reports/plots/{stage}/risk_coverage.csv")) == 20
    assert read_csv(root / f"reports/plots/{stage}/reliability.csv")
    assert (root / f"reports/figures/{stage}/reliability.png").is_file()
    tensors = load_file(str(root / f"models/{stage}.safetensors"))
    assert tensors["ood.reference"].shape[0] == m["n_train"]
    assert meta["calibration"]["min_confidence"] == m["abstain.min_confidence"] and "threshold" in meta["ood"]
    assert len(meta["provenance"]["data_sha256"]) == 64


def test_kennen_io_stage_with_two_seeds(tiny_zoo, serial, tmp_path):
    params = yaml.safe_load((tiny_zoo / "params.yaml").read_text())
    params["kennen_io"]["seeds"] = 2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    metrics = tmp_path / "kennen_io.json"
    assert run_stage(tiny_zoo, "kennen_io", "--params", str(tmp_path / "params.yaml"), "--metrics", str(metrics)) == 0
    m = json.loads(metrics.read_text())
    assert m["seeds.n"] == 2 and m["seeds.acc.mean_low"] <= m["seeds.acc.mean"] <= m["seeds.acc.mean_high"]
    assert {"seeds.gap_vs_o.diff", "seeds.gap_vs_o.diff_sd"} <= set(m)


def test_kennen_i_stage(tiny_zoo, serial):
    assert run_stage(tiny_zoo, "kennen_i") == 0
    m = json.loads((tiny_zoo / "reports/metrics/kennen_i.json").read_text())
    for k in (*KEYS, "mean"):
        assert m[f"acc.{k}_low"] <= m[f"acc.{k}"] <= m[f"acc.{k}_high"]
    for target in ("each", "all"):
        assert m[f"{target}.acc.mean_low"] <= m[f"{target}.acc.mean"] <= m[f"{target}.acc.mean_high"]
    table = read_csv(tiny_zoo / "reports/plots/kennen_i/targets.csv")
    assert {"mean", "mean_low", "mean_high"} <= set(table[0]) and "act_low" not in table[0]
    meta = json.loads((tiny_zoo / "models/kennen_i.json").read_text())
    _assert_calibrated(tiny_zoo, "kennen_i", m, meta)
    # uncalibrated, kennen-i answers with certainty: its ECE is the share of answers that are wrong
    assert m["ece_before"] == pytest.approx(1 - m["abstain.accuracy_all"] / 100, abs=1e-3)
    assert load_file(str(tiny_zoo / "models/kennen_i.safetensors"))["calibration.table"].shape == (12, 10)

"""Stage scripts on bad input: one line on stderr naming the key or file, exit 2, nothing written."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import yaml

from kennen.zoo.store import read_table
from stages import data as data_stage
from stages import ensembles as ensembles_stage
from stages import prune as prune_stage
from stages import sample_zoo as sample_stage
from stages import train_zoo as train_stage
from tests.conftest import tiny_params


def write_params(tmp_path, params) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return str(path)


def assert_one_line_error(capsys, code: int, needle: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: ") and needle in err[-1], err
    assert not any(line.startswith("Traceback") for line in err)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"sample_zoo": {"n_model": 3}}, "sample_zoo.n_model: unknown key"),
        ({"sample_zoo": {"n_models": 10**9}}, "sample_zoo.n_models: 1000000000 is above its bound 100,000"),
        ({"sample_zoo": {"space": {"bs": [32]}}}, "sample_zoo.space.bs: value 32 is outside Table 1"),
        ({"seed": "x"}, "seed: expected a non-negative int"),
    ],
)
def test_sample_zoo_bad_params(tmp_path, idx_dir, capsys, override, needle):
    out = tmp_path / "sample"
    code = sample_stage.main(
        ["--params", write_params(tmp_path, tiny_params(idx_dir, **override)), "--out-dir", str(out)]
    )
    assert_one_line_error(capsys, code, needle)
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


def test_prune_min_acc_out_of_range(tmp_path, idx_dir, capsys):
    out = tmp_path / "kept.json"
    params = write_params(tmp_path, tiny_params(idx_dir, prune={"min_acc": 150}))
    code = prune_stage.main(["--params", params, "--models", str(tmp_path / "models.csv"), "--out", str(out)])
    assert_one_line_error(capsys, code, "prune.min_acc: must be within 0..100, got 150")
    assert not out.exists()


def test_missing_input_file_is_named(tmp_path, idx_dir, capsys):
    params = write_params(tmp_path, tiny_params(idx_dir))
    code = ensembles_stage.main(
        [
            "--params",
            params,
            "--models",
            str(tmp_path / "nope.csv"),
            "--kept",
            str(tmp_path / "kept.json"),
            "--out",
            str(tmp_path / "e.csv"),
        ]
    )
    assert_one_line_error(capsys, code, "nope.csv: file not found")


@pytest.mark.slow
def test_corrupt_data_file_stops_training(tmp_path, idx_dir, capsys):
    params = write_params(tmp_path, tiny_params(idx_dir))
    sample = tmp_path / "sample"
    assert sample_stage.main(["--params", params, "--out-dir", str(sample)]) == 0
    bad = tmp_path / "mnist.npz"
    bad.write_bytes(b"garbage")
    code = train_stage.main(
        [
            "--params",
            params,
            "--shard",
            "0",
            "--sample",
            str(sample),
            "--data",
            str(bad),
            "--out-dir",
            str(tmp_path / "shards"),
            "--partial-dir",
            str(tmp_path / "partial"),
            "--timings",
            str(tmp_path / "timings.json"),
            "--checkpoint-dir",
            str(tmp_path / "checkpoints"),
        ]
    )
    assert_one_line_error(capsys, code, "mnist.npz: corrupt MNIST file")
    assert not (tmp_path / "shards").exists() or not any((tmp_path / "shards").iterdir())


def test_shard_outside_the_sample(tmp_path, idx_dir, capsys):
    params = write_params(tmp_path, tiny_params(idx_dir))
    sample = tmp_path / "sample"
    assert sample_stage.main(["--params", params, "--out-dir", str(sample)]) == 0
    code = train_stage.main(
        [
            "--params",
            params,
            "--shard",
            "9",
            "--sample",
            str(sample),
            "--data",
            "x.npz",
            "--out-dir",
            str(tmp_path / "shards"),
            "--partial-dir",
            str(tmp_path / "partial"),
            "--timings",
            str(tmp_path / "timings.json"),
            "--checkpoint-dir",
            str(tmp_path / "checkpoints"),
        ]
    )
    assert_one_line_error(capsys, code, "train_zoo.shards: shard 9 holds no models (the sample has shards [0, 1])")


def test_data_stage_from_idx_folder(tmp_path, idx_dir, capsys):
    out = tmp_path / "mnist.npz"
    assert data_stage.main(["--params", write_params(tmp_path, tiny_params(idx_dir)), "--out", str(out)]) == 0
    assert out.is_file()
    bad = tiny_params(idx_dir)
    bad["data"]["idx_dir"] = str(tmp_path / "missing")
    code = data_stage.main(["--params", write_params(tmp_path, bad), "--out", str(tmp_path / "other.npz")])
    assert_one_line_error(capsys, code, "data.idx_dir:")
    assert not (tmp_path / "other.npz").exists()


def _train_shard(tmp_path, idx_dir, name: str, **train_zoo) -> tuple:
    from kennen import data as mnist_data
    from kennen.zoo.store import state_dicts

    folder = tmp_path / name
    folder.mkdir()
    overrides = {"train_zoo": train_zoo} if train_zoo else {}
    # Every act, drop, alg, bs and split; 3 structures (n_fc), so 2 of a shard's 4 models share one.
    params = tiny_params(idx_dir, sample_zoo={"space": {"pool": [True], "ks": [5], "n_conv": [2]}}, **overrides)
    params_path = write_params(folder, params)
    sample, npz = folder / "sample", folder / "mnist.npz"
    mnist_data.save(mnist_data.read_idx_dir(idx_dir), npz)
    assert sample_stage.main(["--params", params_path, "--out-dir", str(sample)]) == 0
    args = ["--params", params_path, "--shard", "0", "--sample", str(sample), "--data", str(npz)]
    args += ["--partial-dir", str(folder / "partial"), "--timings", str(folder / "timings.json")]
    args += ["--checkpoint-dir", str(folder / "checkpoints")]
    assert train_stage.main([*args, "--out-dir", str(folder / "shards")]) == 0
    return read_table(folder / "shards" / "shard-0.csv"), state_dicts(folder / "shards" / "shard-0.safetensors")


@pytest.mark.slow
def test_fused_trainer_writes_the_loop_trainers_shard(tmp_path, idx_dir):
    loop_rows, loop_w = _train_shard(tmp_path, idx_dir, "loop")
    fused_rows, fused_w = _train_shard(tmp_path, idx_dir, "fused", trainer="fused", fuse_max=2, checkpoints=[])
    assert [r["model_id"] for r in fused_rows] == [r["model_id"] for r in loop_rows]
    assert fused_w.keys() == loop_w.keys()
    for model_id, state in loop_w.items():
        for k, v in state.items():
            torch.testing.assert_close(fused_w[model_id][k], v, rtol=1e-3, atol=1e-3)
    for f, r in zip(fused_rows, loop_rows, strict=True):
        assert abs(f["test_acc"] - r["test_acc"]) <= 1.0
    # The shard really was fused.
    shard = [r for r in read_table(tmp_path / "fused" / "sample" / "shard-0.csv") if r["shard"] == 0]
    assert max(Counter((r["pool"], r["ks"], r["n_conv"], r["n_fc"]) for r in shard).values()) >= 2

"""Model-granularity resume of one zoo shard (kennen/zoo/shard.py), through the train_zoo stage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from kennen import data as mnist_data
from kennen.zoo.store import fingerprint, load_partials, save_partial
from kennen.zoo.train import TrainResult
from stages import sample_zoo as sample_stage
from stages import train_zoo as train_stage
from tests.conftest import REPO, tiny_params


@pytest.fixture
def shard_inputs(tmp_path, idx_dir):
    """Tiny params with tasks slow enough (about a second each) to kill the stage between models."""
    params = tiny_params(idx_dir, sample_zoo={"n_models": 6, "shard_size": 6}, train_zoo={"shards": [0], "epochs": 30})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert sample_stage.main(["--params", str(tmp_path / "params.yaml"), "--out-dir", str(tmp_path / "sample")]) == 0
    mnist_data.save(mnist_data.read_idx_dir(idx_dir), tmp_path / "mnist.npz")
    return tmp_path


def _args(folder: Path, out: str) -> list[str]:
    return [
        "--params", str(folder / "params.yaml"), "--shard", "0", "--sample", str(folder / "sample"),
        "--data", str(folder / "mnist.npz"), "--out-dir", str(folder / out),
        "--partial-dir", str(folder / f"{out}-partial"), "--timings", str(folder / f"{out}-timings.json"),
    ]  # fmt: skip


def test_a_killed_shard_resumes_model_by_model_with_identical_bytes(shard_inputs, monkeypatch, capfd):
    monkeypatch.setenv("KENNEN_EXECUTOR", "serial")
    assert train_stage.main(_args(shard_inputs, "whole")) == 0
    assert not (shard_inputs / "whole-partial" / "shard-0").exists()  # removed once the shard is written

    env = os.environ | {"KENNEN_EXECUTOR": "serial", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "stages.train_zoo", *_args(shard_inputs, "cut")], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    partial = shard_inputs / "cut-partial" / "shard-0"
    deadline = time.monotonic() + 120
    while len(list(partial.glob("model-*.safetensors"))) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, "the stage ended before two models were kept"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = len(list(partial.glob("model-*.safetensors")))
    assert 2 <= kept < 6 and not (shard_inputs / "cut" / "shard-0.csv").exists()

    capfd.readouterr()
    assert train_stage.main(_args(shard_inputs, "cut")) == 0
    assert f"resuming, {kept} of 6 models already trained" in capfd.readouterr().err
    assert f'"trained_now": {6 - kept}' in (shard_inputs / "cut-timings.json").read_text()
    for name in ("shard-0.safetensors", "shard-0.csv"):
        assert (shard_inputs / "cut" / name).read_bytes() == (shard_inputs / "whole" / name).read_bytes()
    assert not partial.exists()


def test_partials_of_other_settings_or_torn_files_are_retrained(tmp_path):
    import numpy as np

    r = TrainResult(3, {"w": np.arange(4, dtype=np.float32)}, 97.25, float("nan"), 1.5, False)
    digest = fingerprint("spec", epochs=2)
    save_partial(tmp_path, r, digest)
    back = load_partials(tmp_path, {3: digest})[3]
    assert back.test_acc == 97.25 and np.isnan(back.train_loss) and (back.state["w"] == r.state["w"]).all()
    assert load_partials(tmp_path, {3: fingerprint("spec", epochs=3)}) == {}  # other settings: train again
    (tmp_path / "model-3.safetensors").write_bytes(b"torn")
    assert load_partials(tmp_path, {3: digest}) == {}

"""Model-granularity resume of one zoo shard (kennen/zoo/shard.py), through the train_zoo stage."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from kennen import data as mnist_data
from kennen.zoo import shard as shard_module
from kennen.zoo import store
from kennen.zoo.shard import WEIGHT_MODULES, code_digest
from kennen.zoo.store import fingerprint, load_partials, save_partial, state_dicts
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
        "--checkpoint-dir", str(folder / f"{out}-checkpoints"),
    ]  # fmt: skip


@pytest.mark.slow
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
    checkpoints = [
        (shard_inputs / f"{out}-checkpoints" / "shard-0.safetensors").read_bytes() for out in ("cut", "whole")
    ]
    assert checkpoints[0] == checkpoints[1]  # the resumed models' checkpoint outputs came back from their partials
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


def _zoo(folder: Path, idx_dir: Path, n_models: int, trainer: str = "loop") -> Path:
    """Tiny params and sample of ``n_models`` models in shards of 4 (shard 0 is full from 4 models on)."""
    folder.mkdir(parents=True, exist_ok=True)
    params = tiny_params(
        idx_dir,
        sample_zoo={"n_models": n_models, "shard_size": 4, "groups": []},
        train_zoo={"shards": [0], "trainer": trainer, "checkpoints": [1.0] if trainer == "loop" else []},
    )
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    assert sample_stage.main(["--params", str(folder / "params.yaml"), "--out-dir", str(folder / "sample")]) == 0
    if not (folder / "mnist.npz").exists():
        mnist_data.save(mnist_data.read_idx_dir(idx_dir), folder / "mnist.npz")
    return folder


def _trained_now(folder: Path, out: str) -> int:
    return json.loads((folder / f"{out}-timings.json").read_text())["trained_now"]


def test_code_digest_covers_the_bytes_of_every_weight_module(tmp_path):
    for name in WEIGHT_MODULES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    assert code_digest(tmp_path) == code_digest()
    with open(tmp_path / "kennen/zoo/train.py", "a") as f:
        f.write("\n# an edit\n")
    assert code_digest(tmp_path) != code_digest()


@pytest.mark.slow
def test_partials_of_other_code_are_retrained_never_mixed(tmp_path, idx_dir, monkeypatch):
    monkeypatch.setenv("KENNEN_EXECUTOR", "serial")
    folder = _zoo(tmp_path, idx_dir, 3)  # shard 0 not full: its partials stay, as after a kill
    assert train_stage.main(_args(folder, "z")) == 0
    assert _trained_now(folder, "z") == 3 and len(list((folder / "z-partial/shard-0").glob("model-*"))) == 3
    weights = (folder / "z/shard-0.safetensors").read_bytes()

    assert train_stage.main(_args(folder, "z")) == 0
    assert _trained_now(folder, "z") == 0  # same code: every partial is reused

    monkeypatch.setattr(shard_module, "code_digest", lambda: "the trainer after an edit")
    assert train_stage.main(_args(folder, "z")) == 0
    assert _trained_now(folder, "z") == 3  # all stale: none of the old code's models is mixed in
    assert (folder / "z/shard-0.safetensors").read_bytes() == weights  # the edit here changed no arithmetic


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["loop", "fused"])
def test_growing_the_last_shard_retrains_none_of_its_models(tmp_path, idx_dir, monkeypatch, trainer):
    monkeypatch.setenv("KENNEN_EXECUTOR", "serial")
    grown = _zoo(tmp_path / "grown", idx_dir, 2, trainer)
    assert train_stage.main(_args(grown, "z")) == 0
    before = state_dicts(grown / "z/shard-0.safetensors")
    _zoo(grown, idx_dir, 4, trainer)  # n_models 2 -> 4: shard 0 grows to full
    assert train_stage.main(_args(grown, "z")) == 0
    after = state_dicts(grown / "z/shard-0.safetensors")
    assert sorted(after) == [0, 1, 2, 3]
    assert not (grown / "z-partial/shard-0").exists()  # full now: its partials are gone
    whole = _zoo(tmp_path / "whole", idx_dir, 4, trainer)
    assert train_stage.main(_args(whole, "z")) == 0
    for name in ("shard-0.safetensors", "shard-0.csv"):  # the bytes of a zoo built at 4 models from the start
        assert (grown / "z" / name).read_bytes() == (whole / "z" / name).read_bytes()
    if trainer == "loop":
        assert _trained_now(grown, "z") == 2  # only the new models
        for model_id, state in before.items():
            assert all(v.numpy().tobytes() == after[model_id][k].numpy().tobytes() for k, v in state.items())
    else:  # the tiny space has one structure: one fused group, whose members changed, so all of it trains again
        assert _trained_now(grown, "z") == 4


@pytest.mark.parametrize("bad", ["missing", "folder"])
def test_a_bad_data_path_is_one_line(tmp_path, idx_dir, capfd, bad):
    folder = _zoo(tmp_path, idx_dir, 2)
    args = _args(folder, "z")
    data = folder / "nothing.npz" if bad == "missing" else folder / "sample"
    args[args.index("--data") + 1] = str(data)
    capfd.readouterr()
    assert train_stage.main(args) == 2
    what = "file not found" if bad == "missing" else "is a folder"
    assert capfd.readouterr().err == f"error: {data}: {what}; give the MNIST .npz written by the data stage\n"


@pytest.mark.parametrize("flag", ["--timings", "--out-dir", "--partial-dir", "--checkpoint-dir"])
def test_a_bad_output_path_is_refused_before_any_model_trains(tmp_path, idx_dir, capfd, flag):
    folder = _zoo(tmp_path, idx_dir, 2)
    (folder / "a-file").write_text("")
    args = _args(folder, "z")
    args[args.index(flag) + 1] = str(folder / "a-file" / "below")
    capfd.readouterr()
    assert train_stage.main(args) == 2
    err = capfd.readouterr().err
    assert err.startswith(f"error: {folder / 'a-file' / 'below'}") and "a-file is a file, not a folder" in err
    assert err.count("\n") == 1
    assert not list(folder.rglob("model-*.safetensors"))  # nothing trained


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EDQUOT, "Disk quota exceeded"),
        RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"),  # safetensors
    ],
)
def test_a_full_disk_is_one_line_and_leaves_no_half_written_file(tmp_path, idx_dir, capfd, monkeypatch, error):
    monkeypatch.setenv("KENNEN_EXECUTOR", "serial")
    folder = _zoo(tmp_path, idx_dir, 2)

    def half_then_full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise error

    monkeypatch.setattr(store, "save_file", half_then_full)
    capfd.readouterr()
    assert train_stage.main(_args(folder, "z")) == 2
    lines = [line for line in capfd.readouterr().err.splitlines() if " INFO " not in line]  # all but the log
    assert lines == [
        "error: no space left on the disk (or quota exceeded): free some and rerun; finished outputs are kept, "
        "nothing is half-written"
    ]
    written = [p for p in folder.rglob("*") if p.is_file() and p.parent.name in ("z", "shard-0")]
    assert written == []  # no shard, no partial, no temporary file

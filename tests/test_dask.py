"""Zoo training on a real Dask cluster: a `dask scheduler` and two `dask worker` processes on 127.0.0.1."""

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
from stages import sample_zoo as sample_stage
from stages import train_zoo as train_stage
from tests.conftest import REPO, free_port, tiny_params

distributed = pytest.importorskip("distributed", reason="the dask extra is part of `make test`")
pytestmark = pytest.mark.slow


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


@pytest.fixture
def cluster():
    """A scheduler and two single-threaded workers; yields (address, worker processes)."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = os.environ | {"PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [_bin("dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    workers = [
        subprocess.Popen(
            [
                _bin("dask"),
                "worker",
                address,
                "--nthreads",
                "1",
                "--no-dashboard",
                "--no-nanny",
                "--name",
                f"w{i}",
                "--host",
                "127.0.0.1",
            ],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(2)
    ]
    procs += workers
    try:
        with distributed.Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address, workers
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture
def shard_inputs(tmp_path, idx_dir):
    """Tiny params (slow enough tasks to kill a worker mid-run), sample table and MNIST file."""
    params = tiny_params(idx_dir, train_zoo={"epochs": 40})
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    assert sample_stage.main(["--params", str(params_path), "--out-dir", str(tmp_path / "sample")]) == 0
    mnist_data.save(mnist_data.read_idx_dir(idx_dir), tmp_path / "mnist.npz")
    return tmp_path


def _train(folder: Path, out: str, monkeypatch, **env) -> int:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return train_stage.main(
        [
            "--params",
            str(folder / "params.yaml"),
            "--shard",
            "0",
            "--sample",
            str(folder / "sample"),
            "--data",
            str(folder / "mnist.npz"),
            "--out-dir",
            str(folder / out),
            "--partial-dir",
            str(folder / f"{out}-partial"),
            "--timings",
            str(folder / f"{out}-timings.json"),
            "--checkpoint-dir",
            str(folder / f"{out}-checkpoints"),
        ]
    )


def _same_shard(a: Path, b: Path) -> None:
    assert (a / "shard-0.safetensors").read_bytes() == (b / "shard-0.safetensors").read_bytes()
    assert (a / "shard-0.csv").read_bytes() == (b / "shard-0.csv").read_bytes()  # no wall-clock column
    checkpoints = [(p.parent / f"{p.name}-checkpoints" / "shard-0.safetensors").read_bytes() for p in (a, b)]
    assert checkpoints[0] == checkpoints[1]


def test_dask_gives_the_process_pool_results(cluster, shard_inputs, monkeypatch):
    address, _ = cluster
    assert _train(shard_inputs, "local", monkeypatch, KENNEN_EXECUTOR="process", KENNEN_WORKERS="2") == 0
    assert _train(shard_inputs, "dask", monkeypatch, KENNEN_EXECUTOR="dask", KENNEN_DASK_SCHEDULER=address) == 0
    _same_shard(shard_inputs / "local", shard_inputs / "dask")


def test_killing_a_worker_mid_run_loses_nothing(cluster, shard_inputs, monkeypatch):
    address, workers = cluster
    assert _train(shard_inputs, "local", monkeypatch, KENNEN_EXECUTOR="serial") == 0
    env = os.environ | {"KENNEN_EXECUTOR": "dask", "KENNEN_DASK_SCHEDULER": address, "PYTHONPATH": str(REPO)}
    stage = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stages.train_zoo",
            "--params",
            str(shard_inputs / "params.yaml"),
            "--shard",
            "0",
            "--sample",
            str(shard_inputs / "sample"),
            "--data",
            str(shard_inputs / "mnist.npz"),
            "--out-dir",
            str(shard_inputs / "dask"),
            "--partial-dir",
            str(shard_inputs / "dask-partial"),
            "--timings",
            str(shard_inputs / "dask-timings.json"),
            "--checkpoint-dir",
            str(shard_inputs / "dask-checkpoints"),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    with distributed.Client(address, timeout="30s") as client:
        deadline = time.monotonic() + 120
        victim = None
        while victim is None:
            assert stage.poll() is None and time.monotonic() < deadline, "no task ever started"
            busy = {w: tasks for w, tasks in client.processing().items() if tasks}
            victim = next((w for w in busy if client.scheduler_info()["workers"][w]["name"] == "w0"), None)
            time.sleep(0.05)
    workers[0].send_signal(signal.SIGKILL)  # dies holding a task: the scheduler reruns it on w1
    out, _ = stage.communicate(timeout=300)
    assert stage.returncode == 0, out
    _same_shard(shard_inputs / "local", shard_inputs / "dask")


def test_unreachable_scheduler_is_a_one_line_error(shard_inputs, monkeypatch, capsys):
    address = f"tcp://127.0.0.1:{free_port()}"
    code = _train(
        shard_inputs,
        "dask",
        monkeypatch,
        KENNEN_EXECUTOR="dask",
        KENNEN_DASK_SCHEDULER=address,
        KENNEN_DASK_TIMEOUT="2",
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith(f"error: KENNEN_DASK_SCHEDULER: cannot reach the Dask scheduler at {address}")
    assert not (shard_inputs / "dask").exists()

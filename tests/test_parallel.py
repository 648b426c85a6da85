"""The executor layer (kennen/parallel.py): same results everywhere, fail fast, workers tied to their driver."""

import contextlib
import functools
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from kennen import data as mnist_data
from kennen.errors import KennenError
from kennen.parallel import executor_settings, run_tasks
from kennen.zoo.net import NetConfig
from kennen.zoo.train import TrainSpec, train_task
from tests.conftest import REPO, ctrl_c_default

psutil = pytest.importorskip("psutil")


def _specs():
    nets = [
        NetConfig("relu", True, True, 5, 2, 2),
        NetConfig("elu", False, True, 3, 3, 2),
        NetConfig("prelu", True, True, 5, 2, 3),
    ]
    return [
        TrainSpec(i, n, alg, 64, "half_0", torch_seed=100 + i, epochs=1)
        for i, (n, alg) in enumerate(zip(nets, ("sgd", "adam", "rmsprop"), strict=True))
    ]


@pytest.mark.slow
def test_process_pool_gives_the_serial_results(idx_dir, tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    mnist_data.save(mnist_data.read_idx_dir(idx_dir), path)
    task = functools.partial(train_task, data_path=str(path), pool_size=400, perm_seed=20, test_batch=256)
    results = {}
    for backend, workers in (("serial", "1"), ("process", "2")):
        monkeypatch.setenv("KENNEN_EXECUTOR", backend)
        monkeypatch.setenv("KENNEN_WORKERS", workers)
        results[backend] = {spec.model_id: r for spec, r in run_tasks(task, _specs(), 3)}
    for model_id, serial in results["serial"].items():
        pooled = results["process"][model_id]
        assert pooled.test_acc == serial.test_acc
        for k in serial.state:
            np.testing.assert_array_equal(pooled.state[k], serial.state[k])


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KENNEN_EXECUTOR": "ray"}, "KENNEN_EXECUTOR: expected one of process, serial, dask, got 'ray'"),
        ({"KENNEN_WORKERS": "0"}, "KENNEN_WORKERS: expected a positive integer, got '0'"),
        ({"KENNEN_WORKERS": "two"}, "KENNEN_WORKERS: expected a positive integer, got 'two'"),
    ],
)
def test_bad_executor_settings(monkeypatch, env, message):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(KennenError, match=message):
        executor_settings()


def test_dask_without_scheduler_address(monkeypatch):
    monkeypatch.setenv("KENNEN_EXECUTOR", "dask")
    monkeypatch.delenv("KENNEN_DASK_SCHEDULER", raising=False)
    with pytest.raises(KennenError, match="KENNEN_DASK_SCHEDULER: set it"):
        list(run_tasks(abs, [1], 1))


def test_serial_executor_lets_ctrl_c_through():
    from kennen.parallel import SerialExecutor

    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        SerialExecutor().submit(interrupted)
    assert isinstance(SerialExecutor().submit(lambda: 1 / 0).exception(), ZeroDivisionError)


def _touch_then_sleep(task: tuple[str, int]) -> int:
    """A test task (module level: picklable): mark that it started, fail if it is task 0, else take a while."""
    import time
    from pathlib import Path

    folder, i = task
    (Path(folder) / f"started-{i}").touch()
    if i == 0:
        raise ValueError("task 0 failed: corrupt input")
    time.sleep(0.5)
    return i


@pytest.mark.parametrize("backend", ["serial", "process"])
@pytest.mark.slow
def test_the_first_failure_stops_the_rest_and_is_the_error_reported(tmp_path, monkeypatch, backend):
    monkeypatch.setenv("KENNEN_EXECUTOR", backend)
    monkeypatch.setenv("KENNEN_WORKERS", "2")
    tasks = [(str(tmp_path), i) for i in range(12)]
    with pytest.raises(ValueError, match="task 0 failed"):
        list(run_tasks(_touch_then_sleep, tasks, len(tasks)))
    started = len(list(tmp_path.glob("started-*")))
    if backend == "serial":
        assert started == 1  # nothing after the failed task ran
    else:
        assert started <= 2  # one task in flight per worker: at most the other worker's ran alongside


def _announce_then_block(task: tuple[str, int]) -> int:
    """A test task: write ``pid-<task>`` holding this worker's pid, then block until killed."""
    folder, i = task
    tmp = Path(folder) / f".pid-{i}"
    tmp.write_text(str(os.getpid()))
    tmp.rename(Path(folder) / f"pid-{i}")  # whole or absent: the test never reads a half-written pid
    time.sleep(600)
    return i


def _wait_for(folder: Path, n: int, proc: subprocess.Popen | None = None, timeout: float = 120) -> list[int]:
    """The pids in the first ``n`` ``pid-*`` files of ``folder``, once they exist (generous: CPUs may be busy)."""
    deadline = time.monotonic() + timeout
    while len(files := sorted(folder.glob("pid-*"))) < n:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the driver ended early: {proc.stderr.read() if proc.stderr else ''}")
        assert time.monotonic() < deadline, f"fewer than {n} tasks started in {timeout} s"
        time.sleep(0.1)
    return [int(f.read_text()) for f in files[:n]]


_DRIVER = textwrap.dedent("""
    import sys
    from kennen.parallel import run_tasks
    from stages._common import parser, run
    from tests.test_parallel import _announce_then_block

    def body(args):
        tasks = [(sys.argv[1], i) for i in range(4)]
        list(run_tasks(_announce_then_block, tasks, 4, name=lambda t: f"task {t[1]}"))

    raise SystemExit(run(body, parser("test driver"), []))
""")


def _start_driver(folder: Path) -> subprocess.Popen:
    """A stage-like driver of 2 pool workers running blocking tasks, in its own process group."""
    env = os.environ | {
        "KENNEN_EXECUTOR": "process",
        "KENNEN_WORKERS": "2",
        "KENNEN_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(REPO),
    }
    return subprocess.Popen(
        [sys.executable, "-c", _DRIVER, str(folder)],
        cwd=REPO,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=ctrl_c_default,
    )


def _kill_all(proc: subprocess.Popen, pids: list[int]) -> None:
    """Clean-up whatever the test's outcome: the driver's process group and the workers it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()
    proc.wait()


@pytest.mark.slow
def test_workers_exit_when_their_driver_is_killed(tmp_path):
    proc, pids = _start_driver(tmp_path), []
    try:
        pids = _wait_for(tmp_path, 2, proc)
        workers = [psutil.Process(pid) for pid in pids]
        proc.send_signal(signal.SIGKILL)  # no clean-up in the driver
        proc.wait()
        _, alive = psutil.wait_procs(workers, timeout=30)
        assert alive == []
    finally:
        _kill_all(proc, pids)


@pytest.mark.slow
def test_ctrl_c_reaches_the_driver_only_which_stops_its_workers_and_exits_130(tmp_path):
    proc, pids = _start_driver(tmp_path), []
    try:
        pids = _wait_for(tmp_path, 2, proc)
        workers = [psutil.Process(pid) for pid in pids]
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "interrupted: finished outputs are kept" in lines[0], err
        _, alive = psutil.wait_procs(workers, timeout=30)
        assert alive == []
    finally:
        _kill_all(proc, pids)


@pytest.mark.slow
def test_a_killed_worker_is_one_error_line_naming_its_task(tmp_path):
    proc, pids = _start_driver(tmp_path), []
    try:
        pids = _wait_for(tmp_path, 2, proc)
        os.kill(pids[0], signal.SIGKILL)  # as the out-of-memory killer would
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2
        expected = (
            "error: a worker process died (killed by a signal, or out of memory) while running one of task 0, "
            "task 1; finished work is kept, rerun to resume"
        )
        lines = err.strip().replace("task 1, task 0", "task 0, task 1").splitlines()  # the two in flight
        assert lines == [expected], err
    finally:
        _kill_all(proc, pids)

import functools

import numpy as np
import pytest

from kennen import data as mnist_data
from kennen.errors import KennenError
from kennen.parallel import executor_settings, run_tasks
from kennen.zoo.net import NetConfig
from kennen.zoo.train import TrainSpec, train_task


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
        assert started < 12  # the tasks not yet started were cancelled (a pool lets its running ones end)

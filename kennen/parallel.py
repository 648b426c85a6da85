"""Executor layer: where the work inside a stage runs.

DVC runs stages one at a time, so parallelism lives inside a stage
(``shared/dvc-notes.md`` §4). The stage process is the driver and the only
writer of outputs; workers only compute and return results.

The backend is chosen by environment variables that DVC does not track, so
changing them never re-runs a stage, and never changes a result (every task
is seeded from the base seed and its model id, and runs single-threaded):

- ``KENNEN_EXECUTOR``: ``process`` (default, a local process pool),
  ``serial`` (in the stage process; for debugging), or ``dask``.
- ``KENNEN_WORKERS``: worker processes for ``process`` (default: CPU count).
- ``KENNEN_DASK_SCHEDULER``: scheduler address for ``dask`` (``tcp://host:8786``).
- ``KENNEN_DASK_TIMEOUT``: seconds to wait for the scheduler (default 20).

With Dask the stage process stays the only writer: workers return weights and
metrics, the driver writes the shard. A worker that dies mid-task has its tasks
rerun elsewhere by the scheduler; since every task is deterministic, the shard
is the same bytes.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kennen.errors import KennenError

log = logging.getLogger(__name__)

EXECUTORS = ("process", "serial", "dask")


def _single_thread() -> None:
    """Worker initialiser: one torch thread per worker, so 2 workers fill 2 cores."""
    import torch

    torch.set_num_threads(1)


class SerialExecutor(cf.Executor):
    """Runs each task at submission, in the calling process."""

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> cf.Future:
        future: cf.Future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as e:  # handed to the caller through the future; Ctrl-C is not caught
            future.set_exception(e)
        return future


def executor_settings() -> tuple[str, int]:
    """(backend, workers) from the environment, validated."""
    backend = os.environ.get("KENNEN_EXECUTOR", "process")
    if backend not in EXECUTORS:
        raise KennenError(f"KENNEN_EXECUTOR: expected one of {', '.join(EXECUTORS)}, got {backend!r}")
    workers_text = os.environ.get("KENNEN_WORKERS", str(os.cpu_count() or 1))
    try:
        workers = int(workers_text)
        assert workers >= 1
    except (ValueError, AssertionError):
        raise KennenError(f"KENNEN_WORKERS: expected a positive integer, got {workers_text!r}") from None
    return backend, workers


@contextlib.contextmanager
def get_executor(n_tasks: int, max_workers: int | None = None) -> Iterator[cf.Executor]:
    """The executor named by the environment, sized for ``n_tasks`` tasks and at most ``max_workers`` local workers."""
    backend, workers = executor_settings()
    workers = min(workers, max_workers or workers)
    if backend == "serial" or (backend == "process" and min(workers, n_tasks) <= 1):
        log.info("executor: serial")
        yield SerialExecutor()
    elif backend == "process":
        workers = min(workers, n_tasks)
        log.info("executor: process pool, %d workers", workers)
        ctx = multiprocessing.get_context("spawn")  # fork is unsafe with torch's thread pools
        with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_single_thread) as ex:
            yield ex
    else:
        with _dask_executor() as ex:
            yield ex


@contextlib.contextmanager
def _dask_executor() -> Iterator[cf.Executor]:
    address = os.environ.get("KENNEN_DASK_SCHEDULER", "")
    if not address:
        raise KennenError(
            "KENNEN_DASK_SCHEDULER: set it to the scheduler address (tcp://host:8786) to use KENNEN_EXECUTOR=dask"
        )
    try:
        from distributed import Client
    except ImportError:
        raise KennenError("KENNEN_EXECUTOR=dask needs the dask extra: pip install -e '.[dask]'") from None
    timeout = os.environ.get("KENNEN_DASK_TIMEOUT", "20")
    try:
        seconds = float(timeout)
    except ValueError:
        raise KennenError(f"KENNEN_DASK_TIMEOUT: expected seconds, got {timeout!r}") from None
    try:
        client = Client(address, timeout=f"{seconds}s")
    except (OSError, TimeoutError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise KennenError(f"KENNEN_DASK_SCHEDULER: cannot reach the Dask scheduler at {address} ({reason})") from None
    log.info("executor: dask scheduler %s, %d workers", address, len(client.scheduler_info().get("workers", {})))
    try:
        client.run(_single_thread)
        yield client.get_executor()
    finally:
        client.close()


def run_tasks(
    fn: Callable, tasks: Iterable[Any], n_tasks: int, max_workers: int | None = None
) -> Iterator[tuple[Any, Any]]:
    """Run ``fn(task)`` for every task; yield (task, result) in completion order.

    ``max_workers`` caps the local process pool (e.g. 1 when the tasks share one GPU).
    Fail fast: the first task to fail raises its own exception here, and every task not yet
    started is cancelled (the serial executor runs none after it; a pool lets the tasks already
    running end, at most one per worker), so a bad input costs one task, not the whole stage.
    """
    with get_executor(n_tasks, max_workers) as ex:
        futures: dict[cf.Future, Any] = {}
        for t in tasks:
            future = ex.submit(fn, t)
            futures[future] = t
            if future.done() and future.exception() is not None:
                break  # the serial executor ran it at submission: submit nothing more
        try:
            for future in cf.as_completed(futures):
                yield futures[future], future.result()
        finally:  # a failure, or a caller that stopped early
            for future in futures:
                future.cancel()

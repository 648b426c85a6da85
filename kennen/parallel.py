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

Local workers are tied to their driver: each ignores Ctrl-C (the driver alone
handles it, stops the workers and exits 130), and each exits within a second
once its driver is gone, even after a SIGKILL that leaves the driver no time to
clean up. A worker that dies mid-task (a signal, the out-of-memory killer) is a
:class:`WorkerDied` error naming the task, not a broken-pool traceback.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kennen.errors import KennenError

log = logging.getLogger(__name__)

EXECUTORS = ("process", "serial", "dask")
ORPHAN_POLL_S = 0.5  # how often a local worker checks that its driver is alive


class WorkerDied(KennenError):
    """A worker process ended without returning its task's result (killed by a signal, or out of memory)."""


def _single_thread() -> None:
    """Dask worker set-up: one torch thread per worker, so 2 workers fill 2 cores."""
    import torch

    torch.set_num_threads(1)


def _local_worker() -> None:
    """Local worker initialiser: one torch thread, Ctrl-C left to the driver, exit when the driver is gone."""
    _single_thread()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.pid,), name="kennen-driver-watch", daemon=True).start()


def _exit_with(driver_pid: int) -> None:
    """Poll the parent pid: a dead driver's children are re-parented, and the pool's pipes never close while
    sibling workers hold them, so without this a SIGKILLed driver leaves its workers waiting forever."""
    while os.getppid() == driver_pid:
        time.sleep(ORPHAN_POLL_S)
    os._exit(1)


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
    with _executor(n_tasks, max_workers) as (ex, _):
        yield ex


@contextlib.contextmanager
def _executor(n_tasks: int, max_workers: int | None) -> Iterator[tuple[cf.Executor, int]]:
    """(executor, tasks to keep in flight): one per local worker; Dask schedules all of them itself."""
    backend, workers = executor_settings()
    workers = min(workers, max_workers or workers)
    if backend == "serial" or (backend == "process" and min(workers, n_tasks) <= 1):
        log.info("executor: serial")
        yield SerialExecutor(), 1
    elif backend == "process":
        workers = min(workers, n_tasks)
        log.info("executor: process pool, %d workers", workers)
        ctx = multiprocessing.get_context("spawn")  # fork is unsafe with torch's thread pools
        ex = cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_local_worker)
        try:
            yield ex, workers
        except KeyboardInterrupt:
            _stop_workers(ex)  # Ctrl-C: do not wait for the tasks in flight
            raise
        finally:
            ex.shutdown(wait=True, cancel_futures=True)
    else:
        with _dask_executor() as ex:
            yield ex, max(n_tasks, 1)


def _stop_workers(ex: cf.ProcessPoolExecutor) -> None:
    """Kill the pool's workers now (Python 3.14 has a method for it; before, the pool's own table)."""
    terminate = getattr(ex, "terminate_workers", None)
    if terminate is not None:
        terminate()
        return
    for process in list(getattr(ex, "_processes", {}).values()):
        process.kill()


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
    fn: Callable,
    tasks: Iterable[Any],
    n_tasks: int,
    max_workers: int | None = None,
    name: Callable[[Any], str] | None = None,
) -> Iterator[tuple[Any, Any]]:
    """Run ``fn(task)`` for every task; yield (task, result) in completion order.

    Args:
        fn: the task function (module level, so that a worker process can unpickle it).
        tasks: the tasks, submitted in this order.
        n_tasks: how many there are (sizes the pool).
        max_workers: cap on local worker processes (e.g. 1 when the tasks share one GPU).
        name: how a task is named in errors (default: its repr, shortened).

    Fail fast: at most one task per worker is in flight, and the next is submitted only when
    one ends, so the first task to fail raises its own exception here with at most one task
    per worker started after it (those already running end; a train_zoo task keeps its models).
    A worker that dies raises :class:`WorkerDied` naming the tasks it may have been running.
    """
    name = name or _short_repr
    with _executor(n_tasks, max_workers) as (ex, slots):
        pending = iter(tasks)
        running: dict[cf.Future, Any] = {}

        def submit_next() -> bool:
            for task in pending:
                running[ex.submit(fn, task)] = task
                _watch_new_workers(ex)
                return True
            return False

        try:
            while len(running) < slots and submit_next():
                pass
            while running:
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for future in [f for f in running if f in done]:  # submission order within one wake-up
                    task = running.pop(future)
                    try:
                        result = future.result()
                    except cf.BrokenExecutor:
                        in_flight = [task, *running.values()]
                        which = name(task) if len(in_flight) == 1 else "one of " + ", ".join(map(name, in_flight))
                        raise WorkerDied(
                            f"a worker process died (killed by a signal, or out of memory) while running {which}; "
                            "finished work is kept, rerun to resume"
                        ) from None
                    submit_next()  # before the caller handles the result: keep the worker busy
                    yield task, result
        finally:  # a failure, or a caller that stopped early: start nothing more
            for future in running:
                future.cancel()


def _watch_new_workers(ex: cf.Executor) -> None:
    """Make a process pool watch the worker that ``submit`` may just have started.

    CPython's ``ProcessPoolExecutor.submit`` (3.11 to 3.13) wakes the pool's manager thread *before* it
    starts a new worker, so the manager may already be waiting on the old set of workers: a worker started
    that way and then killed goes unnoticed, and the pool waits forever for its task. A second wake-up, after
    ``submit`` returned, makes the manager wait on every worker.
    """
    wakeup = getattr(ex, "_executor_manager_thread_wakeup", None)
    if wakeup is not None:
        wakeup.wakeup()


def _short_repr(task: Any, limit: int = 80) -> str:
    text = repr(task)
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""Training one shard of the zoo, resumable model by model.

``train_shard`` is the body of the ``train_zoo@<shard>`` stage. The unit of work
is a task (one model with the ``loop`` trainer, one fused group with ``fused``);
each task keeps its finished models in the shard's partial folder
(``store.save_partial``) from inside the worker, and the driver keeps them
again as results arrive (a worker on another machine may not share the
folder). A rerun after a kill loads the partials whose fingerprint matches and
runs only the tasks with a model still missing, so a kill loses at most the
tasks in flight. Fused groups are formed from the whole shard, as in an
uninterrupted run, so a resumed shard has the same bytes.

A partial is reused only when its fingerprint matches: the model's task, the
training params, the MNIST file, torch's version, the source of every module
that shapes the weights (:data:`WEIGHT_MODULES`) and, with the fused trainer,
the members of its group (their rounding shapes each other's weights). An edit
to the trainer between a kill and the rerun retrains the stale models instead
of mixing two versions of the code in one shard.

The partials of a shard that is not full (fewer rows than
``sample_zoo.shard_size``) are kept after it is written: the sample is a prefix
of one sequence, so only the last shard can grow, and when ``n_models`` grows
it trains only its new models (with ``fused``, also those whose group changed).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kennen import data as mnist_data
from kennen.errors import KennenError
from kennen.io import check_writable, write_json
from kennen.log import progress
from kennen.parallel import run_tasks
from kennen.zoo.fused import fusion_groups, train_group_task
from kennen.zoo.store import fingerprint, load_partials, save_partial, shard_name, write_checkpoints, write_shard
from kennen.zoo.train import TrainParams, TrainResult, TrainSpec, check_device, relative_cost, train_task

log = logging.getLogger("kennen.train_zoo")

# The modules whose source shapes a trained model's weights (training loop, network, fused kernels, data
# loading and normalisation, seed streams, the split table): a partial made by other source is retrained.
WEIGHT_MODULES = (
    "kennen/attributes.py",
    "kennen/data.py",
    "kennen/seeds.py",
    "kennen/zoo/fused.py",
    "kennen/zoo/net.py",
    "kennen/zoo/stacked.py",
    "kennen/zoo/train.py",
)
_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the kennen package


def code_digest(root: Path = _ROOT) -> str:
    """A digest of the bytes of :data:`WEIGHT_MODULES` under ``root``."""
    h = hashlib.sha256()
    for name in WEIGHT_MODULES:
        h.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    return h.hexdigest()


def _train_one(specs: Sequence[TrainSpec], **data: Any) -> list[TrainResult]:
    """A one-model task, shaped like a fused group's (a list in, a list out)."""
    return [train_task(specs[0], **data)]


def _keeping(job: Callable[..., list[TrainResult]], specs: Sequence[TrainSpec], partial: str,
             digests: dict[int, str]) -> list[TrainResult]:  # fmt: skip
    """Run ``job`` on one task and keep each of its models in ``partial`` before returning."""
    results = job(specs)
    for r in results:
        save_partial(Path(partial), r, digests[r.model_id])
    return results


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def train_shard(
    shard: int, rows: list[dict[str, Any]], tp: TrainParams, data: Path, out_dir: Path, partial_root: Path,
    timings: Path, shard_size: int | None = None, checkpoint_dir: Path | None = None, seed: int = 0,
) -> list[TrainResult]:  # fmt: skip
    """Train the models of ``shard`` (rows of the sample table), write the shard and its timing metrics.

    Args:
        shard: the shard number.
        rows: the sample table (all of it, or the shard's own rows).
        tp: the ``train_zoo`` params.
        data: the MNIST ``.npz``.
        out_dir: folder of ``shard-N.{safetensors,csv}``.
        partial_root: side folder of finished models; ``shard-N/`` inside it is removed once a full shard is written.
        timings: metrics JSON of wall-clock and per-model seconds (out of the data tables on purpose).
        shard_size: ``sample_zoo.shard_size``; a shard with fewer models keeps its partials, to grow without
            retraining them. None: every shard counts as full.
        checkpoint_dir: folder of ``shard-N.safetensors``, the models' outputs on the first
            ``tp.checkpoint_queries`` query images of ``seed`` at each of ``tp.checkpoints`` (written, empty
            when there are none); None: none recorded.
        seed: the base seed, which draws the query images (as in the ``queries`` stage).

    Returns:
        The shard's results in model-id order.
    """
    mine = [r for r in rows if r["shard"] == shard]
    if not mine:
        shards = sorted({r["shard"] for r in rows})
        raise KennenError(f"train_zoo.shards: shard {shard} holds no models (the sample has shards {shards})")
    _check_paths(shard, data, out_dir, partial_root, timings, checkpoint_dir)
    check_device(tp.device)
    start = time.perf_counter()
    checkpoints = tp.checkpoints if checkpoint_dir is not None else ()
    specs = [TrainSpec.of(r, tp.epochs, checkpoints) for r in mine]
    probes = (seed, tp.checkpoint_queries) if checkpoints else None
    settings = {
        "pool_size": tp.pool_size,
        "perm_seed": tp.perm_seed,
        "test_batch": tp.test_batch,
        "device": tp.device,
        "trainer": tp.trainer,
        "data": _file_digest(data),
        "code": code_digest(),
        "probes": probes,
    }
    if tp.trainer == "fused":
        groups = fusion_groups(specs, tp.fuse_max)  # from the whole shard: the grouping of an uninterrupted run
        job = functools.partial(train_group_task, **_data_args(tp, data))  # no checkpoints (TrainParams.check)
        digests = {s.model_id: fingerprint(s, group=[m.model_id for m in g], **settings) for g in groups for s in g}
    else:
        groups = [(s,) for s in specs]
        job = functools.partial(_train_one, **_data_args(tp, data), probes=probes)
        digests = {s.model_id: fingerprint(s, **settings) for s in specs}
    partial = partial_root / shard_name(shard)
    done = load_partials(partial, digests)
    todo = [g for g in groups if any(s.model_id not in done for s in g)]
    todo.sort(key=lambda g: sum(map(relative_cost, g)), reverse=True)  # slowest first
    if done:
        log.info(
            "shard %d: resuming, %d of %d models already trained", shard, len(specs) - sum(map(len, todo)), len(specs)
        )
    task = functools.partial(_keeping, job, partial=str(partial), digests=digests)
    max_workers = 1 if tp.device == "cuda" else None
    tasks = run_tasks(task, todo, len(todo), max_workers, name=_models)
    for _, results in progress(tasks, len(todo), f"shard {shard}", log):
        for r in results:
            save_partial(partial, r, digests[r.model_id])  # the driver's copy (a remote worker's folder may differ)
            done[r.model_id] = r
    results = sorted(done.values(), key=lambda r: r.model_id)
    write_shard(out_dir, shard, results)
    if checkpoint_dir is not None:
        m = mnist_data.load(data) if checkpoints else None
        index = mnist_data.query_indices(len(m.test_images), tp.checkpoint_queries, seed) if m else np.zeros(0, int)
        write_checkpoints(checkpoint_dir, shard, results, checkpoints, index)
    write_json(timings, {
        "shard": shard,
        "models": len(results),
        "trained_now": sum(map(len, todo)),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "core_seconds": round(sum(r.seconds for r in results), 1),  # the resumed models' too
    })  # fmt: skip
    if shard_size is None or len(specs) >= shard_size:
        shutil.rmtree(partial, ignore_errors=True)
    else:
        kept = "shard %d: %d of %d models, partials kept in %s so that it can grow"
        log.info(kept, shard, len(specs), shard_size, partial)
    log.info("wrote shard %d: %d models, mean test accuracy %.2f%%", shard, len(results),
             sum(r.test_acc for r in results) / len(results))  # fmt: skip
    return results


def _models(group: Sequence[TrainSpec]) -> str:
    ids = [s.model_id for s in group]
    return f"model {ids[0]}" if len(ids) == 1 else f"models {', '.join(map(str, ids))}"


def _check_paths(shard: int, data: Path, out_dir: Path, partial_root: Path, timings: Path,
                 checkpoint_dir: Path | None) -> None:  # fmt: skip
    """One-line errors for the input and every output path, before any model trains."""
    if not data.is_file():
        what = "is a folder" if data.is_dir() else "file not found"
        raise KennenError(f"{data}: {what}; give the MNIST .npz written by the data stage")
    for suffix in ("safetensors", "csv"):
        check_writable(out_dir / f"{shard_name(shard)}.{suffix}")
    check_writable(partial_root / shard_name(shard), folder=True)
    check_writable(timings)
    if checkpoint_dir is not None:
        check_writable(checkpoint_dir / f"{shard_name(shard)}.safetensors")


def _data_args(tp: TrainParams, data: Path) -> dict[str, Any]:
    return {"data_path": str(data.resolve()), "pool_size": tp.pool_size, "perm_seed": tp.perm_seed,
            "test_batch": tp.test_batch, "device": tp.device}  # fmt: skip

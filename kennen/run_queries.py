"""The ``queries`` stage: every kept model's and ensemble's outputs on the query images (``kennen.queries``)."""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from kennen import data as mnist_data
from kennen.config import base_seed, section
from kennen.errors import KennenError
from kennen.io import write_csv
from kennen.log import progress
from kennen.parallel import run_tasks
from kennen.queries import (
    QueryParams,
    box_table,
    checkpoint_boxes,
    draw_queries,
    ensemble_outputs,
    save_outputs,
    shard_task,
)  # fmt: skip
from kennen.schemas import BOX_COLUMNS, ENSEMBLES, MODELS, check_shards, check_zoo
from kennen.zoo.net import NetConfig
from kennen.zoo.prune import read_kept
from kennen.zoo.store import read_table, shard_name

log = logging.getLogger("kennen.queries")
CHUNK = 20  # models per task, so that both workers stay busy to the end


def shard_tasks(
    models: list[dict[str, Any]], kept: list[int], shards: Path
) -> list[tuple[str, list[tuple[int, NetConfig]]]]:
    """(absolute shard path, at most ``CHUNK`` of its kept models) per task, shards in order."""
    by_shard: dict[int, list[tuple[int, NetConfig]]] = {}
    by_id = {m["model_id"]: m for m in models}
    for i in kept:
        by_shard.setdefault(by_id[i]["shard"], []).append((i, NetConfig.of(by_id[i])))
    return [
        (str((shards / f"{shard_name(s)}.safetensors").resolve()), ms[i : i + CHUNK])
        for s, ms in sorted(by_shard.items())
        for i in range(0, len(ms), CHUNK)
    ]


def run(params: dict[str, Any], data: Path, models_csv: Path, kept_json: Path, ensembles_csv: Path, shards: Path,
        out_dir: Path, checkpoint_dir: Path | None = None) -> None:  # fmt: skip
    """Draw the queries, answer them with every black box, write ``outputs.npz`` and ``boxes.csv`` to ``out_dir``.

    Args:
        params: the params tree (section ``queries`` and the seed).
        data: ``mnist.npz``; models_csv, kept_json, ensembles_csv, shards: the zoo.
        out_dir: the stage's output folder.
        checkpoint_dir: the ``train_zoo`` stage's checkpoint outputs; their boxes go to ``checkpoints.npz``.
    """
    qp = section(QueryParams, params, "queries")
    start = time.perf_counter()
    mnist = mnist_data.load(data)
    query_index = draw_queries(len(mnist.test_images), qp.n_max, base_seed(params))
    images = mnist_data.normalise(mnist.test_images[query_index])
    models, kept = read_table(models_csv, MODELS), read_kept(kept_json)
    ensembles = read_table(ensembles_csv, ENSEMBLES)
    check_zoo(models, kept, ensembles, models_csv, kept_json, ensembles_csv)
    if not kept:
        raise KennenError(f"prune.min_acc: no model passed pruning ({kept_json}), so there is no black box to query")
    check_shards(shards, models, kept, models_csv)
    tasks = shard_tasks(models, kept, shards)
    single: dict[int, np.ndarray] = {}
    job = functools.partial(shard_task, images=images)
    for _, out in progress(run_tasks(job, tasks, len(tasks)), len(tasks), "query outputs", log):
        single.update(out)
    members = [[int(m) for m in e["members"].split(";")] for e in ensembles]
    outputs = np.concatenate(
        [np.stack([single[i] for i in sorted(kept)]).astype(np.float32), ensemble_outputs(single, members, qp.n_max)]
    )
    save_outputs(out_dir / "outputs.npz", outputs, query_index)
    write_csv(out_dir / "boxes.csv", box_table(models, kept, ensembles), BOX_COLUMNS)
    if checkpoint_dir is not None:
        checkpoint_boxes(models, kept, checkpoint_dir, query_index).save(out_dir / "checkpoints.npz")
    log.info("outputs of %d single models and %d ensembles on %d queries in %.1f s", len(kept), len(ensembles),
             qp.n_max, time.perf_counter() - start)  # fmt: skip

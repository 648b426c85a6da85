"""Stage ``train_zoo@<shard>``: train one shard of the zoo -> ``shard-N.{safetensors,csv}``.

The models of the shard run as tasks on the executor chosen by
``KENNEN_EXECUTOR`` / ``KENNEN_WORKERS`` (see ``kennen.parallel``): one task per
model with ``train_zoo.trainer: loop``, one per fused group with ``fused``. On
``device: cuda`` the local executor runs one task at a time (one process owns
the GPU). This process is the only writer of the shard files.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from kennen.config import load_params, section
from kennen.errors import KennenError
from kennen.log import progress
from kennen.parallel import run_tasks
from kennen.zoo.fused import fusion_groups, train_group_task
from kennen.zoo.store import read_table, write_shard
from kennen.zoo.train import TrainParams, TrainSpec, check_device, relative_cost, train_task
from stages._common import parser, run

log = logging.getLogger("kennen.train_zoo")


def _train_one(specs: list[TrainSpec], **data) -> list:
    """A one-model task, shaped like a fused group's (a list in, a list out)."""
    return [train_task(specs[0], **data)]


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--sample", required=True, help="sample table from sample_zoo")
    p.add_argument("--data", required=True, help="MNIST .npz from the data stage")
    p.add_argument("--out-dir", required=True, help="folder of the shard files")

    def body(args) -> None:
        tp = section(TrainParams, load_params(args.params), "train_zoo")
        rows = read_table(Path(args.sample))
        mine = [r for r in rows if r["shard"] == args.shard]
        if not mine:
            n_shards = max(r["shard"] for r in rows) + 1
            raise KennenError(
                f"train_zoo.shards: shard {args.shard} holds no models (the sample has shards 0..{n_shards - 1})"
            )
        specs = [TrainSpec.of(r, tp.epochs) for r in mine]
        check_device(tp.device)
        data = {
            "data_path": str(Path(args.data).resolve()),
            "pool_size": tp.pool_size,
            "perm_seed": tp.perm_seed,
            "test_batch": tp.test_batch,
            "device": tp.device,
        }
        if tp.trainer == "fused":
            tasks = sorted(fusion_groups(specs, tp.fuse_max), key=lambda g: sum(map(relative_cost, g)), reverse=True)
            job = functools.partial(train_group_task, **data)
        else:
            tasks = sorted(([s] for s in specs), key=lambda g: relative_cost(g[0]), reverse=True)
            job = functools.partial(_train_one, **data)
        max_workers = 1 if tp.device == "cuda" else None
        done = progress(run_tasks(job, tasks, len(tasks), max_workers), len(tasks), f"shard {args.shard}", log)
        results = [r for _, group in done for r in group]
        write_shard(Path(args.out_dir), args.shard, results)
        log.info(
            "wrote shard %d: %d models, mean test accuracy %.2f%%",
            args.shard,
            len(results),
            sum(r.test_acc for r in results) / len(results),
        )

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())

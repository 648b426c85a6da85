"""Stage ``train_zoo@<shard>``: train one shard of the zoo -> ``shard-N.{safetensors,csv}``.

The models of the shard run as tasks on the executor chosen by
``KENNEN_EXECUTOR`` / ``KENNEN_WORKERS`` (see ``kennen.parallel``): one task per
model with ``train_zoo.trainer: loop``, one per fused group with ``fused``. On
``device: cuda`` the local executor runs one task at a time (one process owns
the GPU). This process is the only writer of the shard files.

A killed run loses at most the models in flight: every finished model is kept in
``--partial-dir`` (``store.save_partial``) and the rerun trains only the rest.
Wall-clock times go to ``--timings`` (a metrics file), never into the shard.
With ``train_zoo.checkpoints``, each model's log-probabilities on the first
``train_zoo.checkpoint_queries`` query images at those epochs go to
``--checkpoint-dir``/shard-N.safetensors (the ``queries`` stage makes them
checkpoint boxes; ours, not the paper's).
A shard with fewer models than ``sample_zoo.shard_size`` (the last one) keeps its
partials, so that raising ``n_models`` trains only its new models. Every path is
checked before the first model trains.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kennen.config import base_seed, load_params, section
from kennen.zoo.sample import SampleParams
from kennen.zoo.shard import train_shard
from kennen.zoo.store import read_sample
from kennen.zoo.train import TrainParams
from stages._common import parser, run

log = logging.getLogger("kennen.train_zoo")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--sample", required=True, help="sample table (or folder of per-shard tables) from sample_zoo")
    p.add_argument("--data", required=True, help="MNIST .npz from the data stage")
    p.add_argument("--out-dir", required=True, help="folder of the shard files")
    p.add_argument("--partial-dir", required=True, help="side folder of finished models (resume)")
    p.add_argument("--timings", required=True, help="metrics JSON of the shard's wall-clock times")
    p.add_argument("--checkpoint-dir", required=True, help="folder of the shards' checkpoint outputs")

    def body(args) -> None:
        params = load_params(args.params)
        tp = section(TrainParams, params, "train_zoo")
        shard_size = section(SampleParams, params, "sample_zoo").shard_size
        rows = read_sample(Path(args.sample))
        out_dir, partial_dir, timings = Path(args.out_dir), Path(args.partial_dir), Path(args.timings)
        ckpt_dir, seed = Path(args.checkpoint_dir), base_seed(params)
        train_shard(args.shard, rows, tp, Path(args.data), out_dir, partial_dir, timings, shard_size, ckpt_dir, seed)

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())

"""Stage ``imagenet_zoo``: the family zoo's outputs on the query pool (paper §7).

``imagenet_probe.mode: offline`` (default) trains the surrogate zoo (every torchvision
architecture of ``imagenet_probe.families`` x ``offline.seeds``, on small MNIST inputs, batches
from the first ``imagenet_zoo.train_pool`` training images) as parallel tasks on the executor;
``pretrained`` loads torchvision's ImageNet weights and answers natural images from
``pretrained.image_dir``. Writes ``outputs.npz`` (log-probabilities [models, pool, classes]),
``models.csv`` (family, name, seed, ...) and, offline, ``weights/`` with every architecture's
seed-0 surrogate (safetensors) for the attack stage. The logic is ``kennen.imagenet.run_zoo.run``.
"""

from __future__ import annotations

from pathlib import Path

from kennen.config import load_params
from kennen.imagenet import run_zoo
from stages._common import parser, run


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--data", required=True)
    p.add_argument("--out-dir", required=True)
    return run(lambda a: run_zoo.run(load_params(a.params), Path(a.data), Path(a.out_dir)), p, argv)


if __name__ == "__main__":
    raise SystemExit(main())

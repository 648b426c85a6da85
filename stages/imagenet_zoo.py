"""Stage ``imagenet_zoo``: the family zoo's outputs on the query pool (paper §7).

``imagenet_probe.mode: offline`` (default) trains the surrogate zoo (every torchvision
architecture of ``imagenet_probe.families`` x ``offline.seeds``, on small MNIST inputs)
as parallel tasks on the executor; ``pretrained`` loads torchvision's ImageNet weights and
answers natural images from ``pretrained.image_dir``. Writes ``outputs.npz``
(log-probabilities [models, pool, classes]), ``models.csv`` (family, name, seed, ...) and,
offline, ``weights/`` with every architecture's seed-0 surrogate (safetensors) for the
attack stage.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

from kennen import data as mnist_data
from kennen.config import base_seed, load_params, section
from kennen.imagenet.families import ProbeParams
from kennen.imagenet.offline import size, surrogate_tasks, train_and_answer
from kennen.imagenet.pretrained import answer, read_images
from kennen.io import save_npz, write_csv, write_json
from kennen.log import progress
from kennen.parallel import run_tasks
from stages._common import parser, run

log = logging.getLogger("kennen.imagenet_zoo")
TRAIN_POOL = 12_000  # surrogates draw their training batches from the first 12,000 MNIST training images


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--data", required=True)
    p.add_argument("--out-dir", required=True)

    def body(args) -> None:
        params = load_params(args.params)
        pp = section(ProbeParams, params, "imagenet_probe")
        seed = base_seed(params)
        rows, outputs = [], []
        out = Path(args.out_dir)
        weights = out / "weights"  # the seed-0 surrogates, for the attack stage
        if pp.mode == "offline":
            o = pp.offline
            mnist = mnist_data.load(Path(args.data))
            tasks = surrogate_tasks(pp.models(), o.seeds, seed)
            job = functools.partial(
                train_and_answer,
                train_images=mnist.train_images[:TRAIN_POOL],
                train_labels=mnist.train_labels[:TRAIN_POOL],
                queries=mnist.test_images[: o.pool],
                query_labels=mnist.test_labels[: o.pool].astype(np.int64),
                recipe=o.recipe,
                weights_dir=str(weights),
            )
            # The largest networks first (parameter count as the cost proxy), so that the workers finish together.
            sizes = {name: size(name) for _, name in pp.models()}
            order = sorted(tasks, key=lambda t: -sizes[t.name])
            done = dict(progress(run_tasks(job, order, len(order)), len(order), "surrogate models", log))
            for t in tasks:
                r = done[t]
                outputs.append(r["outputs"])
                rows.append({k: r[k] for k in ("family", "name", "seed", "query_acc", "final_loss")}
                            | {"seconds": round(r["seconds"], 1)})  # fmt: skip
        else:
            pre = pp.pretrained
            images = read_images(pre.image_dir, pre.pool)
            for family, name in pp.models():
                outputs.append(answer(name, images, pre.download, pre.classes))
                rows.append({"family": family, "name": name, "seed": 0, "query_acc": float("nan"),
                             "final_loss": float("nan"), "seconds": 0.0})  # fmt: skip
                log.info("%s: answered %d images", name, len(images))
        write_json(weights / "index.json", {"mode": pp.mode, "image_size": pp.offline.image_size,
                                            "models": [n for _, n in pp.models()] if pp.mode == "offline" else []})  # fmt: skip
        save_npz(out / "outputs.npz", outputs=np.stack(outputs))
        write_csv(out / "models.csv", rows, list(rows[0]))
        log.info("%d models (%s mode), %d query images", len(rows), pp.mode, outputs[0].shape[0])

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())

"""Stage ``imagenet_zoo``: the family zoo's outputs on the query pool (paper §7).

``imagenet_probe.mode: offline`` (default) trains the surrogate zoo (every torchvision
architecture of ``imagenet_probe.families`` x ``offline.seeds``, on small MNIST inputs)
as parallel tasks on the executor; ``pretrained`` loads torchvision's ImageNet weights and
answers natural images from ``pretrained.image_dir``. Writes ``outputs.npz``
(log-probabilities [models, pool, classes]) and ``models.csv`` (family, name, seed, ...).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

from kennen import data as mnist_data
from kennen.config import base_seed, load_params, section
from kennen.imagenet.families import ProbeParams
from kennen.imagenet.offline import SurrogateTask, size, train_and_answer
from kennen.imagenet.pretrained import answer, read_images
from kennen.io import save_npz, write_csv
from kennen.log import progress
from kennen.parallel import run_tasks
from stages._common import parser, run

log = logging.getLogger("kennen.imagenet_zoo")
ZOO_OFFSET = 9  # seed offset (see kennen/zoo/sample.py, kennen/metamodel/crafted.py, kennen/imagenet/probe.py)
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
        if pp.mode == "offline":
            o = pp.offline
            mnist = mnist_data.load(Path(args.data))
            tasks = [
                SurrogateTask(family, name, s, int(np.random.SeedSequence([seed, ZOO_OFFSET, i, s]).generate_state(1)[0]))
                for i, (family, name) in enumerate(pp.models())
                for s in range(o.seeds)
            ]  # fmt: skip
            job = functools.partial(
                train_and_answer,
                train_images=mnist.train_images[:TRAIN_POOL],
                train_labels=mnist.train_labels[:TRAIN_POOL],
                queries=mnist.test_images[: o.pool],
                query_labels=mnist.test_labels[: o.pool].astype(np.int64),
                image_size=o.image_size,
                steps=o.steps,
                batch=o.batch,
                lr=o.lr,
                momentum=o.momentum,
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
        out = Path(args.out_dir)
        save_npz(out / "outputs.npz", outputs=np.stack(outputs))
        write_csv(out / "models.csv", rows, list(rows[0]))
        log.info("%d models (%s mode), %d query images", len(rows), pp.mode, outputs[0].shape[0])

    return run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())

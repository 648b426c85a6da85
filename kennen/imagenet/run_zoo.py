"""The ``imagenet_zoo`` stage: the family zoo's outputs on the query pool (paper §7).

Offline, the surrogate zoo (every torchvision architecture of ``imagenet_probe.families`` x
``offline.seeds``, on small MNIST inputs) is trained as parallel tasks on the executor
(``kennen.imagenet.offline``); pretrained, torchvision's ImageNet weights answer the natural
images of ``pretrained.image_dir`` (``kennen.imagenet.pretrained``).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kennen import data as mnist_data
from kennen.config import base_seed, require, section
from kennen.imagenet.families import ProbeParams
from kennen.imagenet.offline import size, surrogate_tasks, train_and_answer
from kennen.imagenet.pretrained import answer, read_images
from kennen.io import save_npz, write_csv, write_json
from kennen.log import progress
from kennen.parallel import run_tasks

log = logging.getLogger("kennen.imagenet_zoo")
COLUMNS = ("family", "name", "seed", "query_acc", "final_loss", "seconds")  # models.csv


@dataclass(frozen=True)
class ZooParams:
    """``imagenet_zoo`` section of params.yaml."""

    train_pool: int = 12_000  # offline surrogates draw their training batches from the first train_pool MNIST images

    def check(self, where: str) -> None:
        require(
            1 <= self.train_pool <= 60_000, f"{where}.train_pool", f"must be within 1..60000, got {self.train_pool}"
        )


def _offline(pp: ProbeParams, train_pool: int, data: Path, weights: Path, seed: int) -> list[dict[str, Any]]:
    """Train every surrogate in parallel; per model (in task order) its ``models.csv`` row and ``outputs``."""
    o = pp.offline
    mnist = mnist_data.load(data)
    tasks = surrogate_tasks(pp.models(), o.seeds, seed)
    job = functools.partial(
        train_and_answer,
        train_images=mnist.train_images[:train_pool],
        train_labels=mnist.train_labels[:train_pool],
        queries=mnist.test_images[: o.pool],
        query_labels=mnist.test_labels[: o.pool].astype(np.int64),
        recipe=o.recipe,
        weights_dir=str(weights),
    )
    # The largest networks first (parameter count as the cost proxy), so that the workers finish together.
    sizes = {name: size(name) for _, name in pp.models()}
    order = sorted(tasks, key=lambda t: -sizes[t.name])
    done = dict(progress(run_tasks(job, order, len(order)), len(order), "surrogate models", log))
    return [done[t] | {"seconds": round(done[t]["seconds"], 1)} for t in tasks]


def _pretrained(pp: ProbeParams) -> list[dict[str, Any]]:
    """Every pretrained model's answers on the image pool, in ``pp.models()`` order."""
    pre = pp.pretrained
    images = read_images(pre.image_dir, pre.pool)
    out = []
    for family, name in pp.models():
        out.append({"family": family, "name": name, "seed": 0, "query_acc": float("nan"), "final_loss": float("nan"),
                    "seconds": 0.0, "outputs": answer(name, images, pre.download, pre.classes)})  # fmt: skip
        log.info("%s: answered %d images", name, len(images))
    return out


def run(params: dict[str, Any], data: Path, out_dir: Path) -> None:
    """Build the family zoo; write ``outputs.npz``, ``models.csv`` and ``weights/`` (index and seed-0 surrogates).

    Args:
        params: the params tree (sections ``imagenet_zoo``, ``imagenet_probe`` and the seed).
        data: ``mnist.npz`` (offline mode).
        out_dir: the stage's output folder.
    """
    zp, pp = section(ZooParams, params, "imagenet_zoo"), section(ProbeParams, params, "imagenet_probe")
    weights = out_dir / "weights"  # the seed-0 surrogates, for the attack stage
    if pp.mode == "offline":
        models = _offline(pp, zp.train_pool, data, weights, base_seed(params))
    else:
        models = _pretrained(pp)
    write_json(weights / "index.json", {"mode": pp.mode, "image_size": pp.offline.image_size,
                                        "models": [n for _, n in pp.models()] if pp.mode == "offline" else []})  # fmt: skip
    save_npz(out_dir / "outputs.npz", outputs=np.stack([m["outputs"] for m in models]))
    write_csv(out_dir / "models.csv", [{k: m[k] for k in COLUMNS} for m in models], COLUMNS)
    log.info("%d models (%s mode), %d query images", len(models), pp.mode, models[0]["outputs"].shape[0])

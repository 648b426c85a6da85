"""What kennen-i and kennen-io share: the white-box zoo as one differentiable function, and the query update.

Both methods learn query *images* by backpropagating through the training
black boxes (paper §5). ``BoxZoo`` holds every member network of the given
boxes in a ``ZooForward`` and returns the boxes' log-probabilities on a batch of
query images: a single model's own output, an ensemble's the mean of its
members' log-softmax outputs (as the ``queries`` stage computes them).

``QueryStep`` is the official code's update, in normalised image space:

    x <- clip(x - lr * grad + U(-noise, +noise), (0 - MEAN) / STD, (1 - MEAN) / STD)

so the images stay valid, i.e. in [0, 1] in pixel space, after every step.
``rule: sign`` replaces ``grad`` by ``sign(grad)`` (the L-infinity steepest
descent step of PGD): every pixel moves by ``lr`` whatever the gradient's
scale. Our addition, for the reduced profile: measured on the default zoo, the
gradient reaching kennen-io's queries through a warm-started MLP averages
3e-4 per pixel (2.5e-5 after 200 MLP epochs), far below the +-1/512 noise, so
with a few hundred steps instead of the official tens of thousands the
official rule leaves the queries where they started.

Both stages also share their cross-validation's task names: one task per fold of
``data/splits/folds.json`` (``fold_name``) and one that trains on every box (``ALL_BOXES``),
whose crafted queries are the ones saved for ``kennen whiten``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kennen.config import bounded, require
from kennen.data import MEAN, STD
from kennen.errors import KennenError
from kennen.schemas import MODELS
from kennen.seeds import Purpose, StableRng
from kennen.zoo.ensembles import ensemble_mean
from kennen.zoo.forward import ZooForward
from kennen.zoo.net import MnistNet, NetConfig
from kennen.zoo.store import read_table, shard_name, state_dicts

LOW, HIGH = (0.0 - MEAN) / STD, (1.0 - MEAN) / STD  # the pixel range [0, 1], normalised


def draw_images(n_images: int, n: int, seed: int) -> np.ndarray:
    """Indices of ``n`` distinct images out of ``n_images``, deterministic from ``seed``."""
    perm = StableRng(seed, Purpose.CRAFTED_INIT).permutation_prefix(n_images)
    return np.array([next(perm) for _ in range(n)], dtype=np.int64)


def to_pixels(x: torch.Tensor) -> np.ndarray:
    """Normalised images -> float32 pixels in [0, 1]."""
    return (x.detach() * STD + MEAN).clamp(0.0, 1.0).numpy().astype(np.float32)


@dataclass(frozen=True)
class QueryStep:
    """Projected, noisy gradient step on query images (official ``inputPerturber``)."""

    lr: float = 0.1
    noise: float = 1 / 512
    batch: int = bounded(100_000, 10)  # black boxes per step
    rule: str = "sgd"  # sgd (official) | sign

    def check(self, where: str) -> None:
        require(self.rule in ("sgd", "sign"), f"{where}.rule", f"expected 'sgd' or 'sign', got {self.rule!r}")
        require(self.lr > 0, f"{where}.lr", f"must be positive, got {self.lr}")
        require(self.noise >= 0, f"{where}.noise", f"must be >= 0, got {self.noise}")
        require(self.batch >= 1, f"{where}.batch", f"must be at least 1, got {self.batch}")

    @torch.no_grad()
    def apply(self, x: torch.Tensor, generator: torch.Generator) -> None:
        """Update ``x`` (a leaf with ``.grad``) in place and clear its gradient."""
        x -= self.lr * (x.grad.sign() if self.rule == "sign" else x.grad)
        if self.noise:
            x += (torch.rand(x.shape, generator=generator) * 2 - 1) * self.noise
        x.clamp_(LOW, HIGH)
        x.grad = None


class BoxZoo:
    """Black boxes (single models and ensembles) as one differentiable function of the query images."""

    def __init__(self, nets: Sequence[MnistNet], members: Sequence[Sequence[int]]):
        self.zoo = ZooForward(nets)
        self.members = [list(m) for m in members]

    def __len__(self) -> int:
        return len(self.members)

    def __call__(self, x: torch.Tensor, boxes: Sequence[int]) -> torch.Tensor:
        """Log-probabilities [B, Q, 10] of ``boxes`` on ``x`` [Q, 1, 28, 28] (differentiable in ``x``)."""
        needed = sorted({m for b in boxes for m in self.members[b]})
        pos = {m: i for i, m in enumerate(needed)}
        out = self.zoo(x, needed)  # [M, Q, 10]
        return ensemble_mean(out, [[pos[m] for m in self.members[b]] for b in boxes])

    @torch.no_grad()
    def outputs(self, x: torch.Tensor, boxes: Sequence[int], chunk: int = 64) -> torch.Tensor:
        """As ``__call__`` without gradients, in chunks of boxes: [B, Q, 10]."""
        return torch.cat([self(x, boxes[i : i + chunk]) for i in range(0, len(boxes), chunk)])


def load_members(
    shards: Path, models_csv: Path, boxes: list[dict[str, Any]], box_ids: Sequence[int]
) -> tuple[list[MnistNet], list[list[int]]]:
    """The member networks of the listed boxes (rows of ``boxes.csv``), each read once from the zoo's shards.

    Returns (networks, members): ``members[i]`` indexes the networks of box ``box_ids[i]``.
    """
    by_id = {m["model_id"]: m for m in read_table(models_csv, MODELS)}
    members = [[int(m) for m in str(boxes[b]["members"]).split(";")] for b in box_ids]
    ids = sorted({m for ms in members for m in ms})
    by_shard: dict[int, list[int]] = {}
    for i in ids:
        if i not in by_id:
            raise KennenError(f"{models_csv}: model {i} of a black box is not in the zoo table")
        by_shard.setdefault(by_id[i]["shard"], []).append(i)
    nets: dict[int, MnistNet] = {}
    for shard, shard_ids in sorted(by_shard.items()):
        path = shards / f"{shard_name(shard)}.safetensors"
        if not path.is_file():
            raise KennenError(f"{path}: shard file not found (run `dvc repro` or `dvc pull`)")
        states = state_dicts(path)
        for i in shard_ids:
            net = MnistNet(NetConfig.of(by_id[i]))
            net.load_state_dict(states[i])
            nets[i] = net.eval()
    index = {m: j for j, m in enumerate(ids)}
    return [nets[i] for i in ids], [[index[m] for m in ms] for ms in members]


def load_box_zoo(shards: Path, models_csv: Path, boxes: list[dict[str, Any]], box_ids: Sequence[int]) -> BoxZoo:
    """The listed boxes (rows of ``boxes.csv``) with their member networks read from the zoo's shards.

    Box ``box_ids[i]`` becomes index ``i`` of the returned ``BoxZoo``.
    """
    return BoxZoo(*load_members(shards, models_csv, boxes, box_ids))


@dataclass(frozen=True)
class ZooSource:
    """Where a worker process finds the white-box zoo: picklable, absolute paths (Dask workers included)."""

    shards: str
    models_csv: str
    boxes: tuple[dict[str, Any], ...]

    @classmethod
    def at(cls, shards: Path, models_csv: Path, boxes: list[dict[str, Any]]) -> ZooSource:
        return cls(str(shards.resolve()), str(models_csv.resolve()), tuple(boxes))

    def load(self, box_ids: Sequence[int]) -> BoxZoo:
        return load_box_zoo(Path(self.shards), Path(self.models_csv), list(self.boxes), box_ids)


# --- cross-validation tasks --------------------------------------------------------------------

ALL_BOXES = "all-boxes"  # the saved metamodel's task: every box of the zoo trains it, none tests it


def fold_name(f: int) -> str:
    """The task (split) name of fold ``f``: with a hyphen, which no E split's name (an identifier) holds."""
    return f"cv-{f}"

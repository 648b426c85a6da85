"""The foreign trainer: the official ``mnist.py`` loop, written again apart from ``kennen.zoo``.

Nothing here comes from the zoo's trainer, and tests check that no zoo training or
network module is imported. What it shares with the zoo is only what the paper
fixes: Table 1 (``kennen.attributes``), MNIST and its normalisation (``kennen.data``),
the network template and the official optimiser settings (protocol §2). What
differs, on purpose, is everything a trainer leaves as fingerprints:

- the network is an ``nn.Sequential`` of its own, written from the paper's
  template and the official ``mnet`` class. ``extra_act`` chooses the
  activation of the extra conv and fc blocks: ``sampled`` (the paper's text, and
  the zoo's builder: the default, so that transfer measures the trainer and the
  regime, not a different function for ``act``) or ``relu`` (the official
  ``convblock``/``linearblock``, hard-coded); one shared activation module, so
  PReLU has one slope in both;
- data comes through a ``DataLoader`` over a ``TensorDataset`` with a
  ``SubsetRandomSampler``, as in the official loop; one
  ``torch.manual_seed`` drives initialisation, batch order and dropout (plain
  ``nn.Dropout`` on torch's global generator), as in the official code;
- the training images are permuted with a seed of its own (the zoo: numpy seed
  20), and the all/half/quarter subsets are cut from the first ``pool_size``
  images of that permutation: the same sizes, other images.

A box is trained in one single-threaded task and comes back as the bytes of a
``torch.export`` program in eval mode, with a dynamic batch dimension.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, SubsetRandomSampler, TensorDataset

from kennen import data as mnist_data
from kennen.seeds import Purpose, generator

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "prelu": nn.PReLU, "elu": nn.ELU, "tanh": nn.Tanh}
# Official code: SGD lr 0.1 momentum 0.5; Adam lr 1e-3; RMSprop lr 1e-3 momentum 0.5.
OPTIMISERS: dict[str, tuple[type[torch.optim.Optimizer], dict[str, float]]] = {
    "sgd": (torch.optim.SGD, {"lr": 0.1, "momentum": 0.5}),
    "adam": (torch.optim.Adam, {"lr": 1e-3}),
    "rmsprop": (torch.optim.RMSprop, {"lr": 1e-3, "momentum": 0.5}),
}
PARTS = {"all": 1, "half": 2, "quarter": 4}
EXTRA_ACTS = ("sampled", "relu")
TEST_BATCH = 1000
MAX_BATCH = 1 << 16  # the exported programs accept batches of 1 .. MAX_BATCH images


@dataclass(frozen=True)
class BoxSpec:
    """One foreign box to train: its Table 1 values, seeds and regime; small and picklable."""

    regime: str
    box: int
    act: str
    drop: bool
    pool: bool
    ks: int
    n_conv: int
    n_fc: int
    alg: str
    bs: int
    split: str
    torch_seed: int
    epochs: int
    pool_size: int  # training images the subsets are cut from
    perm_seed: int
    extra_act: str = "sampled"  # sampled | relu: the extra blocks' activation (module docstring)


@dataclass(frozen=True)
class BoxResult:
    """What a worker sends back: the exported program and its test accuracy."""

    regime: str
    box: int
    program: bytes
    test_acc: float
    n_params: int
    diverged: bool
    seconds: float


def build_net(
    act: str, drop: bool, pool: bool, ks: int, n_conv: int, n_fc: int, extra_act: str = "sampled"
) -> nn.Sequential:
    """The network template as one ``nn.Sequential``; input [B, 1, 28, 28] normalised, output log-probs [B, 10].

    ``extra_act``: ``sampled`` uses ``act`` in the extra blocks too (the paper's text), ``relu`` a
    fresh ReLU there (the official code).
    """
    a = ACTIVATIONS[act]()  # one module in every act position: PReLU's slope is shared

    def extra() -> nn.Module:
        return a if extra_act == "sampled" else nn.ReLU()

    mp = [nn.MaxPool2d(2)] if pool else []
    dp = [nn.Dropout(0.5)] if drop else []
    conv = [nn.Conv2d(1, 10, ks), *mp, a, nn.Conv2d(10, 20, ks), *mp, a]
    for _ in range(n_conv - 2):
        conv += [nn.Conv2d(20, 20, ks, padding=(ks - 1) // 2), extra()]  # no pooling in extra blocks
    with torch.no_grad():
        flat = nn.Sequential(*conv)(torch.zeros(1, 1, 28, 28)).numel()  # 500, 320, 11520 or 8000
    fc = [nn.Flatten(), nn.Linear(flat, 50), a, *dp]
    for _ in range(n_fc - 2):
        fc += [nn.Linear(50, 50), extra(), *dp]
    return nn.Sequential(*conv, *fc, nn.Linear(50, 10), nn.LogSoftmax(dim=1))


def spec_net(spec: BoxSpec) -> nn.Sequential:
    """The untrained network of ``spec`` (initialised from torch's global generator)."""
    return build_net(spec.act, spec.drop, spec.pool, spec.ks, spec.n_conv, spec.n_fc, spec.extra_act)


def count_params(net: nn.Module) -> int:
    """Learnable parameters (a module shared by several layers counts once)."""
    return sum(p.numel() for p in net.parameters())


def permutation(n: int, seed: int) -> np.ndarray:
    """The foreign trainer's fixed permutation of the ``n`` training images."""
    return generator(seed, Purpose.TRANSFER_PERM).permutation(n)


def subset(perm: np.ndarray, pool_size: int, split: str) -> np.ndarray:
    """Indices of ``split`` (``all``, ``half_1``, ...) within the first ``pool_size`` images of ``perm``."""
    part, _, k = split.partition("_")
    size = pool_size // PARTS[part]
    start = int(k or 0) * size
    return perm[start : start + size]


@dataclass(frozen=True)
class ForeignData:
    """MNIST normalised once per worker process."""

    train: TensorDataset  # ([N, 1, 28, 28] float32, [N] int64)
    test_x: torch.Tensor  # [10000, 1, 28, 28]
    test_y: torch.Tensor  # [10000] int64


_CACHE: dict[tuple, ForeignData] = {}


def load_data(path: str | Path) -> ForeignData:
    """Normalised MNIST from the ``data`` stage's file, cached per process (and per file version)."""
    stat = Path(path).stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _CACHE:
        m = mnist_data.load(Path(path))
        _CACHE.clear()
        _CACHE[key] = ForeignData(
            TensorDataset(
                torch.from_numpy(mnist_data.normalise(m.train_images)), torch.from_numpy(m.train_labels).long()
            ),
            torch.from_numpy(mnist_data.normalise(m.test_images)),
            torch.from_numpy(m.test_labels).long(),
        )
    return _CACHE[key]


def test_accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, bool]:
    """(accuracy in percent on ``x``, whether every output was finite); leaves ``net`` in eval mode."""
    net.eval()
    correct, finite = 0, True
    with torch.no_grad():
        for start in range(0, len(x), TEST_BATCH):
            out = net(x[start : start + TEST_BATCH])
            finite &= bool(torch.isfinite(out).all())
            correct += int((out.argmax(1) == y[start : start + TEST_BATCH]).sum())
    return 100.0 * correct / len(x), finite


def train_box(spec: BoxSpec, data: ForeignData) -> tuple[nn.Sequential, float, bool]:
    """Train one box as the official loop does; returns (net in eval mode, test accuracy %, diverged)."""
    torch.manual_seed(spec.torch_seed)  # official: one seed for init, batch order and dropout
    net = spec_net(spec)
    cls, settings = OPTIMISERS[spec.alg]
    opt = cls(net.parameters(), **settings)
    perm = permutation(len(data.train), spec.perm_seed)
    sampler = SubsetRandomSampler(subset(perm, spec.pool_size, spec.split).tolist())
    loader = DataLoader(data.train, batch_size=spec.bs, sampler=sampler)  # in-process: the task is one worker already
    for _ in range(spec.epochs):
        net.train()
        for x, y in loader:
            opt.zero_grad()
            F.nll_loss(net(x), y).backward()
            opt.step()
    acc, finite = test_accuracy(net, data.test_x, data.test_y)
    diverged = not finite or not all(bool(torch.isfinite(p).all()) for p in net.parameters())
    return net, acc, diverged


def export_program(net: nn.Module) -> torch.export.ExportedProgram:
    """``net`` in eval mode as a ``torch.export`` program taking [B, 1, 28, 28] for any B in 1 .. MAX_BATCH."""
    net.eval()
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    return torch.export.export(net, (torch.zeros(2, 1, 28, 28),), dynamic_shapes=({0: batch},))


def program_bytes(net: nn.Module) -> bytes:
    """The ``.pt2`` file of ``net``'s exported program, as bytes (the driver writes the file)."""
    buf = io.BytesIO()
    torch.export.save(export_program(net), buf)
    return buf.getvalue()


def box_task(job: tuple[BoxSpec, str]) -> BoxResult:
    """Worker entry: train box ``spec`` on MNIST at ``data_path`` and export it; single-threaded."""
    spec, data_path = job
    torch.set_num_threads(1)
    start = time.process_time()
    net, acc, diverged = train_box(spec, load_data(data_path))
    program = program_bytes(net)
    return BoxResult(spec.regime, spec.box, program, acc, count_params(net), diverged, time.process_time() - start)

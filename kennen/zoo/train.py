"""Training zoo models (paper §2; official ``train_mnist_nets.py`` / ``mnist.py``).

NLL loss on log-softmax outputs, no augmentation, no schedule, no weight decay;
per-optimiser settings from the official code (the paper gives only SGD's).
Training data subsets are cut from one fixed permutation of the training images
(the official code's ``np.random.seed(20)`` permutation): ``all``, the two
disjoint halves and the four disjoint quarters. The reduced profile cuts them
from the first ``pool_size`` images of that permutation instead of all 60,000.

Two trainers make the same models (``train_zoo.trainer``):

- ``loop`` (:func:`train_model`): one model after the other, weights and
  activations in channels-last layout (measured faster on the CPU:
  ``benchmarks/zoo_throughput.py``).
- ``fused`` (:mod:`kennen.zoo.fused`): many models of one structure in one set
  of kernels.

Both follow one per-model random protocol, so a model does not depend on the
trainer, the worker or the models it was trained next to: initialisation from
``torch.manual_seed(torch_seed)``, batch order and dropout masks from generators
on the torch seed's own streams (``kennen.seeds``: BATCHES and DROPOUT). Each
task is single-threaded on the CPU, so results never depend on the worker count
or the completion order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kennen import data as mnist_data
from kennen.attributes import SPLITS
from kennen.config import SEED_MAX, bounded, require
from kennen.errors import KennenError
from kennen.seeds import Purpose, torch_generator
from kennen.zoo.net import MnistNet, NetConfig

# Official code: SGD lr 0.1 momentum 0.5; Adam lr 1e-3; RMSprop lr 1e-3 momentum 0.5.
OPTIMISERS: dict[str, tuple[type[torch.optim.Optimizer], dict[str, float]]] = {
    "sgd": (torch.optim.SGD, {"lr": 0.1, "momentum": 0.5}),
    "adam": (torch.optim.Adam, {"lr": 1e-3}),
    "rmsprop": (torch.optim.RMSprop, {"lr": 1e-3, "momentum": 0.5}),
}
TRAINERS = ("loop", "fused")
DEVICES = ("cpu", "cuda")


def make_optimiser(alg: str, params: Iterable[nn.Parameter], foreach: bool | None = None) -> torch.optim.Optimizer:
    """The official optimiser ``alg`` over ``params`` (``foreach``: torch's multi-tensor implementation)."""
    cls, settings = OPTIMISERS[alg]
    return cls(params, **settings, foreach=foreach)


@dataclass(frozen=True)
class TrainParams:
    """``train_zoo`` section of params.yaml."""

    shards: tuple[int, ...]
    epochs: int = bounded(1_000, 100)  # paper: 100
    pool_size: int = 60000
    perm_seed: int = bounded(SEED_MAX, 20)
    test_batch: int = 256  # measured: 2x faster than 1000 on one thread
    trainer: str = "loop"  # loop | fused (see the module docstring)
    device: str = "cpu"  # cpu | cuda
    fuse_max: int = 64  # most models in one fused group
    checkpoints: tuple[float, ...] = ()  # epochs (fractions allowed) at which outputs on the queries are recorded
    checkpoint_queries: int = bounded(10_000, 1000)  # how many of the query images (the queries stage's first n)

    def check(self, where: str) -> None:
        require(self.trainer in TRAINERS, f"{where}.trainer", f"expected one of {', '.join(TRAINERS)}, got {self.trainer!r}")  # fmt: skip
        require(self.device in DEVICES, f"{where}.device", f"expected one of {', '.join(DEVICES)}, got {self.device!r}")
        require(self.fuse_max >= 1, f"{where}.fuse_max", f"must be at least 1, got {self.fuse_max}")
        require(self.epochs >= 1, f"{where}.epochs", f"must be at least 1, got {self.epochs}")
        require(self.pool_size >= 4, f"{where}.pool_size", f"must be at least 4, got {self.pool_size}")
        require(self.test_batch >= 1, f"{where}.test_batch", f"must be at least 1, got {self.test_batch}")
        require(self.perm_seed >= 0, f"{where}.perm_seed", f"must be a non-negative int, got {self.perm_seed}")
        require(len(set(self.shards)) == len(self.shards), f"{where}.shards", "has duplicates")
        ckpts, key = self.checkpoints, f"{where}.checkpoints"
        require(all(0 < c < self.epochs for c in ckpts), key, f"each must lie between 0 and epochs ({self.epochs}), exclusive, got {list(ckpts)}")  # fmt: skip
        require(list(ckpts) == sorted(set(ckpts)), key, f"must increase, without repeats, got {list(ckpts)}")
        require(not ckpts or self.trainer == "loop", key, "are recorded by the loop trainer only (trainer: loop)")
        require(1 <= self.checkpoint_queries <= 10_000, f"{where}.checkpoint_queries", f"must be within 1..10000 (MNIST test images), got {self.checkpoint_queries}")  # fmt: skip


@dataclass(frozen=True)
class TrainSpec:
    """Everything one training task needs besides the data; small and picklable."""

    model_id: int
    net: NetConfig
    alg: str
    bs: int
    split: str
    torch_seed: int
    epochs: int
    checkpoints: tuple[float, ...] = ()  # epochs at which the model's outputs on the probe images are recorded

    @classmethod
    def of(cls, row: Mapping[str, Any], epochs: int, checkpoints: tuple[float, ...] = ()) -> TrainSpec:
        """The training task of one sample-table row."""
        net = NetConfig.of(row)
        return cls(row["model_id"], net, row["alg"], row["bs"], row["split"], row["torch_seed"], epochs, checkpoints)


@dataclass(frozen=True)
class TrainResult:
    """What a worker sends back to the driver."""

    model_id: int
    state: dict[str, np.ndarray]
    test_acc: float
    train_loss: float
    seconds: float
    diverged: bool
    # Log-probabilities on the probe images at each of the spec's checkpoints, float32 [checkpoints, images, 10].
    checkpoints: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0, 10), np.float32))


def relative_cost(spec: TrainSpec) -> float:
    """Rough relative training cost, to start the slowest models first (longest-processing-time order)."""
    per_image = (1.0 if spec.net.pool else 4.0) * spec.net.n_conv
    return {"all": 1.0, "half": 0.5, "quarter": 0.25}[spec.split.split("_")[0]] * per_image * spec.epochs


def subset_indices(perm: np.ndarray, split: str) -> np.ndarray:
    """Indices of training subset ``split`` within the permuted pool ``perm``."""
    part, _, k = split.partition("_")
    parts = {"all": 1, "half": 2, "quarter": 4}[part]
    size = len(perm) // parts
    k = int(k or 0)
    return perm[k * size : (k + 1) * size]


@dataclass(frozen=True)
class TrainData:
    """Normalised tensors for training and testing, shared by all tasks of a worker."""

    train_x: torch.Tensor  # [N, 1, 28, 28] float32
    train_y: torch.Tensor  # [N] int64
    test_x: torch.Tensor  # [10000, 1, 28, 28]
    test_y: torch.Tensor
    subsets: dict[str, torch.Tensor]  # split -> indices into train_x
    test_batch: int


def load_train_data(path: str, pool_size: int, perm_seed: int, test_batch: int, device: str = "cpu") -> TrainData:
    """Load and normalise MNIST once per worker process (and device), again whenever the file changes.

    The cache key includes the file's size and modification time, so a long-lived (Dask)
    worker never trains on a previous run's data.
    """
    stat = Path(path).stat() if Path(path).exists() else None
    key = (stat.st_size, stat.st_mtime_ns) if stat else None
    return _load_train_data(path, key, pool_size, perm_seed, test_batch, device)


@functools.lru_cache(maxsize=2)
def _load_train_data(
    path: str, file_key: object, pool_size: int, perm_seed: int, test_batch: int, device: str
) -> TrainData:
    check_device(device)
    m = mnist_data.load(Path(path))
    require(
        pool_size <= len(m.train_images),
        "train_zoo.pool_size",
        f"{pool_size} exceeds the {len(m.train_images)} training images in {path}",
    )
    # Legacy RandomState: its permutation is frozen by NumPy's stability policy.
    perm = np.random.RandomState(perm_seed).permutation(len(m.train_images))[:pool_size]
    subsets = {s: torch.from_numpy(subset_indices(perm, s)) for s in SPLITS}
    return TrainData(
        train_x=torch.from_numpy(mnist_data.normalise(m.train_images)).to(device),
        train_y=torch.from_numpy(m.train_labels.astype(np.int64)).to(device),
        test_x=torch.from_numpy(mnist_data.normalise(m.test_images)).to(device),
        test_y=torch.from_numpy(m.test_labels.astype(np.int64)).to(device),
        subsets=subsets,
        test_batch=test_batch,
    )


def check_device(device: str) -> None:
    """A one-line error when ``device`` cannot be used here."""
    if device == "cuda" and not torch.cuda.is_available():
        raise KennenError("train_zoo.device: cuda, but torch sees no CUDA device here (use cpu)")


def build_member(spec: TrainSpec, device: str) -> tuple[MnistNet, torch.Generator]:
    """A freshly initialised model on ``device`` with its dropout generator set, and its batch-order generator.

    This is the per-model random protocol of both trainers (module docstring). The
    weights are drawn on the CPU and then moved, so they are the same on every device.
    """
    torch.manual_seed(spec.torch_seed)
    net = MnistNet(spec.net)
    net.seed_dropout(torch_generator(spec.torch_seed, Purpose.DROPOUT, device=device))
    return net.to(device), torch_generator(spec.torch_seed, Purpose.BATCHES)


def epoch_order(subset: torch.Tensor, shuffle: torch.Generator) -> torch.Tensor:
    """One epoch's order of the training images of ``subset`` (indices into the pool)."""
    return subset[torch.randperm(len(subset), generator=shuffle)]


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    """Top-1 accuracy of ``model`` on (x, y) in percent."""
    model.eval()
    correct = sum(int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum()) for i in range(0, len(x), batch))
    return 100.0 * correct / len(x)


def finish(
    spec: TrainSpec, net: MnistNet, test_acc: float, loss_sum: float | torch.Tensor, n_seen: int, seconds: float,
    checkpoints: np.ndarray | None = None,
) -> TrainResult:  # fmt: skip
    """A trained model's result: CPU weights in the default layout, divergence, last epoch's mean loss."""
    loss_sum = float(loss_sum)
    state = {k: v.detach().cpu().contiguous().numpy().copy() for k, v in net.state_dict().items()}
    diverged = not all(np.isfinite(v).all() for v in state.values())
    train_loss = loss_sum / max(n_seen, 1)
    loss = train_loss if math.isfinite(train_loss) else float("nan")
    if checkpoints is None:
        return TrainResult(spec.model_id, state, test_acc, loss, seconds, diverged)
    return TrainResult(spec.model_id, state, test_acc, loss, seconds, diverged, checkpoints)


def checkpoint_steps(spec: TrainSpec, n_images: int) -> list[int]:
    """The optimiser steps after which each of ``spec.checkpoints`` is recorded (epoch e: round(e * steps per epoch))."""
    per_epoch = math.ceil(n_images / spec.bs)
    steps = [round(c * per_epoch) for c in spec.checkpoints]
    if any(not 0 < s < spec.epochs * per_epoch for s in steps) or len(set(steps)) < len(steps):
        raise KennenError(f"train_zoo.checkpoints: {list(spec.checkpoints)} fall on repeated steps or on the "
                          f"ends of training at {per_epoch} steps an epoch (model {spec.model_id})")  # fmt: skip
    return steps


@torch.inference_mode()
def probe_outputs(net: nn.Module, x: torch.Tensor, batch: int) -> np.ndarray:
    """``net``'s log-probabilities on the probe images ``x`` in eval mode [N, 10]; its mode is restored after.

    Reads the weights only and draws no random numbers (dropout is off in eval mode), so recording
    checkpoints leaves the trained weights bit for bit as they are without them.
    """
    was_training = net.training
    net.eval()
    out = torch.cat([net(x[i : i + batch]) for i in range(0, len(x), batch)])
    net.train(was_training)
    return out.float().cpu().numpy()


@contextlib.contextmanager
def single_thread(device: str) -> Iterator[None]:
    """One torch thread for CPU work (the same arithmetic whatever the executor), the previous count restored after."""
    threads = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train_model(
    spec: TrainSpec,
    data: TrainData,
    device: str = "cpu",
    channels_last: bool = True,
    on_epoch: Callable[[int, MnistNet], None] | None = None,
    probe_x: torch.Tensor | None = None,
) -> TrainResult:
    """Train one model as the official code does (one test pass, at the end) and measure its test accuracy.

    Args:
        spec: the model to train.
        data: training and test tensors, already on ``device``.
        device: ``cpu`` or ``cuda``.
        channels_last: weights and activations in channels-last layout (``benchmarks/zoo_throughput.py``:
            1.15x the model-epochs per core-hour of the plain layout, README); ``False`` is the trainer
            before that change, kept for the benchmark.
        on_epoch: called as ``on_epoch(epoch, net)`` after each epoch (``benchmarks/zoo_regimes.py`` reads
            test accuracy there); it must leave the net's weights as they are.
        probe_x: the probe (query) images, on ``device``; required when ``spec.checkpoints`` is not empty. The
            model's log-probabilities on them are recorded after each checkpoint's step (``TrainResult.checkpoints``).
    """
    start = time.perf_counter()
    with single_thread(device):
        net, shuffle = build_member(spec, device)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        net = net.to(memory_format=layout)
        opt = make_optimiser(spec.alg, net.parameters())
        subset = data.subsets[spec.split]
        record_at = checkpoint_steps(spec, len(subset)) if spec.checkpoints else []
        if record_at and probe_x is None:
            raise KennenError(f"train_zoo.checkpoints: model {spec.model_id} has checkpoints but no probe images")
        probes = probe_x.contiguous(memory_format=layout) if record_at else None
        recorded, step = [], 0
        loss_sum, n_seen = torch.zeros((), device=device), 0
        for epoch in range(spec.epochs):
            net.train()
            loss_sum, n_seen = torch.zeros((), device=device), 0
            for batch in epoch_order(subset, shuffle).to(device).split(spec.bs):
                opt.zero_grad(set_to_none=True)
                x = data.train_x[batch].contiguous(memory_format=layout)
                loss = nn.functional.nll_loss(net(x), data.train_y[batch])
                loss.backward()
                opt.step()
                loss_sum += loss.detach() * len(batch)  # no host sync per step
                n_seen += len(batch)
                step += 1
                if step in record_at:
                    recorded.append(probe_outputs(net, probes, data.test_batch))
            if on_epoch is not None:
                on_epoch(epoch, net)
        acc = evaluate(net, data.test_x, data.test_y, data.test_batch)
        outputs = np.stack(recorded) if recorded else None
        return finish(spec, net, acc, loss_sum, n_seen, time.perf_counter() - start, outputs)


def train_task(
    spec: TrainSpec, data_path: str, pool_size: int, perm_seed: int, test_batch: int, device: str = "cpu",
    probes: tuple[int, int] | None = None,
) -> TrainResult:  # fmt: skip
    """Worker entry point: load (cached) data, then train one model.

    ``probes``: (seed, n) of the query images whose outputs the model's checkpoints record
    (:func:`kennen.data.query_indices`: the first n of the ``queries`` stage's images for that seed).
    """
    data = load_train_data(data_path, pool_size, perm_seed, test_batch, device)
    probe_x = probe_images(data_path, *probes, device) if probes and spec.checkpoints else None
    return train_model(spec, data, device, probe_x=probe_x)


def probe_images(path: str, seed: int, n: int, device: str = "cpu") -> torch.Tensor:
    """The first ``n`` query images of ``seed`` (normalised MNIST test images) [n, 1, 28, 28] on ``device``.

    Cached per worker like :func:`load_train_data`, again whenever the file changes.
    """
    stat = Path(path).stat() if Path(path).exists() else None
    return _probe_images(path, (stat.st_size, stat.st_mtime_ns) if stat else None, seed, n, device)


@functools.lru_cache(maxsize=2)
def _probe_images(path: str, file_key: object, seed: int, n: int, device: str) -> torch.Tensor:
    m = mnist_data.load(Path(path))
    index = mnist_data.query_indices(len(m.test_images), n, seed)
    return torch.from_numpy(mnist_data.normalise(m.test_images[index])).to(device)

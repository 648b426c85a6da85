"""Training one zoo model (paper §2; official ``train_mnist_nets.py`` / ``mnist.py``).

NLL loss on log-softmax outputs, no augmentation, no schedule, no weight decay;
per-optimiser settings from the official code (the paper gives only SGD's).
Training data subsets are cut from one fixed permutation of the training images
(the official code's ``np.random.seed(20)`` permutation): ``all``, the two
disjoint halves and the four disjoint quarters. The reduced profile cuts them
from the first ``pool_size`` images of that permutation instead of all 60,000.

Each task is single-threaded and seeded from (base seed, model id), so its
result does not depend on the worker, the worker count or the completion order.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kennen import data as mnist_data
from kennen.attributes import SPLITS
from kennen.config import require
from kennen.zoo.net import MnistNet, NetConfig

OPTIMISERS = {
    "sgd": lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.5),
    "adam": lambda params: torch.optim.Adam(params, lr=1e-3),
    "rmsprop": lambda params: torch.optim.RMSprop(params, lr=1e-3, momentum=0.5),
}


@dataclass(frozen=True)
class TrainParams:
    """``train_zoo`` section of params.yaml."""

    shards: tuple[int, ...]
    epochs: int = 100
    pool_size: int = 60000
    perm_seed: int = 20
    test_batch: int = 256  # measured: 2x faster than 1000 on one thread

    def check(self, where: str) -> None:
        require(self.epochs >= 1, f"{where}.epochs", f"must be at least 1, got {self.epochs}")
        require(self.pool_size >= 4, f"{where}.pool_size", f"must be at least 4, got {self.pool_size}")
        require(self.test_batch >= 1, f"{where}.test_batch", f"must be at least 1, got {self.test_batch}")
        require(self.perm_seed >= 0, f"{where}.perm_seed", f"must be a non-negative int, got {self.perm_seed}")
        require(len(set(self.shards)) == len(self.shards), f"{where}.shards", "has duplicates")


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


@dataclass(frozen=True)
class TrainResult:
    """What a worker sends back to the driver."""

    model_id: int
    state: dict[str, np.ndarray]
    test_acc: float
    train_loss: float
    seconds: float
    diverged: bool


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


def load_train_data(path: str, pool_size: int, perm_seed: int, test_batch: int) -> TrainData:
    """Load and normalise MNIST once per worker process, again whenever the file changes.

    The cache key includes the file's size and modification time, so a long-lived (Dask)
    worker never trains on a previous run's data.
    """
    stat = Path(path).stat() if Path(path).exists() else None
    key = (stat.st_size, stat.st_mtime_ns) if stat else None
    return _load_train_data(path, key, pool_size, perm_seed, test_batch)


@functools.lru_cache(maxsize=2)
def _load_train_data(path: str, file_key: object, pool_size: int, perm_seed: int, test_batch: int) -> TrainData:
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
        train_x=torch.from_numpy(mnist_data.normalise(m.train_images)),
        train_y=torch.from_numpy(m.train_labels.astype(np.int64)),
        test_x=torch.from_numpy(mnist_data.normalise(m.test_images)),
        test_y=torch.from_numpy(m.test_labels.astype(np.int64)),
        subsets=subsets,
        test_batch=test_batch,
    )


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    """Top-1 accuracy of ``model`` on (x, y) in percent."""
    model.eval()
    correct = sum(int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum()) for i in range(0, len(x), batch))
    return 100.0 * correct / len(x)


def train_model(spec: TrainSpec, data: TrainData) -> TrainResult:
    """Train one model as the official code does and measure its test accuracy."""
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same arithmetic whatever the executor: results never depend on it
    try:
        torch.manual_seed(spec.torch_seed)  # initialisation and dropout masks
        shuffle = torch.Generator().manual_seed(spec.torch_seed + 1)
        model = MnistNet(spec.net)
        opt = OPTIMISERS[spec.alg](model.parameters())
        idx = data.subsets[spec.split]
        loss_sum, n_seen = 0.0, 0
        for _ in range(spec.epochs):
            model.train()
            loss_sum, n_seen = 0.0, 0
            order = idx[torch.randperm(len(idx), generator=shuffle)]
            for batch in order.split(spec.bs):
                opt.zero_grad(set_to_none=True)
                loss = nn.functional.nll_loss(model(data.train_x[batch]), data.train_y[batch])
                loss.backward()
                opt.step()
                loss_sum += float(loss.detach()) * len(batch)
                n_seen += len(batch)
        state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
        diverged = not all(np.isfinite(v).all() for v in state.values())
        acc = evaluate(model, data.test_x, data.test_y, data.test_batch)
        train_loss = loss_sum / max(n_seen, 1)
    finally:
        torch.set_num_threads(threads)
    return TrainResult(
        spec.model_id,
        state,
        acc,
        train_loss if math.isfinite(train_loss) else float("nan"),
        time.perf_counter() - start,
        diverged,
    )


def train_task(spec: TrainSpec, data_path: str, pool_size: int, perm_seed: int, test_batch: int) -> TrainResult:
    """Worker entry point: load (cached) data, then train one model."""
    return train_model(spec, load_train_data(data_path, pool_size, perm_seed, test_batch))

"""The offline surrogate of the ImageNet family zoo: torchvision's own classes, small inputs, brief training.

Every architecture is ``torchvision.models.get_model(name, num_classes=10)``: the
exact torchvision class and depth of the ImageNet model, with a 10-way output
layer. Inputs are MNIST digits padded to ``image_size`` (32) and copied to three
channels, so the networks run at about 2% of their ImageNet cost. Each
(architecture, seed) model gets ``steps`` SGD steps on its own random batches of
MNIST training images, then answers the fixed query pool (the first ``pool``
MNIST test images) with log-probabilities. These are surrogates of the paper's
pretrained models, never the paper's experiment: the families differ here in
architecture and in their short training, not in ImageNet training.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torchvision.models import get_model

from kennen.data import MEAN, STD


@dataclass(frozen=True)
class SurrogateTask:
    """One (architecture, seed) model of the offline zoo; small and picklable."""

    family: str
    name: str
    seed: int
    torch_seed: int


def to_rgb(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 [N, 28, 28] -> normalised float32 [N, 3, size, size] (zero-padded, grey copied to RGB)."""
    x = (torch.from_numpy(images).float() / 255.0 - MEAN) / STD
    pad = size - 28
    x = nn.functional.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2), value=(0.0 - MEAN) / STD)
    return x[:, None].expand(-1, 3, -1, -1).contiguous()


class PixelInput(nn.Module):
    """A surrogate as a function of MNIST pixels: [N, 1, 28, 28] in [0, 1] -> logits, preprocessed as :func:`to_rgb`.

    The attack works in this space, so an adversarial image is always a valid greyscale digit.
    """

    def __init__(self, model: nn.Module, image_size: int):
        super().__init__()
        self.model = model
        self.pad = image_size - 28

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = (x - MEAN) / STD
        a, b = self.pad // 2, self.pad - self.pad // 2
        h = nn.functional.pad(h, (a, b, a, b), value=(0.0 - MEAN) / STD)
        return self.model(h.expand(-1, 3, -1, -1))


def size(name: str) -> int:
    """Parameter count of the 10-class ``name``, built on the meta device (no memory, no time): a cost proxy."""
    with torch.device("meta"):
        return sum(p.numel() for p in get_model(name, weights=None, num_classes=10).parameters())


def build(name: str, seed: int) -> nn.Module:
    """The torchvision architecture ``name`` with a 10-class head, initialised from ``seed``."""
    torch.manual_seed(seed)
    return get_model(name, weights=None, num_classes=10)


def train_and_answer(
    task: SurrogateTask,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    queries: np.ndarray,
    query_labels: np.ndarray,
    image_size: int,
    steps: int,
    batch: int,
    lr: float,
    momentum: float,
) -> dict:
    """Train one surrogate briefly, then its log-probabilities [P, 10] on the query pool and its accuracy there (%)."""
    start = time.perf_counter()
    torch.set_num_threads(1)
    model = build(task.name, task.torch_seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(task.torch_seed + 1)
    y_all = torch.from_numpy(train_labels.astype(np.int64))
    model.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(len(train_images), (batch,), generator=gen)
        x = to_rgb(train_images[idx.numpy()], image_size)
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y_all[idx])
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    with torch.inference_mode():
        out = torch.cat(
            [torch.log_softmax(model(to_rgb(queries[i : i + 100], image_size)), 1) for i in range(0, len(queries), 100)]
        )
    return {
        "family": task.family,
        "name": task.name,
        "seed": task.seed,
        "outputs": out.numpy().astype(np.float32),
        "query_acc": round(100.0 * float((out.argmax(1).numpy() == query_labels).mean()), 2),
        "final_loss": float(np.mean(losses[-5:])) if losses else float("nan"),
        "seconds": time.perf_counter() - start,
    }

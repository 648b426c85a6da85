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
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torchvision.models import VGG, get_model

from kennen.data import MEAN, STD
from kennen.errors import KennenError
from kennen.io import atomic_path
from kennen.seeds import Purpose, derive, torch_generator


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


FOLD = 49  # AdaptiveAvgPool2d((7, 7)) copies VGG's 1x1 feature map 49 times


def size(name: str) -> int:
    """Parameter count of the 10-class ``name``, built on the meta device (no memory, no time): a cost proxy."""
    with torch.device("meta"):
        return sum(p.numel() for p in get_model(name, weights=None, num_classes=10).parameters())


def surrogate_tasks(models: list[tuple[str, str]], seeds: int, base_seed: int) -> list[SurrogateTask]:
    """Every (architecture, seed) model of the zoo, in params order, each with its own torch seed."""
    return [
        SurrogateTask(family, name, s, derive(base_seed, Purpose.IMAGENET_ZOO, i, s))
        for i, (family, name) in enumerate(models)
        for s in range(seeds)
    ]


def fold_vgg(model: nn.Module) -> nn.Linear | None:
    """Fold a VGG's first classifier layer for inputs of 32-63 pixels; the folded layer, or None if not a VGG.

    There VGG's features end in a 1x1 map that ``AdaptiveAvgPool2d((7, 7))`` copies 49
    times, so the 25,088-wide first layer sees each channel 49 times. Summing each
    channel's 49 weight columns gives a 512-wide layer computing the same function
    (exactly, up to rounding) at 1/49 of the cost and memory. Under SGD without weight
    decay the 49 copies receive identical gradients, so the folded weight trained at
    ``FOLD`` times the learning rate follows the same trajectory (tested): a
    reparametrisation of the torchvision model, not a different one. The input size is
    checked at every forward pass.
    """
    if not isinstance(model, VGG):
        return None
    first = model.classifier[0]
    channels = first.in_features // FOLD
    folded = nn.Linear(channels, first.out_features)
    with torch.no_grad():
        folded.weight.copy_(first.weight.view(first.out_features, channels, FOLD).sum(-1))
        folded.bias.copy_(first.bias)
    model.classifier[0] = folded
    model.avgpool = _OneByOne()
    return folded


class _OneByOne(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (1, 1):
            raise ValueError(f"folded VGG needs a 1x1 feature map (inputs of 32-63 pixels), got {tuple(x.shape[-2:])}")
        return x


def build(name: str, seed: int, image_size: int | None = None) -> nn.Module:
    """The torchvision architecture ``name`` with a 10-class head, initialised from ``seed``.

    With ``image_size`` below 64, a VGG is folded (:func:`fold_vgg`) after initialisation.
    """
    torch.manual_seed(seed)
    model = get_model(name, weights=None, num_classes=10)
    if image_size is not None and image_size < 64:
        fold_vgg(model)
    return model


def optimiser(model: nn.Module, lr: float, momentum: float) -> torch.optim.SGD:
    """SGD over ``model``; a folded VGG layer's weight at ``FOLD`` x ``lr`` (see :func:`fold_vgg`)."""
    folded = model.classifier[0].weight if isinstance(model, VGG) and isinstance(model.avgpool, _OneByOne) else None
    rest = [p for p in model.parameters() if p is not folded]
    groups = [{"params": rest}] + ([{"params": [folded], "lr": lr * FOLD}] if folded is not None else [])
    return torch.optim.SGD(groups, lr=lr, momentum=momentum)


@dataclass(frozen=True)
class Recipe:
    """How a surrogate is trained: ``steps`` SGD steps of ``batch`` random training digits at ``image_size``."""

    image_size: int
    steps: int
    batch: int
    lr: float
    momentum: float


def train_surrogate(
    task: SurrogateTask, train_images: np.ndarray, train_labels: np.ndarray, recipe: Recipe
) -> tuple[nn.Module, list[float]]:
    """One surrogate trained single-threaded from its seed (deterministic); the model in eval mode and its losses."""
    torch.set_num_threads(1)
    model = build(task.name, task.torch_seed, recipe.image_size)
    opt = optimiser(model, recipe.lr, recipe.momentum)
    gen = torch_generator(task.torch_seed, Purpose.BATCHES)
    y_all = torch.from_numpy(train_labels.astype(np.int64))
    model.train()
    losses = []
    for _ in range(recipe.steps):
        idx = torch.randint(len(train_images), (recipe.batch,), generator=gen)
        x = to_rgb(train_images[idx.numpy()], recipe.image_size)
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y_all[idx])
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return model.eval(), losses


@torch.inference_mode()
def answer_pool(model: nn.Module, queries: np.ndarray, image_size: int, batch: int = 100) -> torch.Tensor:
    """Log-probabilities [P, 10] of ``model`` on the uint8 query digits."""
    return torch.cat(
        [torch.log_softmax(model(to_rgb(queries[i : i + batch], image_size)), 1) for i in range(0, len(queries), batch)]
    )


def train_and_answer(
    task: SurrogateTask,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    queries: np.ndarray,
    query_labels: np.ndarray,
    recipe: Recipe,
    weights_dir: str | None = None,
) -> dict:
    """Train one surrogate, then its log-probabilities [P, 10] on the query pool and its accuracy there (%).

    With ``weights_dir``, a seed-0 model's weights are also written there (``<name>.safetensors``,
    atomically), for the attack stage.
    """
    start = time.perf_counter()
    model, losses = train_surrogate(task, train_images, train_labels, recipe)
    out = answer_pool(model, queries, recipe.image_size)
    if weights_dir is not None and task.seed == 0:
        save_weights(model, Path(weights_dir) / f"{task.name}.safetensors")
    return {
        "family": task.family,
        "name": task.name,
        "seed": task.seed,
        "outputs": out.numpy().astype(np.float32),
        "query_acc": round(100.0 * float((out.argmax(1).numpy() == query_labels).mean()), 2),
        "final_loss": float(np.mean(losses[-5:])) if losses else float("nan"),
        "seconds": time.perf_counter() - start,
    }


def save_weights(model: nn.Module, path: Path) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))


def load_surrogate(name: str, folder: Path, image_size: int) -> nn.Module:
    """A seed-0 surrogate written by :func:`train_and_answer`, in eval mode, frozen."""
    path = folder / f"{name}.safetensors"
    if not path.is_file():
        raise KennenError(f"{path}: no weights for {name} (run `dvc repro imagenet_zoo`)")
    model = build(name, 0, image_size)
    model.load_state_dict(load_file(str(path)))
    return model.eval().requires_grad_(False)

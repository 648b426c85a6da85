"""The attack's models and images: the offline zoo's seed-0 surrogates, or pretrained ImageNet classifiers.

A *source* turns a model name into a frozen module mapping pixel-space images (in
[0, 1]) to logits, loaded once per worker process. Offline, that is the surrogate
``imagenet_zoo`` wrote to ``data/imagenet/weights`` behind :class:`PixelInput` (MNIST
digits [N, 1, 28, 28]); pretrained, torchvision's ImageNet weights behind each
weights' own normalisation (images [N, 3, 224, 224]).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.io import ImageReadMode, decode_image
from torchvision.models import get_model_weights
from torchvision.transforms import v2

from kennen.errors import KennenError
from kennen.imagenet.offline import PixelInput, load_surrogate
from kennen.imagenet.pretrained import IMAGE_SUFFIXES, load_pretrained
from kennen.imagenet.probe import draw, family_attribute, features, fit_predict
from kennen.io import read_csv
from kennen.metamodel.kennen_o import Optimiser
from kennen.seeds import Purpose, StableRng, derive


@dataclass(frozen=True)
class OfflineSource:
    """The surrogates in ``folder`` (``imagenet_zoo``'s ``weights/``), as functions of MNIST pixels."""

    folder: str
    image_size: int

    @functools.cache  # noqa: B019 - one copy per worker process, for the stage's lifetime
    def load(self, name: str) -> nn.Module:
        return PixelInput(load_surrogate(name, Path(self.folder), self.image_size), self.image_size)


class _Normalised(nn.Module):
    def __init__(self, model: nn.Module, mean: list[float], std: list[float]):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


@dataclass(frozen=True)
class PretrainedSource:
    """torchvision's ImageNet classifiers, each behind its weights' own normalisation."""

    download: bool

    @functools.cache  # noqa: B019 - one copy per worker process
    def load(self, name: str) -> nn.Module:
        t = get_model_weights(name).DEFAULT.transforms()
        model = load_pretrained(name, self.download).eval().requires_grad_(False)
        return _Normalised(model, list(t.mean), list(t.std))


def pretrained_images(
    folder: str, labels: str, n: int, crop: int = 224, resize: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` labelled images (``labels``: CSV with columns file,label), resized and centre-cropped, in [0, 1]."""
    path = Path(labels)
    if not labels or not path.is_file():
        raise KennenError(f"imagenet_attack.labels: need a CSV file with columns file,label, got {labels!r}")
    rows = read_csv(path)
    if not rows or not {"file", "label"} <= set(rows[0]):
        raise KennenError(f"imagenet_attack.labels: {path} needs the columns file,label")
    if len(rows) < n:
        raise KennenError(f"imagenet_attack.images: {n} exceeds the {len(rows)} labelled images of {path}")
    prep = v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(crop), v2.ToDtype(torch.float32, scale=True)])
    xs, ys = [], []
    for r in rows[:n]:
        image = Path(folder) / r["file"]
        if not image.is_file() or image.suffix not in IMAGE_SUFFIXES:
            raise KennenError(f"imagenet_attack.labels: {image} is not an image file")
        xs.append(prep(decode_image(str(image), mode=ImageReadMode.RGB)))
        ys.append(int(r["label"]))
    return torch.stack(xs), torch.tensor(ys)


def offline_images(
    test_images: np.ndarray, test_labels: np.ndarray, pool: int, n: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` MNIST test digits drawn outside the query pool (the first ``pool``), as [n, 1, 28, 28] in [0, 1]."""
    rest = len(test_images) - pool
    if n > rest:
        raise KennenError(f"imagenet_attack.images: {n} exceeds the {rest} test digits outside the query pool")
    idx = pool + draw(rest, n, StableRng(seed, Purpose.ATTACK_IMAGES))
    x = torch.from_numpy(test_images[idx]).float()[:, None] / 255.0
    return x, torch.from_numpy(test_labels[idx].astype(np.int64))


def probe_predictions(
    outputs: np.ndarray, names: list[str], fams: list[str], families: list[str], targets: list[str],
    feature: str, n_queries: int, hidden: int, opt: Optimiser, seed: int,
) -> dict[str, str]:  # fmt: skip
    """The probe's family for each target, trained on every zoo model of the *other* architectures.

    As in the probe stage's folds, the target's architecture is never seen in training;
    the prediction reads the target's outputs on ``n_queries`` query images (one draw).
    """
    attr = family_attribute(families)
    q = draw(outputs.shape[1], n_queries, StableRng(seed, Purpose.PROBE, 99))
    x = features(outputs[:, q], feature)
    y = torch.tensor([families.index(f) for f in fams])
    out = {}
    for k, name in enumerate(targets):
        train = [i for i, n in enumerate(names) if n != name]
        test = [names.index(name)]  # the target itself: the zoo's first (seed-0) model of its architecture
        pred = fit_predict(x[train], y[train], x[test], attr, hidden, opt, derive(seed, Purpose.METAMODEL, 99, k))
        out[name] = families[int(pred[0])]
    return out

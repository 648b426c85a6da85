"""The MNIST-NETS network template (paper §2; official code ``mnist.py``, class ``mnet``).

    conv1  1->10, ks x ks, no padding -> [max-pool 2] -> act
    conv2 10->20, ks x ks, no padding -> [max-pool 2] -> act
    (n_conv - 2) x [conv 20->20, ks x ks, same padding -> act]        (no pooling)
    flatten                         (500, 320, 11520 or 8000 features)
    fc1 -> 50 -> act -> [dropout 0.5]
    (n_fc - 2) x [linear 50->50 -> act -> [dropout 0.5]]
    linear 50->10 -> log_softmax

Deliberate differences from the official code, both following the paper's text:

- The extra conv and fc blocks use the sampled activation; the official
  ``convblock``/``linearblock`` hard-code ReLU there.
- As in the official code, one activation module is shared by all blocks, so a
  PReLU network has a single learnable slope (hence "PReLU adds 1 parameter").

Dropout masks can be drawn from a generator of the model's own
(:meth:`MnistNet.seed_dropout`) instead of torch's global one, so that a model's
masks depend on its seed alone and the fused trainer (``kennen.zoo.fused``) can
draw exactly the masks the per-model trainer draws.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kennen.attributes import n_par_class

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "prelu": nn.PReLU, "elu": nn.ELU, "tanh": nn.Tanh}
CONV_CHANNELS = (10, 20)
FC_WIDTH = 50
DROPOUT = 0.5


def dropout_mask(shape: torch.Size, p: float, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Inverted-dropout mask: 0 with probability ``p``, else ``1 / (1 - p)``; one draw of ``shape`` from ``generator``."""
    keep = torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(1.0 - p, generator=generator)
    return keep / (1.0 - p)


class Dropout(nn.Dropout):
    """``nn.Dropout`` that draws its masks from ``generator`` when one is set (training mode only)."""

    generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.generator is None:
            return super().forward(x)
        return x * dropout_mask(x.shape, self.p, self.generator, x)


@dataclass(frozen=True)
class NetConfig:
    """The architecture attributes of one zoo model (Table 1, group ``arch``)."""

    act: str
    drop: bool
    pool: bool
    ks: int
    n_conv: int
    n_fc: int

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> NetConfig:
        """The architecture of a zoo table row (or any mapping with at least these keys)."""
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})


def feature_size(ks: int, pool: bool) -> int:
    """Flattened size after conv2 (extra convs keep the spatial size)."""
    side = 28 - ks + 1
    side = side // 2 if pool else side
    side = side - ks + 1
    side = side // 2 if pool else side
    return CONV_CHANNELS[1] * side * side


class MnistNet(nn.Module):
    """One MNIST-NETS classifier; ``forward`` returns log-probabilities [B, 10]."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        self.dropout_generator: torch.Generator | None = None
        act = ACTIVATIONS[cfg.act]()  # shared by every block, as in the official code
        pool = [nn.MaxPool2d(2)] if cfg.pool else []
        c1, c2 = CONV_CHANNELS
        layers: list[nn.Module] = [nn.Conv2d(1, c1, cfg.ks), *pool, act, nn.Conv2d(c1, c2, cfg.ks), *pool, act]
        for _ in range(cfg.n_conv - 2):
            layers += [nn.Conv2d(c2, c2, cfg.ks, padding=(cfg.ks - 1) // 2), act]
        self.features = nn.Sequential(*layers)
        drop = [Dropout(DROPOUT)] if cfg.drop else []  # one module, shared like act
        fc: list[nn.Module] = [nn.Linear(feature_size(cfg.ks, cfg.pool), FC_WIDTH), act, *drop]
        for _ in range(cfg.n_fc - 2):
            fc += [nn.Linear(FC_WIDTH, FC_WIDTH), act, *drop]
        fc.append(nn.Linear(FC_WIDTH, 10))
        self.classifier = nn.Sequential(*fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, 1, 28, 28] normalised images
        return torch.log_softmax(self.classifier(self.features(x).flatten(1)), dim=1)

    def seed_dropout(self, generator: torch.Generator) -> None:
        """Draw every dropout mask from ``generator``, in forward order: one [B, 50] draw per fc block."""
        self.dropout_generator = generator
        for m in self.modules():
            if isinstance(m, Dropout):
                m.generator = generator

    def layers(self) -> tuple[list[nn.Conv2d], list[nn.Linear], nn.Parameter | None]:
        """The convolutions and linear layers in forward order, and the PReLU slope (None for other activations)."""
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        fcs = [m for m in self.classifier if isinstance(m, nn.Linear)]
        prelu = [m for m in self.modules() if isinstance(m, nn.PReLU)]
        return convs, fcs, (prelu[0].weight if prelu else None)


@functools.cache
def count_params(cfg: NetConfig) -> int:
    """Number of learnable parameters of a single network with this configuration."""
    return sum(p.numel() for p in MnistNet(cfg).parameters())


def n_par(cfg: NetConfig) -> int:
    """The derived ``n_par`` attribute of a single model."""
    return n_par_class(count_params(cfg))

"""kennen-o (paper §5): an MLP from query outputs to all 12 attributes at once.

    input  [N, n_queries * 10]   encoded outputs (``encode.py``), standardised with training statistics
    body   Linear(., hidden) - ReLU - Linear(hidden, hidden) - ReLU      (official ``mlp_3_1000``)
    heads  nn.ModuleDict: one Linear(hidden, #classes) per attribute

trained on the sum of the 12 cross-entropies. The official code keeps its heads in
a plain ``dict``, so they are never registered, never trained and never saved;
here they are a ``ModuleDict`` (a test checks every parameter gets a gradient).
Standardising the inputs is our addition: the encodings mix log-probabilities
near 0 with -90 floors, and both optimiser settings train better on unit scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from kennen.attributes import ATTRIBUTES, Attribute
from kennen.config import require
from kennen.errors import KennenError
from kennen.metamodel.encode import OUTPUT_TYPES, encode
from kennen.metamodel.metrics import balanced_accuracy

METAMODEL_OFFSET = 5


@dataclass(frozen=True)
class Optimiser:
    """One optimiser setting for the metamodel."""

    name: str
    lr: float
    weight_decay: float = 0.0
    momentum: float = 0.0
    batch: int = 100
    epochs: int = 200

    def check(self, where: str) -> None:
        require(self.name in ("sgd", "adam"), f"{where}.name", f"expected 'sgd' or 'adam', got {self.name!r}")
        require(self.lr > 0, f"{where}.lr", f"must be positive, got {self.lr}")
        require(self.weight_decay >= 0, f"{where}.weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(self.momentum >= 0, f"{where}.momentum", f"must be >= 0, got {self.momentum}")
        require(self.batch >= 1 and self.epochs >= 1, f"{where}", "batch and epochs must be at least 1")

    def build(self, params) -> torch.optim.Optimizer:
        if self.name == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)


class KennenO(nn.Module):
    """The kennen-o metamodel; ``forward`` returns logits per attribute key."""

    def __init__(self, n_inputs: int, hidden: int, attributes: tuple[Attribute, ...] = ATTRIBUTES):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_inputs))
        self.register_buffer("std", torch.ones(n_inputs))
        self.body = nn.Sequential(nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.heads = nn.ModuleDict({a.key: nn.Linear(hidden, a.n_classes) for a in attributes})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        # x: [B, n_queries * 10]
        h = self.body((x - self.mean) / self.std)
        return {key: head(h) for key, head in self.heads.items()}


def targets(boxes: list[dict[str, Any]]) -> torch.Tensor:
    """Label indices [N, 12] in ATTRIBUTES order."""
    return torch.tensor([[a.index(b[a.key]) for a in ATTRIBUTES] for b in boxes], dtype=torch.long)


def loss_fn(logits: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    """Sum over attributes of the mean cross-entropy (the paper's objective)."""
    return sum(nn.functional.cross_entropy(logits[a.key], y[:, i]) for i, a in enumerate(ATTRIBUTES))


def new_model(x: torch.Tensor, hidden: int, seed: int) -> KennenO:
    """A freshly initialised kennen-o (seeded) whose input standardisation comes from features ``x`` [N, D]."""
    torch.manual_seed(seed)
    model = KennenO(x.shape[1], hidden)
    model.mean.copy_(x.mean(0))
    model.std.copy_(x.std(0).clamp_min(1e-3) if len(x) > 1 else torch.ones(x.shape[1]))
    return model


def train_epochs(
    model: KennenO,
    optimiser: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch: int,
    epochs: int,
    shuffle: torch.Generator,
    on_epoch=None,
) -> None:
    """Minibatch training of ``model`` on features ``x`` [N, D] and labels ``y`` [N, 12]."""
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for idx in torch.randperm(len(x), generator=shuffle).split(batch):
            optimiser.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(idx)
        if on_epoch is not None:
            on_epoch(epoch, total / len(x))
    model.eval()


def fit(x: torch.Tensor, y: torch.Tensor, hidden: int, opt: Optimiser, seed: int, on_epoch=None) -> KennenO:
    """Train kennen-o on features ``x`` [N, D] and labels ``y`` [N, 12]."""
    model = new_model(x, hidden, seed)
    optimiser = opt.build(model.parameters())
    train_epochs(model, optimiser, x, y, opt.batch, opt.epochs, torch.Generator().manual_seed(seed), on_epoch)
    return model


@torch.inference_mode()
def predict(model: KennenO, x: torch.Tensor) -> np.ndarray:
    """Predicted label indices [N, 12] in ATTRIBUTES order."""
    logits = model(x)
    return torch.stack([logits[a.key].argmax(1) for a in ATTRIBUTES], 1).numpy()


def accuracies(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Class-balanced accuracy per attribute (``acc.<key>``) and their plain mean (``acc.mean``)."""
    acc = {f"acc.{a.key}": round(balanced_accuracy(y_true[:, i], y_pred[:, i]), 2) for i, a in enumerate(ATTRIBUTES)}
    acc["acc.mean"] = round(float(np.mean(list(acc.values()))), 2)
    return acc


def features(outputs: np.ndarray, n_queries: int, output: str) -> torch.Tensor:
    """Metamodel input [N, n_queries * 10] from log-probabilities [N, Q, 10]: first ``n_queries`` queries, encoded."""
    if n_queries > outputs.shape[1]:
        raise KennenError(
            f"kennen_o.n_queries: {n_queries} exceeds the {outputs.shape[1]} stored queries (queries.n_max)"
        )
    x = encode(torch.from_numpy(np.ascontiguousarray(outputs[:, :n_queries])), output)
    return x.reshape(len(x), -1)


@dataclass(frozen=True)
class Result:
    """A trained kennen-o and its evaluation on the test boxes."""

    model: KennenO
    y_true: np.ndarray  # [N_test, 12]
    y_pred: np.ndarray
    metrics: dict[str, float]


def train_and_evaluate(
    outputs: np.ndarray,
    boxes: list[dict[str, Any]],
    split: dict[str, list[int]],
    n_queries: int,
    output: str,
    hidden: int,
    opt: Optimiser,
    seed: int,
    n_train: int | None = None,
    on_epoch=None,
) -> Result:
    """kennen-o on one split: train on ``split['train']`` (its first ``n_train``), test on ``split['test']``."""
    train_ids, test_ids = split["train"], split["test"]
    if n_train is not None:
        # A random subset, fixed by the seed, so that smaller training sets are nested in larger ones.
        order = torch.randperm(len(train_ids), generator=torch.Generator().manual_seed(seed))
        train_ids = sorted(train_ids[i] for i in order[:n_train].tolist())
    x = features(outputs, n_queries, output)
    y = targets(boxes)
    model = fit(x[train_ids], y[train_ids], hidden, opt, seed + METAMODEL_OFFSET, on_epoch)
    y_true, y_pred = y[test_ids].numpy(), predict(model, x[test_ids])
    return Result(model, y_true, y_pred, accuracies(y_true, y_pred))


@dataclass(frozen=True)
class KennenOParams:
    """``kennen_o`` section of params.yaml."""

    optimisers: dict[str, Optimiser]
    n_queries: int = 100
    output: str = "prob"
    hidden: int = 1000
    optimiser: str = "default"

    def check(self, where: str) -> None:
        require(self.n_queries >= 1, f"{where}.n_queries", f"must be at least 1, got {self.n_queries}")
        require(self.hidden >= 1, f"{where}.hidden", f"must be at least 1, got {self.hidden}")
        require(
            self.output in OUTPUT_TYPES,
            f"{where}.output",
            f"expected one of {', '.join(OUTPUT_TYPES)}, got {self.output!r}",
        )
        require(
            self.optimiser in self.optimisers,
            f"{where}.optimiser",
            f"{self.optimiser!r} is not one of the settings in {where}.optimisers ({', '.join(self.optimisers)})",
        )

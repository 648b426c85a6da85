"""kennen-o (paper §5): an MLP from query outputs to all 12 attributes at once.

    input  [N, n_queries * 10]   encoded outputs (``encode.py``), standardised with training statistics
    body   Linear(., hidden) - ReLU - Linear(hidden, hidden) - ReLU      (official ``mlp_3_1000``)
    heads  nn.ModuleDict: one Linear(hidden, #classes) per attribute

trained on the sum of the 12 cross-entropies. The official code keeps its heads in
a plain ``dict``, so they are never registered, never trained and never saved;
here they are a ``ModuleDict`` (a test checks every parameter gets a gradient).
Standardising the inputs is our addition: the encodings mix log-probabilities
near 0 with -90 floors, and both optimiser settings train better on unit scale.

Early stopping (``EarlyStop``, issue 15) is ours too, and switchable: the paper
and the official code train a fixed 200 epochs. With ``val_fraction > 0`` a seeded
carve of the *training* boxes is held out, the validation mean accuracy is read
after every epoch, training stops ``patience`` epochs after the best one and the
best epoch's weights are restored; the test boxes are never read before the final
prediction. ``val_fraction: 0`` is the fixed schedule, update for update as before.
Many trainings at once (seeds, settings, sweep points) run in parallel through
``kennen.metamodel.runs``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from kennen.attributes import ATTRIBUTES, Attribute
from kennen.config import bounded, require
from kennen.errors import KennenError
from kennen.metamodel.calibration import carve_rows
from kennen.metamodel.encode import OUTPUT_TYPES, encode
from kennen.metamodel.metrics import balanced_accuracy
from kennen.seeds import Purpose, derive

BOXES = ("final", "checkpoints")  # a metamodel's training boxes: final models only, or with their checkpoints


def model_seed(base: int, replica: int = 0) -> int:
    """The seed of a kennen-o model (initialisation, batch order, validation carve); replica 0 is the headline."""
    return derive(base, Purpose.METAMODEL, replica)


@dataclass(frozen=True)
class Optimiser:
    """One optimiser setting for the metamodel."""

    name: str
    lr: float
    weight_decay: float = 0.0
    momentum: float = 0.0
    batch: int = bounded(100_000, 100)
    epochs: int = bounded(10_000, 200)

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


@dataclass(frozen=True)
class EarlyStop:
    """Early stopping on a validation carve of the training boxes (ours; the paper trains a fixed schedule).

    ``val_fraction`` of the training boxes (whole configurations, seeded) is held out; after every epoch the
    mean class-balanced accuracy on them is read; training ends ``patience`` epochs after the
    best one (or at ``Optimiser.epochs``) and the best epoch's weights are restored. A carve
    of fewer than ``min_val`` boxes is not made: the full schedule runs on all boxes.
    ``val_fraction: 0`` turns it off. With ``refit`` the weights come from a second training on
    all training boxes (same seed) for the best epoch count, so that no box is lost to the carve.
    """

    val_fraction: float = 0.0
    patience: int = bounded(10_000, 20)
    min_val: int = bounded(100_000, 20)
    refit: bool = False  # then retrain on all training boxes for the best epoch count (the carve's boxes back in)

    def check(self, where: str) -> None:
        require(0 <= self.val_fraction < 1, f"{where}.val_fraction", f"must be in [0, 1), got {self.val_fraction}")
        require(self.patience >= 1, f"{where}.patience", f"must be at least 1, got {self.patience}")
        require(self.min_val >= 1, f"{where}.min_val", f"must be at least 1, got {self.min_val}")

    def carve(
        self, n: int, seed: int, groups: Sequence[Any] | None = None, n_boxes: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(fitting rows, validation rows) of ``n`` training rows, both sorted; None when no carve is made.

        ``groups``: the rows' configurations, held out whole (``calibration.carve_rows``). ``n_boxes``: only
        the first ``n_boxes`` rows are boxes of final models, the rest are checkpoint boxes of their models
        (``runs.training_rows``). The carve is drawn on the final boxes alone, as without checkpoints, and
        validates on them alone (a checkpoint is not what a metamodel is tested on); the checkpoint rows of
        a held-out configuration are left out of the fit.
        """
        n_final = n if n_boxes is None else n_boxes
        if n_final < n and groups is None:
            raise ValueError("EarlyStop.carve: checkpoint rows need their groups")
        n_val = round(self.val_fraction * n_final)
        if n_val < self.min_val or n_final - n_val < 1:
            return None
        keys = None if groups is None else list(groups)[:n_final]
        fit_rows, val_rows = carve_rows(n_final, n_val, derive(seed, Purpose.CARVE), keys)
        if len(val_rows) < self.min_val:  # whole configurations can leave less (none, for one configuration)
            return None
        if n_final < n:
            held = {keys[r] for r in val_rows}
            fit_rows += [r for r in range(n_final, n) if groups[r] not in held]
        return torch.tensor(fit_rows, dtype=torch.long), torch.tensor(val_rows, dtype=torch.long)


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


def configs(boxes: list[dict[str, Any]], ids: Sequence[int]) -> tuple[Any, ...]:
    """The configuration of each box in ``ids``: the groups a validation carve holds out whole."""
    return tuple(boxes[i]["config"] for i in ids)


def loss_fn(logits: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    """Sum over the heads (attribute order; column i of ``y`` [N, heads] is head i) of the mean cross-entropy
    (the paper's objective)."""
    return sum(nn.functional.cross_entropy(z, y[:, i]) for i, z in enumerate(logits.values()))


def new_model(x: torch.Tensor, hidden: int, seed: int, attributes: tuple[Attribute, ...] = ATTRIBUTES) -> KennenO:
    """A freshly initialised kennen-o (seeded) whose input standardisation comes from features ``x`` [N, D]
    (``attributes``: its heads; the family probe has one)."""
    torch.manual_seed(seed)
    model = KennenO(x.shape[1], hidden, attributes)
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
    """Minibatch training of ``model`` on features ``x`` [N, D] and labels ``y`` [N, heads] (12 for kennen-o)."""
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


def fit(
    x: torch.Tensor,
    y: torch.Tensor,
    hidden: int,
    opt: Optimiser,
    seed: int,
    on_epoch=None,
    stop: EarlyStop | None = None,
    groups: Sequence[Any] | None = None,
) -> KennenO:
    """Train kennen-o on features ``x`` [N, D] and labels ``y`` [N, 12] (early stopping with ``stop``, its carve
    holding out whole ``groups``: the rows' configurations)."""
    return fit_curve(x, y, hidden, opt, seed, on_epoch, stop, groups)[0]


@dataclass
class Curve:
    """What one training did: train loss per epoch, validation mean accuracy per epoch (early stopping only)."""

    loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    best_epoch: int | None = None  # 0-based epoch whose weights were kept (early stopping only)
    n_fit: int = 0  # training boxes the weights were fitted on
    n_val: int = 0  # training boxes held out for early stopping
    refit_epochs: int = 0  # epochs of the refit on all training boxes (``EarlyStop.refit``)

    @property
    def epochs(self) -> int:
        return len(self.loss)


def fit_curve(
    x: torch.Tensor,
    y: torch.Tensor,
    hidden: int,
    opt: Optimiser,
    seed: int,
    on_epoch=None,
    stop: EarlyStop | None = None,
    groups: Sequence[Any] | None = None,
    n_boxes: int | None = None,
) -> tuple[KennenO, Curve]:
    """``fit`` that also returns the training curve (``n_boxes``: ``EarlyStop.carve``).

    Without a carve (``stop`` None, off, or too few boxes) this is the fixed schedule: the same
    initialisation, batch order and updates as before early stopping existed.
    """
    curve = Curve()

    def hook(epoch: int, loss: float) -> None:
        curve.loss.append(loss)
        if on_epoch is not None:
            on_epoch(epoch, loss)

    rows = stop.carve(len(x), seed, groups, n_boxes) if stop is not None else None
    shuffle = torch.Generator().manual_seed(seed)
    if rows is None:
        curve.n_fit = len(x)
        model = new_model(x, hidden, seed)
        train_epochs(model, opt.build(model.parameters()), x, y, opt.batch, opt.epochs, shuffle, hook)
        return model, curve
    fit_rows, val_rows = rows
    x_fit, y_fit, x_val, y_val = x[fit_rows], y[fit_rows], x[val_rows], y[val_rows].numpy()
    curve.n_fit, curve.n_val = len(fit_rows), len(val_rows)
    model = new_model(x_fit, hidden, seed)
    optimiser = opt.build(model.parameters())
    best, best_state = -math.inf, None
    for epoch in range(opt.epochs):
        # One epoch per call: the shuffle generator carries on, so the batch order is that of one long call.
        train_epochs(model, optimiser, x_fit, y_fit, opt.batch, 1, shuffle, lambda _, loss, e=epoch: hook(e, loss))
        y_hat = predict(model, x_val)
        acc = float(np.mean([balanced_accuracy(y_val[:, i], y_hat[:, i]) for i in range(len(ATTRIBUTES))]))
        curve.val_acc.append(acc)
        if acc > best:
            best, curve.best_epoch = acc, epoch
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        elif epoch - curve.best_epoch >= stop.patience:
            break
    if stop.refit:
        curve.refit_epochs = curve.best_epoch + 1
        model = new_model(x, hidden, seed)
        shuffle = torch.Generator().manual_seed(seed)
        train_epochs(model, opt.build(model.parameters()), x, y, opt.batch, curve.refit_epochs, shuffle)
    else:
        model.load_state_dict(best_state)
    return model, curve


@torch.inference_mode()
def predict(model: KennenO, x: torch.Tensor) -> np.ndarray:
    """Predicted label indices [N, heads] in the heads' order (ATTRIBUTES for kennen-o)."""
    return torch.stack([z.argmax(1) for z in model(x).values()], 1).numpy()


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
    """A trained kennen-o and its evaluation on the test boxes (``model`` None when a parallel run did not keep it)."""

    model: KennenO | None
    y_true: np.ndarray  # [N_test, 12]
    y_pred: np.ndarray
    metrics: dict[str, float]
    curve: Curve | None = None
    test_ids: tuple[int, ...] = ()
    logits: list[np.ndarray] | None = None  # per attribute [N_test, K_a], when the run asked for them


def train_ids(split: dict[str, list[int]], n_train: int | None, seed: int) -> list[int]:
    """The training box ids of ``split``: all of them, or a seeded subset of ``n_train`` (nested: smaller in larger)."""
    ids = list(split["train"])
    if n_train is not None and n_train < len(ids):
        order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed))
        ids = sorted(ids[i] for i in order[:n_train].tolist())
    return ids


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
    stop: EarlyStop | None = None,
) -> Result:
    """kennen-o on one split in this process: train on ``split['train']`` (``n_train`` of them), test on ``split['test']``.

    ``seed`` is the base seed: the subset uses it, the model ``model_seed(seed)``.
    """
    train, test = train_ids(split, n_train, seed), split["test"]
    x = features(outputs, n_queries, output)
    y = targets(boxes)
    groups = configs(boxes, train)
    model, curve = fit_curve(x[train], y[train], hidden, opt, model_seed(seed), on_epoch, stop, groups)
    y_true, y_pred = y[test].numpy(), predict(model, x[test])
    return Result(model, y_true, y_pred, accuracies(y_true, y_pred), curve, tuple(test))


@dataclass(frozen=True)
class KennenOParams:
    """``kennen_o`` section of params.yaml."""

    optimisers: dict[str, Optimiser]
    n_queries: int = bounded(10_000, 100)  # MNIST test images
    output: str = "prob"
    hidden: int = bounded(10_000, 1000)
    optimiser: str = "default"
    seeds: int = bounded(100, 3)  # headline seed replicas; the first is the headline
    early_stop: EarlyStop = EarlyStop()  # off unless params turn it on
    boxes: str = "final"  # training boxes: final models (the paper's) | checkpoints (and their checkpoints, ours)

    def check(self, where: str) -> None:
        require(self.n_queries >= 1, f"{where}.n_queries", f"must be at least 1, got {self.n_queries}")
        require(self.hidden >= 1, f"{where}.hidden", f"must be at least 1, got {self.hidden}")
        require(self.seeds >= 1, f"{where}.seeds", f"must be at least 1, got {self.seeds}")
        require(self.boxes in BOXES, f"{where}.boxes", f"expected one of {', '.join(BOXES)}, got {self.boxes!r}")
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

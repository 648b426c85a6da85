"""kennen-io (paper §5): kennen-o's MLP and its query images learned together.

    min_x min_theta  sum_a CE(m_theta([f(x_1), ..., f(x_n)])_a, y_a)     over training boxes f

The queries start as kennen-o's (the first ``n`` query images) and the MLP is
kennen-o's. Training follows a schedule of phases (``params.yaml``,
``kennen_io.schedule``); the paper's, and the default of the paper profile, is
a 200-epoch MLP warm start, then 50 epochs of query updates, 50 of MLP, 50 of
queries, 50 of MLP (official ``sequence=['m', 200, 50, 50]``, 400 epochs):

- ``metamodel`` phases train only the MLP, with kennen-o's optimiser (one
  optimiser, so Adam keeps its state across phases). The queries are fixed
  then and the zoo is in eval mode, so the boxes' outputs are computed once
  per phase: the same numbers the official code recomputes at every step.
- ``queries`` phases update only the images, with the official code's
  projected noisy SGD (``crafted.QueryStep``: lr 0.1, batches of 10 boxes,
  +-1/512 noise), backpropagating through the frozen MLP and the frozen zoo.

The outputs are log-probabilities (the paper's "score"), standardised with the
statistics of the warm start's features and kept fixed afterwards, so the MLP
sees the same scale while the queries move.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from kennen.config import require
from kennen.metamodel.crafted import BoxZoo, QueryStep, ZooSource, to_pixels
from kennen.metamodel.kennen_o import KennenO, Optimiser, loss_fn, new_model, predict, targets, train_epochs

PHASES = ("metamodel", "queries")


@dataclass(frozen=True)
class Phase:
    """One phase of the schedule: what is trained, for how many passes over the training boxes."""

    train: str
    epochs: int

    def check(self, where: str) -> None:
        require(self.train in PHASES, f"{where}.train", f"expected one of {', '.join(PHASES)}, got {self.train!r}")
        require(self.epochs >= 1, f"{where}.epochs", f"must be at least 1, got {self.epochs}")


PAPER_SCHEDULE = (Phase("metamodel", 200), Phase("queries", 50), Phase("metamodel", 50), Phase("queries", 50),
                  Phase("metamodel", 50))  # fmt: skip


@dataclass(frozen=True)
class KennenIOParams:
    """``kennen_io`` section of params.yaml."""

    n_queries: int = 100
    schedule: tuple[Phase, ...] = PAPER_SCHEDULE
    step: QueryStep = field(default_factory=QueryStep)
    splits: tuple[str, ...] = ("r",)  # the R split and any E splits of ``splits.extrapolation`` (Table 3)

    def check(self, where: str) -> None:
        require(self.n_queries >= 1, f"{where}.n_queries", f"must be at least 1, got {self.n_queries}")
        require(bool(self.schedule), f"{where}.schedule", "needs at least one phase")
        require(
            self.schedule[0].train == "metamodel",
            f"{where}.schedule",
            "must start with a metamodel phase (the MLP warm start that fixes the input scale)",
        )
        require("r" in self.splits, f"{where}.splits", "must include r (Table 2 and the reference for Table 3)")
        self.step.check(f"{where}.step")


def flat(log_probs: torch.Tensor) -> torch.Tensor:
    """Metamodel input [B, Q * 10] from the boxes' log-probabilities [B, Q, 10] (the ``prob`` encoding)."""
    return log_probs.reshape(len(log_probs), -1)


@dataclass
class Trained:
    """A trained kennen-io: the MLP and its queries (normalised images [Q, 1, 28, 28])."""

    model: KennenO
    queries: torch.Tensor


def train(
    zoo: BoxZoo,
    boxes: Sequence[int],
    y: torch.Tensor,
    init: torch.Tensor,
    params: KennenIOParams,
    hidden: int,
    opt: Optimiser,
    seed: int,
    on_epoch: Callable[[str, int, float], None] | None = None,
    on_phase: Callable[[str, KennenO, torch.Tensor], None] | None = None,
) -> Trained:
    """kennen-io on ``boxes`` of ``zoo`` with labels ``y`` [N, 12], from query images ``init`` [>= n, 1, 28, 28].

    ``on_epoch(phase, epoch, loss)`` after every epoch; ``on_phase(phase, model, queries)`` after every phase.
    """
    x = init[: params.n_queries].clone()
    boxes = list(boxes)
    gen = torch.Generator().manual_seed(seed)
    model: KennenO | None = None
    optimiser = None
    for phase in params.schedule:
        if phase.train == "metamodel":
            feats = flat(zoo.outputs(x, boxes))
            if model is None:
                model = new_model(feats, hidden, seed)
                optimiser = opt.build(model.parameters())

            def report(epoch: int, loss: float) -> None:
                if on_epoch is not None:
                    on_epoch("metamodel", epoch, loss)

            train_epochs(model, optimiser, feats, y, opt.batch, phase.epochs, gen, report)
        else:
            x = _train_queries(zoo, boxes, y, x, model, params.step, phase.epochs, gen, on_epoch)
        if on_phase is not None:
            on_phase(phase.train, model, x)
    return Trained(model, x)


def _train_queries(
    zoo: BoxZoo,
    boxes: list[int],
    y: torch.Tensor,
    x: torch.Tensor,
    model: KennenO,
    step: QueryStep,
    epochs: int,
    gen: torch.Generator,
    on_epoch: Callable[[str, int, float], None] | None,
) -> torch.Tensor:
    model.eval()
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    x = x.clone().requires_grad_(True)
    try:
        for epoch in range(epochs):
            total = 0.0
            for batch in torch.randperm(len(boxes), generator=gen).split(step.batch):
                loss = loss_fn(model(flat(zoo(x, [boxes[i] for i in batch.tolist()]))), y[batch])
                loss.backward()
                step.apply(x, gen)
                total += float(loss.detach()) * len(batch)
            if on_epoch is not None:
                on_epoch("queries", epoch, total / len(boxes))
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return x.detach()


def evaluate(trained: Trained, zoo: BoxZoo, boxes: Sequence[int]) -> np.ndarray:
    """Predicted value indices [B, 12] for ``boxes`` of ``zoo`` from their log-probabilities on the queries."""
    return predict(trained.model, flat(zoo.outputs(trained.queries, list(boxes))))


def run_split(
    name: str,
    source: ZooSource,
    splits: dict[str, dict[str, list[int]]],
    init: np.ndarray,
    params: KennenIOParams,
    hidden: int,
    opt: Optimiser,
    seed: int,
) -> dict[str, Any]:
    """Executor entry point: kennen-io trained on split ``name``'s training boxes, evaluated on its test boxes."""
    torch.set_num_threads(1)  # the same arithmetic on every executor (in-process, process pool, Dask)
    train_ids, test_ids = splits[name]["train"], splits[name]["test"]
    ids = [*train_ids, *test_ids]
    zoo = source.load(ids)
    y = targets([source.boxes[i] for i in ids])
    n = len(train_ids)
    curve: list[dict[str, Any]] = []

    def on_epoch(phase: str, epoch: int, loss: float) -> None:
        curve.append({"step": len(curve), "phase": phase, "loss": round(loss, 5)})

    trained = train(zoo, range(n), y[:n], torch.from_numpy(init), params, hidden, opt, seed, on_epoch)
    return {
        "split": name,
        "model": {k: v.detach().clone() for k, v in trained.model.state_dict().items()},
        "queries": to_pixels(trained.queries),
        "y_true": y[n:].numpy(),
        "y_pred": evaluate(trained, zoo, range(n, len(ids))),
        "curve": curve,
    }

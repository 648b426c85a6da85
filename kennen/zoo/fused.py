"""The fused trainer: many zoo models of one structure trained in one set of kernels.

The MNIST-NETS networks are tiny, so one model at a time leaves most of a GPU
idle. :func:`train_group` trains models that share pooling, kernel size, #conv
and #fc together, their weights stacked into grouped convolutions and batched
matrix products (:mod:`kennen.zoo.stacked`). Everything else stays per member:
activation, dropout (each member's masks from its own generator, exactly as the
per-model trainer draws them), optimiser and its hyperparameters, data subset,
batch size, batch order and seed. It is the per-model trainer
(:func:`kennen.zoo.train.train_model`) run for many models at once, and makes
the same models up to floating-point rounding: in float64 to ~1e-13 after two
epochs (``tests/test_fused.py``); in float32 the different summation order of
grouped kernels is rounding that Adam and RMSprop can amplify where gradients
are near zero, so float32 members match one step closely and whole trainings
statistically, not weight for weight.

A step: every member whose epochs are not done takes its next batch; members
whose batches have the same length (same batch size, not at a partial last
batch) run as one stacked forward and backward; then one optimiser per
algorithm steps every member's parameters. torch's SGD, Adam and RMSprop update
each parameter from its own gradient and state only, and skip parameters
without a gradient, so one optimiser over many members is exactly one optimiser
per member, members that have finished included.

Measured (``benchmarks/zoo_throughput.py``): on a 2-core CPU oneDNN's grouped
convolutions at 10-20 channels are slower than one channels-last network after
the other, so the default profile trains with ``trainer: loop``; the fused
trainer is for GPUs, where one small network at a time leaves the card idle.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kennen.zoo.net import DROPOUT, FC_WIDTH, MnistNet, dropout_mask
from kennen.zoo.stacked import Stacked, fusion_key
from kennen.zoo.train import (
    TrainData,
    TrainResult,
    TrainSpec,
    build_member,
    epoch_order,
    finish,
    load_train_data,
    make_optimiser,
    single_thread,
)


def fusion_groups(specs: Sequence[TrainSpec], max_size: int) -> list[tuple[TrainSpec, ...]]:
    """Deterministic fused groups: by :data:`FUSED` structure, ordered by (activation, model id), at most ``max_size``.

    The groups depend on the specs alone (never on workers), so a shard trains the same way everywhere.
    """
    ordered = sorted(specs, key=lambda s: (fusion_key(s.net), s.net.act, s.model_id))
    groups = []
    for _, members in itertools.groupby(ordered, key=lambda s: fusion_key(s.net)):
        members = list(members)
        groups += [tuple(members[i : i + max_size]) for i in range(0, len(members), max_size)]
    return groups


class _Member:
    """One model inside a fused group: its network, data subset, batch order and loss bookkeeping."""

    def __init__(self, spec: TrainSpec, data: TrainData, device: str):
        self.spec = spec
        self.net, self.shuffle = build_member(spec, device)
        self.subset = data.subsets[spec.split]
        self.device = device
        self.epochs_left = spec.epochs
        self.order = torch.empty(0, dtype=torch.long)
        self.pos = 0
        self.loss_sum = torch.zeros((), device=device)
        self.n_seen = 0

    def next_batch(self) -> torch.Tensor | None:
        """Indices of this member's next batch, or None once its epochs are done."""
        if self.pos >= len(self.order):
            if self.epochs_left == 0:
                return None
            self.epochs_left -= 1
            self.order = epoch_order(self.subset, self.shuffle).to(self.device)
            self.pos = 0
            self.loss_sum, self.n_seen = torch.zeros((), device=self.device), 0  # the last epoch's loss is reported
        batch = self.order[self.pos : self.pos + self.spec.bs]
        self.pos += len(batch)
        return batch


def _masks(members: Sequence[_Member], n_hidden: int, x: torch.Tensor) -> list[torch.Tensor | None]:
    """Per hidden fc block a [G, B, 50] mask: each dropout member's draw from its own generator, ones for the rest.

    Each member draws as the per-model trainer does: one [B, 50] mask per hidden fc block, in forward order.
    """
    if not any(m.spec.net.drop for m in members):
        return [None] * n_hidden
    shape = (x.shape[1], FC_WIDTH)
    ones = torch.ones(shape, dtype=x.dtype, device=x.device)
    return [
        torch.stack(
            [dropout_mask(shape, DROPOUT, m.net.dropout_generator, x) if m.spec.net.drop else ones for m in members]
        )
        for _ in range(n_hidden)
    ]


def train_group(specs: Sequence[TrainSpec], data: TrainData, device: str = "cpu") -> list[TrainResult]:
    """Train the models of ``specs`` (one :data:`FUSED` structure) together; results in the order of ``specs``.

    Each member's ``train_seconds`` is its share of the group's wall time.
    """
    start = time.perf_counter()
    with single_thread(device):
        order = sorted(range(len(specs)), key=lambda i: (specs[i].net.act, specs[i].model_id))  # activation runs
        if len({fusion_key(s.net) for s in specs}) != 1:
            raise ValueError("a fused group needs one pooling, kernel size, #conv and #fc")
        members = [_Member(specs[i], data, device) for i in order]
        by_alg: dict[str, list[nn.Parameter]] = {}
        for m in members:
            by_alg.setdefault(m.spec.alg, []).extend(m.net.parameters())
        optimisers = [make_optimiser(alg, params, foreach=True) for alg, params in sorted(by_alg.items())]
        n_hidden = members[0].spec.net.n_fc - 1
        for m in members:
            m.net.train()
        while True:
            batches = [(m, b) for m in members if (b := m.next_batch()) is not None]  # in member (activation) order
            if not batches:
                break
            for opt in optimisers:
                opt.zero_grad(set_to_none=True)
            # Members whose batches have the same length run as one stack; a stable sort keeps activation runs adjacent.
            for _, same in itertools.groupby(sorted(batches, key=lambda mb: len(mb[1])), key=lambda mb: len(mb[1])):
                same = list(same)
                group = [m for m, _ in same]
                idx = torch.stack([b for _, b in same])  # [G, B]
                x = data.train_x[idx]  # [G, B, 1, 28, 28]
                logp = Stacked.of([m.net for m in group]).forward(x, _masks(group, n_hidden, x))
                losses = F.nll_loss(logp.flatten(0, 1), data.train_y[idx].flatten(), reduction="none")
                losses = losses.view(idx.shape).mean(1)  # [G]: each member's mean loss, as the per-model trainer's
                losses.sum().backward()  # members are independent: each gets its own loss's gradient
                for m, loss in zip(group, losses.detach(), strict=True):
                    m.loss_sum += loss * idx.shape[1]
                    m.n_seen += idx.shape[1]
            for opt in optimisers:
                opt.step()
        accs = evaluate_group([m.net for m in members], data)
        seconds = (time.perf_counter() - start) / len(members)
        results = {
            m.spec.model_id: finish(m.spec, m.net, acc, m.loss_sum, m.n_seen, seconds)
            for m, acc in zip(members, accs, strict=True)
        }
    return [results[s.model_id] for s in specs]


@torch.inference_mode()
def evaluate_group(nets: Sequence[MnistNet], data: TrainData) -> list[float]:
    """Top-1 test accuracy (%) of each of ``nets`` (adjacent activations), all run as one stack per batch."""
    stacked = Stacked.of(nets, detach=True)
    correct = torch.zeros(len(nets), dtype=torch.long, device=data.test_x.device)
    for i in range(0, len(data.test_x), data.test_batch):
        pred = stacked.forward(data.test_x[i : i + data.test_batch]).argmax(-1)  # [G, B]
        correct += (pred == data.test_y[i : i + data.test_batch]).sum(1)
    return [100.0 * c / len(data.test_x) for c in correct.tolist()]


def train_group_task(
    specs: tuple[TrainSpec, ...], data_path: str, pool_size: int, perm_seed: int, test_batch: int, device: str = "cpu"
) -> list[TrainResult]:
    """Worker entry point: load (cached) data, then train one fused group."""
    return train_group(specs, load_train_data(data_path, pool_size, perm_seed, test_batch, device), device)

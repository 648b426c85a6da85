"""Many zoo networks evaluated as one: horizontal fusion of MNIST-NETS forward passes.

kennen-i and kennen-io backpropagate the loss of many black boxes into the same
query images at every step. The networks are tiny (10 and 20 channels, 50
units), so one model at a time spends most of its time in per-call overhead.
Networks of the same *structure* (activation, pooling, kernel size, #conv,
#fc; dropout is the identity in eval mode) are therefore stacked and run in one
set of kernels:

- the first convolution of G models is one convolution with G x 10 output channels,
- every later convolution is a grouped convolution (``groups=G``),
- the fully connected layers are batched matrix products (``baddbmm``),

with activations in channels-last layout (measured: 1.3x faster convolutions on
one CPU core here).

The result equals running each ``MnistNet`` in eval mode (``tests/test_fused.py``:
within 1e-5) and is differentiable in the input images. ``benchmarks/fused_forward.py``
measures the speedup over a per-model loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kennen.zoo.net import MnistNet, NetConfig

STRUCTURE = ("act", "pool", "ks", "n_conv", "n_fc")


def structure(cfg: NetConfig) -> tuple:
    """What must agree for two networks to share kernels in eval mode (not dropout)."""
    return tuple(getattr(cfg, k) for k in STRUCTURE)


def _activation(name: str, h: torch.Tensor, slope: torch.Tensor | None) -> torch.Tensor:
    if name == "relu":
        return F.relu(h)
    if name == "tanh":
        return torch.tanh(h)
    if name == "elu":
        return F.elu(h)
    # PReLU with one slope per model; ``slope`` is already broadcastable against ``h``.
    return torch.where(h >= 0, h, h * slope)


@dataclass
class _Group:
    """Stacked parameters of the networks that share one structure."""

    act: str
    pool: bool
    ks: int
    conv_w: list[torch.Tensor]  # per layer [G, out, in, k, k]
    conv_b: list[torch.Tensor]  # per layer [G, out]
    fc_w: list[torch.Tensor]  # per layer [G, out, in]
    fc_b: list[torch.Tensor]  # per layer [G, out]
    slope: torch.Tensor | None  # [G] for PReLU

    def forward(self, x: torch.Tensor, sel: torch.Tensor | None) -> torch.Tensor:
        """Log-probabilities [G', Q, 10] of the selected members (all when ``sel`` is None) on ``x`` [Q, 1, 28, 28]."""

        def pick(t: torch.Tensor) -> torch.Tensor:
            return t if sel is None else t.index_select(0, sel)

        n_q = x.shape[0]
        slope = None if self.slope is None else pick(self.slope)
        h = x.contiguous(memory_format=torch.channels_last)
        n = None
        for i, (w, b) in enumerate(zip(self.conv_w, self.conv_b, strict=True)):
            w, b = pick(w), pick(b)
            n, out = w.shape[:2]
            pad = 0 if i < 2 else (self.ks - 1) // 2
            w = w.flatten(0, 1).contiguous(memory_format=torch.channels_last)
            h = F.conv2d(h, w, b.flatten(), padding=pad, groups=1 if i == 0 else n)
            if i < 2 and self.pool:
                h = F.max_pool2d(h, 2)
            h = _activation(self.act, h, None if slope is None else slope.repeat_interleave(out)[:, None, None])
        h = h.reshape(n_q, n, -1).transpose(0, 1)  # [G, Q, features], each model's features in MnistNet's order
        last = len(self.fc_w) - 1
        for j, (w, b) in enumerate(zip(self.fc_w, self.fc_b, strict=True)):
            h = torch.baddbmm(pick(b).unsqueeze(1), h, pick(w).transpose(1, 2))
            if j < last:
                h = _activation(self.act, h, None if slope is None else slope[:, None, None])
        return torch.log_softmax(h, dim=-1)


def _layers(net: MnistNet) -> tuple[list[nn.Conv2d], list[nn.Linear], torch.Tensor | None]:
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    fcs = [m for m in net.classifier if isinstance(m, nn.Linear)]
    prelu = [m for m in net.modules() if isinstance(m, nn.PReLU)]
    return convs, fcs, (prelu[0].weight.detach().reshape(()) if prelu else None)


class FusedZoo:
    """A list of ``MnistNet``s evaluated by structure group; ``forward`` keeps the list's order."""

    def __init__(self, nets: Sequence[MnistNet]):
        by_key: dict[tuple, list[int]] = {}
        for i, net in enumerate(nets):
            by_key.setdefault(structure(net.cfg), []).append(i)
        self.n_models = len(nets)
        self.groups: list[_Group] = []
        # model index -> (group, position in group)
        self.where = torch.zeros(len(nets), 2, dtype=torch.long)
        for g, (key, members) in enumerate(sorted(by_key.items(), key=lambda kv: kv[1][0])):
            layers = [_layers(nets[i]) for i in members]
            self.groups.append(
                _Group(
                    act=key[0],
                    pool=key[1],
                    ks=key[2],
                    conv_w=[torch.stack([ls[0][k].weight.detach() for ls in layers]) for k in range(key[3])],
                    conv_b=[torch.stack([ls[0][k].bias.detach() for ls in layers]) for k in range(key[3])],
                    fc_w=[torch.stack([ls[1][k].weight.detach() for ls in layers]) for k in range(key[4])],
                    fc_b=[torch.stack([ls[1][k].bias.detach() for ls in layers]) for k in range(key[4])],
                    slope=torch.stack([ls[2] for ls in layers]) if key[0] == "prelu" else None,
                )
            )
            for pos, i in enumerate(members):
                self.where[i] = torch.tensor([g, pos])

    def forward(self, x: torch.Tensor, models: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """Log-probabilities [M, Q, 10] of ``models`` (indices into the list; default all) on ``x`` [Q, 1, 28, 28]."""
        idx = torch.arange(self.n_models) if models is None else torch.as_tensor(models, dtype=torch.long)
        where = self.where[idx]
        parts, order = [], []
        for g in torch.unique(where[:, 0]).tolist():
            rows = (where[:, 0] == g).nonzero().flatten()
            group = self.groups[g]
            full = len(rows) == group.conv_w[0].shape[0] and bool((where[rows, 1] == torch.arange(len(rows))).all())
            parts.append(group.forward(x, None if full else where[rows, 1]))
            order.append(rows)
        out = torch.cat(parts)
        return out[torch.argsort(torch.cat(order))]

    __call__ = forward


def box_matrix(members: Sequence[Sequence[int]], n_models: int) -> torch.Tensor:
    """[B, M] averaging weights: box b's output is the mean of its members' log-probabilities (§2)."""
    a = torch.zeros(len(members), n_models)
    for b, ms in enumerate(members):
        a[b, list(ms)] = 1.0 / len(ms)
    return a

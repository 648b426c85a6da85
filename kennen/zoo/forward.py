"""Many frozen zoo networks as one differentiable function of the query images.

kennen-i and kennen-io backpropagate the loss of many black boxes into the same
query images at every step; the networks never change. ``ZooForward`` evaluates
a list of them in one of two ways:

- ``loop`` (default): one network after the other, every network and the images
  in channels-last layout, the networks' parameters frozen so autograd computes
  only the input gradient.
- ``grouped``: horizontal fusion. Networks of the same *structure* (activation,
  pooling, kernel size, #conv, #fc; dropout is the identity in eval mode) are
  stacked and run in one set of kernels: the first convolution of G models as
  one convolution with G x 10 output channels, every later one as a grouped
  convolution (``groups=G``), the fully connected layers as batched matrix
  products (``baddbmm``).

Both equal running each ``MnistNet`` in eval mode (``tests/test_crafted.py``: within
1e-5). ``benchmarks/zoo_forward.py`` measures them against the plain per-network
loop: on the 2-core CPU here the grouped kernels do *not* pay (the default zoo's
413 networks fall into 131 structures, and oneDNN's grouped convolutions on 10-20
channels are slower than plain ones), while channels-last does; hence the default.
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


STRATEGIES = ("loop", "grouped")


class ZooForward:
    """A list of ``MnistNet``s, frozen in place; ``forward`` returns their log-probabilities in the order asked."""

    def __init__(self, nets: Sequence[MnistNet], strategy: str = "loop"):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r} (expected one of {', '.join(STRATEGIES)})")
        self.strategy = strategy
        self.n_models = len(nets)
        self.nets = [n.eval().requires_grad_(False).to(memory_format=torch.channels_last) for n in nets]
        self.groups: list[_Group] = []
        # model index -> (group, position in group)
        self.where = torch.zeros(len(nets), 2, dtype=torch.long)
        if strategy == "grouped":
            self._stack()

    def _stack(self) -> None:
        nets = self.nets
        by_key: dict[tuple, list[int]] = {}
        for i, net in enumerate(nets):
            by_key.setdefault(structure(net.cfg), []).append(i)
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
        if self.strategy == "loop":
            x = x.contiguous(memory_format=torch.channels_last)
            return torch.stack([self.nets[i](x) for i in idx.tolist()])
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

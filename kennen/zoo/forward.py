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
loop: on the 2-core CPUs measured the grouped kernels do *not* pay (few networks
share a structure, and oneDNN's grouped convolutions on 10-20 channels are slower
than plain ones). Channels-last won 1.2-1.5x on one machine and was within
+-14% of the plain loop on another (0.86x, 1.07x, 0.97x; README); it is the
default because it wins on kennen-io's step, where most crafted-query time goes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from kennen.zoo.net import MnistNet, NetConfig
from kennen.zoo.stacked import Stacked

STRUCTURE = ("act", "pool", "ks", "n_conv", "n_fc")


def structure(cfg: NetConfig) -> tuple:
    """What must agree for two networks to share kernels in eval mode (not dropout)."""
    return tuple(getattr(cfg, k) for k in STRUCTURE)


STRATEGIES = ("loop", "grouped")


class ZooForward:
    """A list of ``MnistNet``s, frozen in place; ``forward`` returns their log-probabilities in the order asked."""

    def __init__(self, nets: Sequence[MnistNet], strategy: str = "loop"):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r} (expected one of {', '.join(STRATEGIES)})")
        self.strategy = strategy
        self.n_models = len(nets)
        self.nets = [n.eval().requires_grad_(False).to(memory_format=torch.channels_last) for n in nets]
        self.groups: list[Stacked] = []
        # model index -> (group, position in group)
        self.where = torch.zeros(len(nets), 2, dtype=torch.long)
        if strategy == "grouped":
            self._stack()

    def _stack(self) -> None:
        by_key: dict[tuple, list[int]] = {}
        for i, net in enumerate(self.nets):
            by_key.setdefault(structure(net.cfg), []).append(i)
        for g, members in enumerate(sorted(by_key.values(), key=lambda ms: ms[0])):
            self.groups.append(Stacked.of([self.nets[i] for i in members], detach=True))
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
            parts.append((group if full else group.select(where[rows, 1])).forward(x))
            order.append(rows)
        out = torch.cat(parts)
        return out[torch.argsort(torch.cat(order))]

    __call__ = forward

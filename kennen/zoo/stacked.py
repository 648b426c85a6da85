"""Weights of many same-structure zoo networks stacked into one set of kernels (horizontal fusion).

Networks that share pooling, kernel size, #conv and #fc (:data:`FUSED`) have the
same layer shapes. Stacking their weights along a leading member axis turns

- the first convolution of G models into one grouped convolution over a
  [B, G, 28, 28] batch (member g's images in channel g), or, when all members
  see the same images, into one convolution with G x 10 outputs,
- every later convolution into a grouped convolution (``groups=G``),
- every fully connected layer into a batched matrix product (``baddbmm``).

Activations stay per member: members are ordered by activation and each run of
equal activations gets its own op (PReLU with one slope per member). Dropout
masks are passed in by the caller. Used for training by :mod:`kennen.zoo.fused`
and for frozen networks by :mod:`kennen.zoo.forward`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kennen.zoo.net import MnistNet, NetConfig

# What the members of one fused group share (their layer shapes); everything else is per member.
FUSED = ("pool", "ks", "n_conv", "n_fc")


def fusion_key(cfg: NetConfig) -> tuple:
    return tuple(getattr(cfg, k) for k in FUSED)


def activation(name: str, h: torch.Tensor, slope: torch.Tensor | None = None) -> torch.Tensor:
    """``name`` applied to ``h``; for PReLU, ``slope`` broadcastable against ``h``."""
    if name == "relu":
        return F.relu(h)
    if name == "tanh":
        return torch.tanh(h)
    if name == "elu":
        return F.elu(h)
    if name == "prelu":
        return torch.where(h >= 0, h, h * slope)
    raise ValueError(f"unknown activation {name!r}")


@dataclass
class Stacked:
    """The weights of G same-structure networks stacked along a leading member axis.

    ``acts[g]`` is member g's activation; members with equal activations must be
    adjacent (``runs`` are the spans). Built from live parameters (differentiable,
    for training) or from detached copies (frozen, for :mod:`kennen.zoo.forward`).
    """

    pool: bool
    ks: int
    conv_w: list[torch.Tensor]  # per layer [G, out, in, k, k]
    conv_b: list[torch.Tensor]  # per layer [G, out]
    fc_w: list[torch.Tensor]  # per layer [G, out, in]
    fc_b: list[torch.Tensor]  # per layer [G, out]
    acts: tuple[str, ...]
    slope: torch.Tensor | None  # [G]; only the PReLU members' entries are read

    @property
    def runs(self) -> list[tuple[str, int, int]]:
        """(activation, first, end) for each span of adjacent members with the same activation."""
        out, start = [], 0
        for name, members in itertools.groupby(self.acts):
            n = len(list(members))
            out.append((name, start, start + n))
            start += n
        return out

    @classmethod
    def of(cls, nets: Sequence[MnistNet], detach: bool = False) -> Stacked:
        """Stack ``nets`` (same :data:`FUSED` structure, equal activations adjacent)."""
        layers = [net.layers() for net in nets]
        cfg = nets[0].cfg
        if any(fusion_key(n.cfg) != fusion_key(cfg) for n in nets):
            raise ValueError("only networks with the same pooling, kernel size, #conv and #fc can be stacked")

        def stack(ts: list[torch.Tensor]) -> torch.Tensor:
            out = torch.stack(ts)
            return out.detach().clone() if detach else out

        slopes = [ls[2] for ls in layers]
        slope = None
        if any(s is not None for s in slopes):
            one = next(s for s in slopes if s is not None)
            slope = stack([(s if s is not None else torch.zeros_like(one)).reshape(()) for s in slopes])
        return cls(
            pool=cfg.pool,
            ks=cfg.ks,
            conv_w=[stack([ls[0][k].weight for ls in layers]) for k in range(cfg.n_conv)],
            conv_b=[stack([ls[0][k].bias for ls in layers]) for k in range(cfg.n_conv)],
            fc_w=[stack([ls[1][k].weight for ls in layers]) for k in range(cfg.n_fc)],
            fc_b=[stack([ls[1][k].bias for ls in layers]) for k in range(cfg.n_fc)],
            acts=tuple(n.cfg.act for n in nets),
            slope=slope,
        )

    def select(self, members: torch.Tensor) -> Stacked:
        """The stack of the ``members`` (indices, in increasing order, so activation runs stay adjacent)."""

        def pick(ts: list[torch.Tensor]) -> list[torch.Tensor]:
            return [t.index_select(0, members) for t in ts]

        return Stacked(
            self.pool,
            self.ks,
            pick(self.conv_w),
            pick(self.conv_b),
            pick(self.fc_w),
            pick(self.fc_b),
            tuple(self.acts[i] for i in members.tolist()),
            None if self.slope is None else self.slope.index_select(0, members),
        )

    def _act(self, h: torch.Tensor, dim: int, width: int) -> torch.Tensor:
        """Each member's activation on ``h``, whose axis ``dim`` holds the members in blocks of ``width``."""
        runs = self.runs
        parts = []
        for name, a, b in runs:
            part = h if len(runs) == 1 else h.narrow(dim, a * width, (b - a) * width)
            slope = None
            if name == "prelu":
                slope = self.slope[a:b].repeat_interleave(width)
                slope = slope.view(-1, *([1] * (h.dim() - 1 - dim)))  # broadcast along the axes after ``dim``
            parts.append(activation(name, part, slope))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim)

    def forward(self, x: torch.Tensor, masks: Sequence[torch.Tensor | None] = ()) -> torch.Tensor:
        """Log-probabilities [G, B, 10] of every member.

        Args:
            x: [B, 1, 28, 28] images shared by all members, or [G, B, 1, 28, 28], one batch per member.
            masks: per hidden fc block, a [G, B, 50] dropout mask or None (training mode; eval is no masks).
        """
        n = self.conv_w[0].shape[0]
        shared = x.dim() == 4
        b = x.shape[0] if shared else x.shape[1]
        # Member g's images in channel g: [B, G, 28, 28] (or the shared [B, 1, 28, 28]).
        h = x if shared else x.squeeze(2).transpose(0, 1)
        h = h.contiguous(memory_format=torch.channels_last)
        for i, (w, bias) in enumerate(zip(self.conv_w, self.conv_b, strict=True)):
            out = w.shape[1]
            pad = 0 if i < 2 else (self.ks - 1) // 2
            w = w.flatten(0, 1).contiguous(memory_format=torch.channels_last)  # [G * out, in, k, k]
            h = F.conv2d(h, w, bias.flatten(), padding=pad, groups=1 if i == 0 and shared else n)
            if i < 2 and self.pool:
                h = F.max_pool2d(h, 2)
            h = self._act(h, 1, out)
        h = h.reshape(b, n, -1).transpose(0, 1)  # [G, B, features], each member's in MnistNet's flatten order
        last = len(self.fc_w) - 1
        for j, (w, bias) in enumerate(zip(self.fc_w, self.fc_b, strict=True)):
            h = torch.baddbmm(bias.unsqueeze(1), h, w.transpose(1, 2))
            if j < last:
                h = self._act(h, 0, 1)
                mask = masks[j] if j < len(masks) else None
                if mask is not None:
                    h = h * mask
        return torch.log_softmax(h, dim=-1)

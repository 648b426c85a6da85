"""Output representations of a black box (paper §4; official ``mnist_metamodel.py``).

Every encoding maps the black box's log-probabilities [N, Q, 10] to what an
attacker would see, again as [N, Q, 10] values:

- ``prob``: the log-probabilities themselves (the code's ``score``: log-softmax).
- ``top<k>`` (k = 1..10): only the ranking of the k most likely classes. The
  class of rank r < k gets -90 * r / k (exponentially decaying probabilities,
  as the paper says), every other class -90; ``top10`` is the full ranking
  and ``top1`` the single label (the code's ``ranking-k``; its ``argmax``
  uses a slightly different constant, -55.3, for the same information).
- ``bottom1``: only the least likely class: 0 there, -90 elsewhere (the
  camera-ready's ablation, the code's ``onlytop-10``).
"""

from __future__ import annotations

import torch

FLOOR = -90.0
OUTPUT_TYPES = ("prob", *(f"top{k}" for k in range(1, 11)), "bottom1")


def encode(log_probs: torch.Tensor, output: str) -> torch.Tensor:
    """Encode ``log_probs`` [..., 10] as output type ``output`` (one of OUTPUT_TYPES)."""
    if output == "prob":
        return log_probs
    if output == "bottom1":
        least = log_probs.argmin(-1, keepdim=True)
        return torch.full_like(log_probs, FLOOR).scatter_(-1, least, 0.0)
    if output.startswith("top") and output[3:].isdigit() and 1 <= int(output[3:]) <= 10:
        k = int(output[3:])
        order = torch.sort(log_probs, dim=-1, descending=True, stable=True).indices[..., :k]  # class of rank r at r
        ranks = torch.arange(k, dtype=log_probs.dtype).expand_as(order)
        return torch.full_like(log_probs, FLOOR).scatter_(-1, order, FLOOR * ranks / k)
    raise ValueError(f"unknown output type {output!r} (expected one of {', '.join(OUTPUT_TYPES)})")

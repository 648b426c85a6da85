"""Ensembles (paper §2): same-configuration models combined by averaging.

Kept models whose configuration differs only in the seed form a group; every
subset of 2..``max_members`` members of a group is an ensemble (the paper says
2..t for a group of t; the official code caps subsets at 4). Its output is the
mean of its members' log-softmax outputs, it inherits the members' attributes
and gets ens = 1.

A cap on the boxes of one configuration (``max_boxes_per_config``, ours): a group of t kept
seeds gives t single boxes and 2^t - t - 1 ensembles (15 boxes for t = 4), and in a zoo of a
few hundred boxes one such configuration would outweigh dozens of others in every per-box
figure. Under the cap a configuration keeps all its single models and its largest ensembles
first (the ensemble of all members is the one that reaches ``n_par`` 17 and 21), the rest in
lexicographic order of members. The paper keeps every subset; at its 10,000 models the groups
are mostly pairs and the question does not arise.

Its parameter count is the *sum* over members, so ``n_par`` reaches the classes
16, 17, 20 and 21 that no single network can have. The released official
pipeline computes ``n_param`` before adding ensembles and so gives them a
single member's count; we do what the paper describes.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from kennen.attributes import BY_KEY, SAMPLED, n_par_class
from kennen.config import require

# 8 x 590,820 parameters would exceed 2^22, outside Table 1's #par classes.
MAX_MEMBERS_LIMIT = 7


@dataclass(frozen=True)
class EnsembleParams:
    """``ensembles`` section of params.yaml."""

    max_members: int = 4
    max_boxes_per_config: int | None = None  # None: every subset (the paper)

    def check(self, where: str) -> None:
        cap = self.max_boxes_per_config
        require(cap is None or cap >= 1, f"{where}.max_boxes_per_config", f"must be at least 1 or null, got {cap}")
        require(
            2 <= self.max_members <= MAX_MEMBERS_LIMIT,
            f"{where}.max_members",
            f"must be within 2..{MAX_MEMBERS_LIMIT} (larger ensembles leave Table 1's #par range), got {self.max_members}",
        )


def build_ensembles(
    models: list[dict[str, Any]], kept: list[int], max_members: int, max_boxes_per_config: int | None = None
) -> list[dict[str, Any]]:
    """Ensemble table rows, deterministic: groups by configuration, subsets by size, then lexicographic.

    ``max_boxes_per_config`` caps single models plus ensembles of one configuration (module
    docstring); single models are never dropped.
    """
    by_id = {m["model_id"]: m for m in models}
    groups: dict[int, list[int]] = defaultdict(list)
    for model_id in sorted(kept):
        groups[by_id[model_id]["config"]].append(model_id)
    rows = []
    for config in sorted(groups):
        ids = groups[config]
        subsets = [m for size in range(2, min(max_members, len(ids)) + 1) for m in itertools.combinations(ids, size)]
        if max_boxes_per_config is not None:
            room = max(0, max_boxes_per_config - len(ids))
            chosen = set(sorted(subsets, key=lambda m: -len(m))[:room])  # stable: lexicographic within a size
            subsets = [m for m in subsets if m in chosen]
        for members in subsets:
            first = by_id[members[0]]
            n_params = sum(by_id[i]["n_params"] for i in members)
            row = {
                "ensemble_id": len(rows),
                "members": ";".join(map(str, members)),
                "n_members": len(members),
                "config": config,
            }
            row |= {a.key: first[a.key] for a in SAMPLED}
            row |= {"n_par": n_par_class(n_params), "ens": True, "size": first["size"], "n_params": n_params}
            rows.append(row)
    assert all(r["n_par"] in BY_KEY["n_par"].values for r in rows)
    return rows


def ensemble_mean(outputs: torch.Tensor, members: Sequence[Sequence[int]]) -> torch.Tensor:
    """[B, Q, 10]: row b is the mean of ``outputs`` [M, Q, 10] over the rows ``members[b]``.

    The one place an ensemble's output is computed: the stored outputs (``kennen.queries``) and the
    crafted queries' differentiable zoo (``kennen.metamodel.crafted.BoxZoo``) both call it.
    """
    weights = torch.zeros(len(members), len(outputs), dtype=outputs.dtype)
    for row, ms in enumerate(members):
        weights[row, list(ms)] = 1.0 / len(ms)
    return torch.einsum("bm,mqc->bqc", weights, outputs)

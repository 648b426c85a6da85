"""Pruning (paper §2): keep the models whose test accuracy reaches ``min_acc``.

The paper keeps models with at least 98% accuracy on the 10,000 MNIST test
images (its counts: ``PAPER_ZOO`` in ``kennen/paper.py``); the official code applies ``prune_cos(cos, 98)`` to
the final-epoch test accuracy. Diverged models (non-finite weights, seen in
reduced zoos) are always dropped, whatever ``min_acc`` is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kennen import schemas
from kennen.config import require


@dataclass(frozen=True)
class PruneParams:
    """``prune`` section of params.yaml."""

    min_acc: float = 98.0

    def check(self, where: str) -> None:
        require(0.0 <= self.min_acc <= 100.0, f"{where}.min_acc", f"must be within 0..100, got {self.min_acc}")


def kept_ids(models: list[dict[str, Any]], min_acc: float) -> list[int]:
    """Ids of the models that pass pruning, in id order."""
    return sorted(m["model_id"] for m in models if not m["diverged"] and m["test_acc"] >= min_acc)


def read_kept(path: Path) -> list[int]:
    """The kept model ids written by the ``prune`` stage, checked (:data:`kennen.schemas.KEPT`)."""
    return schemas.read_kept(path)

"""Figure 4 and Table 3 analogues: kennen-o against training-set size, query count, output type, and E splits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kennen.attributes import ATTRIBUTES, BY_KEY
from kennen.config import require
from kennen.errors import KennenError
from kennen.metamodel.encode import OUTPUT_TYPES
from kennen.metamodel.kennen_o import KennenOParams, train_and_evaluate
from kennen.metamodel.metrics import relative

SWEEPS = ("n_train", "n_queries", "output", "extrapolation")
# Attributes whose test values an E split never shows in training cannot be predicted: leave them out of
# its average, together with the attribute derived from them (size <-> split).
LINKED = {"size": ("split",), "split": ("size",)}


@dataclass(frozen=True)
class SweepParams:
    """``kennen_o_sweep`` section of params.yaml."""

    n_train: tuple[int, ...] = (50, 100, 200, 500, 1000, 2000, 5000)
    n_queries: tuple[int, ...] = (1, 10, 100, 1000)
    outputs: tuple[str, ...] = OUTPUT_TYPES

    def check(self, where: str) -> None:
        for key in ("n_train", "n_queries", "outputs"):
            require(len(getattr(self, key)) > 0, f"{where}.{key}", "needs at least one value")
        require(all(n >= 1 for n in self.n_train), f"{where}.n_train", "values must be at least 1")
        require(all(n >= 1 for n in self.n_queries), f"{where}.n_queries", "values must be at least 1")
        for o in self.outputs:
            require(o in OUTPUT_TYPES, f"{where}.outputs", f"{o!r} is not one of {', '.join(OUTPUT_TYPES)}")


def scaled(metrics: dict[str, float], keys: list[str]) -> float:
    """Mean over ``keys`` of accuracy rescaled to chance = 0, perfect = 100 (Figure 4's axis)."""
    return float(np.mean([relative(metrics[f"acc.{k}"], BY_KEY[k].chance, 100.0) for k in keys]))


def _row(x_name: str, x: Any, metrics: dict[str, float], n_train: int, per_attribute: bool = False) -> dict[str, Any]:
    keys = [a.key for a in ATTRIBUTES]
    row = {
        x_name: x,
        "n_train": n_train,
        "acc_mean": metrics["acc.mean"],
        "acc_scaled": round(scaled(metrics, keys), 2),
    }
    return row | ({k: metrics[f"acc.{k}"] for k in keys} if per_attribute else {})


def extrapolation_row(
    name: str, split: dict[str, list[int]], held: dict[str, Any], metrics: dict[str, float], r_metrics: dict[str, float]
) -> dict[str, Any]:
    """Table 3 row of one E split: mean accuracy over the attributes its training boxes can show, and relative to R.

    The average leaves out the held-out attributes (and the one linked to them); relative
    accuracy = 100 x (E - chance) / (R - chance) over the same attributes.
    """
    skip = set(held) | {k for h in held for k in LINKED.get(h, ())}
    keys = [a.key for a in ATTRIBUTES if a.key not in skip]
    acc = float(np.mean([metrics[f"acc.{k}"] for k in keys]))
    r_acc = float(np.mean([r_metrics[f"acc.{k}"] for k in keys]))
    chance = float(np.mean([BY_KEY[k].chance for k in keys]))
    return {
        "split": name,
        "n_train": len(split["train"]),
        "n_test": len(split["test"]),
        "acc_mean": round(acc, 2),
        "r_acc_mean": round(r_acc, 2),
        "relative": round(relative(acc, chance, r_acc), 1),
    }


def run_sweep(
    name: str,
    sp: SweepParams,
    kp: KennenOParams,
    outputs: np.ndarray,
    boxes: list[dict[str, Any]],
    splits: dict[str, dict[str, list[int]]],
    held: dict[str, dict[str, Any]],
    seed: int,
    r_metrics: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Rows of one sweep; every point is a full kennen-o training with the headline settings."""
    opt = kp.optimisers[kp.optimiser]

    def train(split, n_queries=kp.n_queries, output=kp.output, n_train=None):
        return train_and_evaluate(outputs, boxes, split, n_queries, output, kp.hidden, opt, seed, n_train).metrics

    r = splits["r"]
    if name == "n_train":
        sizes = sorted({min(n, len(r["train"])) for n in sp.n_train})
        return [_row("n_train", n, train(r, n_train=n), n) for n in sizes]
    if name == "n_queries":
        too_many = [q for q in sp.n_queries if q > outputs.shape[1]]
        if too_many:
            raise KennenError(
                f"kennen_o_sweep.n_queries: {too_many} exceed the {outputs.shape[1]} stored queries (queries.n_max)"
            )
        counts = list(sp.n_queries)
        return [_row("n_queries", q, train(r, n_queries=q), len(r["train"])) for q in counts]
    if name == "output":
        # Per attribute too: Table 2 has a row per output type.
        return [_row("output", o, train(r, output=o), len(r["train"]), per_attribute=True) for o in sp.outputs]
    if name == "extrapolation":
        assert r_metrics is not None
        rows = []
        for split_name, held_values in held.items():
            split = splits[split_name]
            if not split["train"] or not split["test"]:
                rows.append(
                    {
                        "split": split_name,
                        "n_train": len(split["train"]),
                        "n_test": len(split["test"]),
                        "acc_mean": float("nan"),
                        "r_acc_mean": float("nan"),
                        "relative": float("nan"),
                    }
                )
                continue
            rows.append(extrapolation_row(split_name, split, held_values, train(split), r_metrics))
        return rows
    raise ValueError(f"unknown sweep {name!r}")

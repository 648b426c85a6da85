"""Meta-train / meta-test splits of the black boxes (paper §3, Table 3).

- **R** (random): whole units (configurations, or boxes) go to the test side
  until it holds min(``n_test``, ``test_fraction`` of the boxes), so it may
  overshoot by part of one configuration; the training side takes whole units
  of the rest up to ``n_train`` (the paper's sizes: ``PAPER_ZOO`` in
  ``kennen/paper.py``). With ``group_by_config`` (our default) the split is drawn
  over *configurations*: all seeds of a configuration, and every ensemble built
  from them, fall on the same side. Otherwise a test ensemble could have its
  own members, or seed-siblings of the same configuration, among the training
  boxes, which flatters the metamodel. The official code splits boxes
  uniformly; ``group_by_config: false`` does that.
- **E** (extrapolation): each split names test values of some attributes. A box
  is a test box when it has a named test value for *every* named attribute,
  and a training box when it has one for *none* (so E-#conv-#fc trains on
  #conv, #fc in {2, 3} and tests on #conv = #fc = 4, as in Table 3). Boxes
  with some but not all held-out values belong to neither side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kennen import schemas
from kennen.attributes import BY_KEY
from kennen.config import require
from kennen.seeds import Purpose, StableRng

# Paper Table 3: the held-out (test) values of each extrapolation split.
PAPER_E_SPLITS: dict[str, dict[str, tuple[Any, ...]]] = {
    "e_conv": {"n_conv": (4,)},
    "e_conv_fc": {"n_conv": (4,), "n_fc": (4,)},
    "e_alg": {"alg": ("rmsprop",)},
    "e_alg_bs": {"alg": ("rmsprop",), "bs": (256,)},
    "e_size": {"size": ("half", "all")},
}


@dataclass(frozen=True)
class SplitParams:
    """``splits`` section of params.yaml."""

    n_train: int = 5000
    n_test: int = 1000
    test_fraction: float = 0.2
    group_by_config: bool = True
    extrapolation: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=lambda: dict(PAPER_E_SPLITS))

    def check(self, where: str) -> None:
        require(self.n_train >= 1, f"{where}.n_train", f"must be at least 1, got {self.n_train}")
        require(self.n_test >= 1, f"{where}.n_test", f"must be at least 1, got {self.n_test}")
        require(
            0 < self.test_fraction < 1, f"{where}.test_fraction", f"must be within (0, 1), got {self.test_fraction}"
        )
        for name, held in self.extrapolation.items():
            require(name.isidentifier() and name != "r", f"{where}.extrapolation.{name}", "not a valid split name")
            require(bool(held), f"{where}.extrapolation.{name}", "names no attribute")
            for key, values in held.items():
                attr = BY_KEY.get(key)
                require(attr is not None, f"{where}.extrapolation.{name}.{key}", "not an attribute of Table 1")
                for v in values:
                    ok = any(type(v) is type(t) and v == t for t in attr.values)
                    require(ok, f"{where}.extrapolation.{name}.{key}", f"value {v!r} is outside Table 1")
                require(
                    len(set(values)) < attr.n_classes,
                    f"{where}.extrapolation.{name}.{key}",
                    "holds out every value, leaving nothing to train on",
                )


def random_split(boxes: list[dict[str, Any]], params: SplitParams, seed: int) -> dict[str, list[int]]:
    """The R split: {'train': box ids, 'test': box ids}, both sorted."""
    unit = (lambda b: b["config"]) if params.group_by_config else (lambda b: b["box"])
    units = sorted({unit(b) for b in boxes})
    order = [units[i] for i in StableRng(seed, Purpose.SPLITS).permutation_prefix(len(units))]
    per_unit: dict[Any, list[int]] = {}
    for b in boxes:
        per_unit.setdefault(unit(b), []).append(b["box"])
    n_test = min(params.n_test, max(1, round(params.test_fraction * len(boxes))))
    test: list[int] = []
    train: list[int] = []
    for u in order:  # whole units, in random order: to the test side until it is full, then to training
        if len(test) < n_test:
            test += per_unit[u]
        elif len(train) + len(per_unit[u]) <= params.n_train:
            train += per_unit[u]
    return {"train": sorted(train), "test": sorted(test)}


def extrapolation_split(
    boxes: list[dict[str, Any]], held: dict[str, tuple[Any, ...]], params: SplitParams, seed: int
) -> dict[str, list[int]]:
    """One E split: training boxes have no held-out value, test boxes have all of them."""

    def n_held(b: dict[str, Any]) -> int:
        return sum(b[k] in vs for k, vs in held.items())

    train = [b["box"] for b in boxes if n_held(b) == 0]
    test = [b["box"] for b in boxes if n_held(b) == len(held)]
    rng = StableRng(seed, Purpose.SPLITS, len(held))

    def cap(ids: list[int], n: int) -> list[int]:
        return sorted(ids[i] for i in list(rng.permutation_prefix(len(ids)))[:n])

    return {"train": cap(train, params.n_train), "test": cap(test, params.n_test)}


def all_splits(boxes: list[dict[str, Any]], params: SplitParams, seed: int) -> dict[str, dict[str, list[int]]]:
    """R plus every extrapolation split, by name."""
    out = {"r": random_split(boxes, params, seed)}
    out |= {name: extrapolation_split(boxes, held, params, seed) for name, held in params.extrapolation.items()}
    return out


def read_split(folder: Path, name: str, boxes: list[dict[str, Any]] | None = None) -> dict[str, list[int]]:
    """One split file written by the ``splits`` stage, checked: {'train': box ids, 'test': box ids}.

    Args:
        folder: the splits folder.
        name: the split's name (``r``, ``e_conv``, ...).
        boxes: the boxes table the split's ids must come from (None: not checked).
    """
    split = schemas.read_split(folder / f"{name}.json")
    if boxes is not None:
        known = [b["box"] for b in boxes]
        schemas.require_known(split["train"] + split["test"], known, folder / f"{name}.json", "box", "the boxes table")
    return split

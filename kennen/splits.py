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
- **Folds** (ours, the headline protocol): K folds of whole configurations. Every box
  of the zoo is a test box of exactly one fold, and a configuration's seed-siblings and
  ensembles always share a fold, so a box is predicted by a metamodel that never saw its
  configuration. The paper's single R split tests 1,000 of its 11 thousand boxes, enough at
  its scale; at a few hundred boxes one split tests a few dozen configurations, and
  cross-validation tests them all. The folds are one file, shared by every metamodel,
  sweep and the defences stage, so their figures are paired.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kennen import schemas
from kennen.attributes import BY_KEY
from kennen.config import require
from kennen.errors import KennenError
from kennen.seeds import Purpose, StableRng

# StableRng ids under Purpose.SPLITS: the R split uses none, an E split (len(held),), the folds (0, k),
# a training subset (0, *labels, len(ids)) with at least two labels: no stream is shared.
FOLDS_ID = 0

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
    folds: int = 5  # K of the cross-validation over configurations (ours)
    extrapolation: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=lambda: dict(PAPER_E_SPLITS))

    def check(self, where: str) -> None:
        require(self.n_train >= 1, f"{where}.n_train", f"must be at least 1, got {self.n_train}")
        require(self.n_test >= 1, f"{where}.n_test", f"must be at least 1, got {self.n_test}")
        require(
            0 < self.test_fraction < 1, f"{where}.test_fraction", f"must be within (0, 1), got {self.test_fraction}"
        )
        require(self.folds >= 2, f"{where}.folds", f"must be at least 2, got {self.folds}")
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


def config_folds(boxes: list[dict[str, Any]], k: int, seed: int) -> list[list[int]]:
    """K folds of whole configurations, as lists of box ids (each sorted); every box in exactly one.

    Configurations are visited in a seeded random order and each goes to the fold that holds the
    fewest boxes so far (the lowest index on ties), so fold sizes differ by at most one
    configuration's boxes. Raises when there are fewer configurations than folds.
    """
    per_config: dict[int, list[int]] = {}
    for b in boxes:
        per_config.setdefault(b["config"], []).append(b["box"])
    configs = sorted(per_config)
    if len(configs) < k:
        raise KennenError(f"splits.folds: {k} folds need at least {k} configurations, the zoo has {len(configs)}")
    folds: list[list[int]] = [[] for _ in range(k)]
    for i in StableRng(seed, Purpose.SPLITS, FOLDS_ID, k).permutation_prefix(len(configs)):
        smallest = min(range(k), key=lambda f: len(folds[f]))
        folds[smallest] += per_config[configs[i]]
    return [sorted(f) for f in folds]


def subset(ids: list[int], n: int, seed: int, *labels: int) -> list[int]:
    """A seeded random subset of ``n`` of ``ids`` (sorted), one stream per ``labels`` (e.g. size, replica, fold)."""
    order = list(StableRng(seed, Purpose.SPLITS, FOLDS_ID, *labels, len(ids)).permutation_prefix(len(ids)))
    return sorted(ids[i] for i in order[:n])


def fold_split(folds: list[list[int]], f: int) -> dict[str, list[int]]:
    """Fold ``f`` as a split: its boxes are the test side, every other fold's the training side."""
    return {"train": sorted(b for g, fold in enumerate(folds) if g != f for b in fold), "test": list(folds[f])}


def read_folds(folder: Path, boxes: list[dict[str, Any]]) -> list[list[int]]:
    """``folds.json`` of the ``splits`` stage, checked against the boxes table: a partition of every box
    into folds of whole configurations (a one-line error naming the file otherwise)."""
    path = folder / "folds.json"
    obj = schemas.read_json(path, {"folds": lambda v: v}, "folds file")
    folds = obj["folds"]
    ok = isinstance(folds, list) and len(folds) >= 2
    ok = ok and all(isinstance(f, list) and all(type(b) is int and b >= 0 for b in f) for f in folds)
    if not ok:
        raise KennenError(f"{path}: key 'folds': not a list of at least two lists of box ids")
    config = {b["box"]: b["config"] for b in boxes}
    seen: dict[int, int] = {}
    owner: dict[int, int] = {}
    for f, fold in enumerate(folds):
        for b in fold:
            if b not in config:
                raise KennenError(f"{path}: box {b} of fold {f} is not in the boxes table")
            if b in seen:
                raise KennenError(f"{path}: box {b} is in folds {seen[b]} and {f}")
            seen[b] = f
            if owner.setdefault(config[b], f) != f:
                raise KennenError(f"{path}: configuration {config[b]} is in folds {owner[config[b]]} and {f}")
    missing = sorted(set(config) - set(seen))
    if missing:
        raise KennenError(f"{path}: box {missing[0]} is in no fold ({len(missing)} boxes missing)")
    return folds


def read_split(folder: Path, name: str, boxes: list[dict[str, Any]] | None = None) -> dict[str, list[int]]:
    """One split file written by the ``splits`` stage, checked: {'train': box ids, 'test': box ids}.

    Args:
        folder: the splits folder.
        name: the split's name (``r``, ``e_conv``, ...).
        boxes: the boxes table the split's ids must come from (None: not checked).
    """
    split = schemas.read_split(folder / f"{name}.json")
    empty = [side for side in ("train", "test") if not split[side]]
    if name == "r" and empty:  # an E split may hold out values the zoo lacks; the R split never
        raise KennenError(f"{folder / 'r.json'}: key {empty[0]!r}: no boxes (the R split needs train and test boxes)")
    if boxes is not None:
        known = [b["box"] for b in boxes]
        schemas.require_known(split["train"] + split["test"], known, folder / f"{name}.json", "box", "the boxes table")
    return split

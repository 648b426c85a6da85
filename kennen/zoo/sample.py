"""Sampling zoo configurations (paper §2 "sampled without replacement").

The population is every (configuration, seed) pair: the product of the nine
sampled attributes of Table 1 (18,144 combinations) times ``n_seeds`` seeds
(paper: 1,000). A draw is deterministic from the base seed alone and uses its
own integer arithmetic on PCG64's raw 64-bit output (whose stream NumPy keeps
stable), so the zoo is the same on every machine, NumPy version and worker count.

Why groups: with a few hundred models drawn from 18,144 configurations, two
draws almost never share a configuration, so the paper's ensembles (models that
differ only in seed) would not exist. ``groups`` first draws a number of
distinct configurations with several seeds each; the rest of the zoo is then
drawn uniformly from the remaining (configuration, seed) pairs, as in the paper.
The paper profile uses no groups: at 10,000 models, repeats happen by themselves.

Shaped like the paper's zoo: in the paper's sample (10,000 of 18,144,000 pairs) the seed
groups are mostly pairs (about 1,600 pairs, 250 triples, 60 quadruples), so the default
draws pairs, and larger groups only where Table 1's ``n_par`` classes need them: pairs
and single models reach the classes 14, 15, 16, 18, 19 and 20, while 17 needs three or
four pooled members and 21 four members of at least 2^19 parameters. A group with
``n_par`` set draws only configurations whose ensemble of all its ``n_seeds`` members
falls in that class (ours: a targeted draw; the paper gets such groups by chance at its size).

A zoo that grows: the sample is the first ``n_models`` of one deterministic
sequence (:func:`pair_sequence`), whose start is the grouped models (shuffled
among themselves) and whose rest is the uniform draw. Raising ``n_models``
therefore keeps every model already drawn, with its id, shard and torch seed,
and only appends; the shards already trained are unchanged. Changing the base
seed, ``n_seeds``, ``groups`` or ``space`` draws a new sequence.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kennen.attributes import BY_KEY, SAMPLED, n_par_class, size_of_split
from kennen.config import bounded, require
from kennen.seeds import Purpose, StableRng, derive
from kennen.zoo.net import NetConfig, count_params


@dataclass(frozen=True)
class Group:
    """``n_configs`` distinct configurations, each trained with ``n_seeds`` seeds.

    ``n_par``: only configurations whose ensemble of all ``n_seeds`` members falls in this
    ``n_par`` class (None: any configuration).
    """

    n_configs: int
    n_seeds: int
    n_par: int | None = None


@dataclass(frozen=True)
class SampleParams:
    """``sample_zoo`` section of params.yaml."""

    n_models: int = bounded(100_000)  # the paper's zoo is 10,000
    n_seeds: int = bounded(10_000, 1000)  # seeds per configuration (paper: 1,000)
    shard_size: int = 100
    groups: tuple[Group, ...] = ()
    space: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def check(self, where: str) -> None:
        require(self.n_models >= 1, f"{where}.n_models", f"must be at least 1, got {self.n_models}")
        require(self.n_seeds >= 1, f"{where}.n_seeds", f"must be at least 1, got {self.n_seeds}")
        require(self.shard_size >= 1, f"{where}.shard_size", f"must be at least 1, got {self.shard_size}")
        for key, values in self.space.items():
            attr = BY_KEY.get(key)
            require(
                attr is not None and attr.sampled,
                f"{where}.space.{key}",
                f"not a sampled attribute of Table 1 (one of: {', '.join(a.key for a in SAMPLED)})",
            )
            scalar = all(isinstance(v, bool | int | float | str) for v in values)
            require(scalar, f"{where}.space.{key}", f"values must be plain values, got {list(values)!r}")
            require(
                len(values) > 0 and len(set(values)) == len(values), f"{where}.space.{key}", "needs distinct values"
            )
            for v in values:
                ok = any(type(v) is type(t) and v == t for t in attr.values)
                require(ok, f"{where}.space.{key}", f"value {v!r} is outside Table 1 (allowed: {list(attr.values)})")
        space = self.attribute_space()
        n_comb = math.prod(len(v) for v in space.values())
        population = n_comb * self.n_seeds
        require(
            self.n_models <= population,
            f"{where}.n_models",
            f"{self.n_models} exceeds {n_comb} combinations x {self.n_seeds} seeds = {population}",
        )
        for i, g in enumerate(self.groups):
            require(
                2 <= g.n_seeds <= self.n_seeds,
                f"{where}.groups[{i}].n_seeds",
                f"must be in 2..{self.n_seeds}, got {g.n_seeds}",
            )
            require(g.n_configs >= 0, f"{where}.groups[{i}].n_configs", f"must be >= 0, got {g.n_configs}")
            classes = BY_KEY["n_par"].values
            require(
                g.n_par is None or g.n_par in classes,
                f"{where}.groups[{i}].n_par",
                f"must be one of Table 1's classes {list(classes)}, got {g.n_par}",
            )
            if g.n_par is not None:
                n_fit = sum(1 for c in range(n_comb) if _group_class(c, g.n_seeds, space) == g.n_par)
                require(
                    n_fit >= g.n_configs,
                    f"{where}.groups[{i}].n_par",
                    f"only {n_fit} configurations have a {g.n_seeds}-member ensemble in class {g.n_par}",
                )
        require(
            sum(g.n_configs for g in self.groups) <= n_comb,
            f"{where}.groups",
            f"ask for more distinct configurations than the {n_comb} combinations",
        )
        grouped = sum(g.n_configs * g.n_seeds for g in self.groups)
        require(
            grouped <= self.n_models, f"{where}.groups", f"hold {grouped} models, more than n_models={self.n_models}"
        )

    def attribute_space(self) -> dict[str, tuple[Any, ...]]:
        """Values of each sampled attribute (Table 1, or its restriction in ``space``)."""
        return {a.key: tuple(self.space.get(a.key, a.values)) for a in SAMPLED}

    @property
    def n_shards(self) -> int:
        return math.ceil(self.n_models / self.shard_size)


def decode(index: int, space: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
    """Configuration number -> attribute values (mixed radix, last attribute fastest)."""
    values = {}
    for key in reversed(space):
        index, r = divmod(index, len(space[key]))
        values[key] = space[key][r]
    return {k: values[k] for k in space}


def _group_class(config: int, n_members: int, space: dict[str, tuple[Any, ...]]) -> int:
    """``n_par`` class of the ensemble of ``n_members`` seeds of configuration number ``config``."""
    return _group_classes(n_members, tuple(space.items()))[config]


@functools.cache
def _group_classes(n_members: int, space: tuple[tuple[str, tuple[Any, ...]], ...]) -> tuple[int, ...]:
    """Every configuration's ``_group_class``, computed once per (members, space): about a second."""
    d = dict(space)
    n_comb = math.prod(len(v) for v in d.values())
    return tuple(n_par_class(n_members * count_params(NetConfig.of(decode(c, d)))) for c in range(n_comb))


def pair_sequence(params: SampleParams, seed: int) -> Iterator[tuple[int, int]]:
    """The zoo's one sequence of distinct (configuration index, seed) pairs; a zoo is a prefix of it.

    First the grouped models (``groups``: distinct configurations, several seeds each), shuffled
    among themselves so that a group's members are not adjacent; then every remaining pair of the
    population, in uniformly random order. Nothing in it depends on ``n_models``. A group with an
    ``n_par`` target skips the configurations of the permutation that miss it (they stay
    available to later groups).
    """
    space = params.attribute_space()
    n_comb = math.prod(len(v) for v in space.values())
    rng = StableRng(seed, Purpose.SAMPLE, 0)
    grouped: list[tuple[int, int]] = []
    order = rng.permutation_prefix(n_comb)
    skipped: list[int] = []  # drawn by the permutation but not taken: offered to later groups first
    for g in params.groups:
        for _ in range(g.n_configs):
            config = _next_config(order, skipped, g, space)
            seeds = rng.permutation_prefix(params.n_seeds)
            grouped += [(config, next(seeds)) for _ in range(g.n_seeds)]
    for i in StableRng(seed, Purpose.SAMPLE, 1).permutation_prefix(len(grouped)):
        yield grouped[i]
    used = set(grouped)
    for idx in StableRng(seed, Purpose.SAMPLE, 2).permutation_prefix(n_comb * params.n_seeds):
        pair = divmod(idx, params.n_seeds)
        if pair not in used:
            yield pair


def _next_config(order: Iterator[int], skipped: list[int], g: Group, space: dict[str, tuple[Any, ...]]) -> int:
    """The next configuration for group ``g``: the first skipped one that fits, else the permutation's next."""
    fits = (lambda c: True) if g.n_par is None else (lambda c: _group_class(c, g.n_seeds, space) == g.n_par)
    for k, c in enumerate(skipped):
        if fits(c):
            return skipped.pop(k)
    for c in order:
        if fits(c):
            return c
        skipped.append(c)
    raise AssertionError("checked in SampleParams.check: enough configurations fit")


def sample_pairs(params: SampleParams, seed: int) -> list[tuple[int, int]]:
    """The first ``n_models`` pairs of :func:`pair_sequence`, in model-id order."""
    return list(itertools.islice(pair_sequence(params, seed), params.n_models))


def sample_zoo(params: SampleParams, seed: int) -> list[dict[str, Any]]:
    """The zoo's configuration table: one row per model, with derived attributes.

    Columns (``store.SAMPLE_COLUMNS``): model_id, shard, config, seed, torch_seed,
    the nine sampled attributes and the derived n_par, ens (0) and size, n_params.
    """
    space = params.attribute_space()
    rows = []
    for model_id, (config, s) in enumerate(sample_pairs(params, seed)):
        values = decode(config, space)
        n_params = count_params(NetConfig.of(values))
        row = {
            "model_id": model_id,
            "shard": model_id // params.shard_size,
            "config": config,
            "seed": s,
            "torch_seed": torch_seed(seed, model_id),
        }
        row |= values
        row |= {
            "size": size_of_split(values["split"]),
            "n_params": n_params,
            "n_par": n_par_class(n_params),
            "ens": False,
        }
        rows.append(row)
    return rows


def torch_seed(base_seed: int, model_id: int) -> int:
    """The RNG seed of one model's training, derived from (base seed, model id)."""
    return derive(base_seed, Purpose.TRAIN, model_id)

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

A zoo that grows: the sample is the first ``n_models`` of one deterministic
sequence (:func:`pair_sequence`), whose start is the grouped models (shuffled
among themselves) and whose rest is the uniform draw. Raising ``n_models``
therefore keeps every model already drawn, with its id, shard and torch seed,
and only appends; the shards already trained are unchanged. Changing the base
seed, ``n_seeds``, ``groups`` or ``space`` draws a new sequence.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kennen.attributes import BY_KEY, SAMPLED, n_par_class, size_of_split
from kennen.config import require
from kennen.seeds import Purpose, StableRng, derive
from kennen.zoo.net import NetConfig, count_params


@dataclass(frozen=True)
class Group:
    """``n_configs`` distinct configurations, each trained with ``n_seeds`` seeds."""

    n_configs: int
    n_seeds: int


@dataclass(frozen=True)
class SampleParams:
    """``sample_zoo`` section of params.yaml."""

    n_models: int
    n_seeds: int = 1000
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


def pair_sequence(params: SampleParams, seed: int) -> Iterator[tuple[int, int]]:
    """The zoo's one sequence of distinct (configuration index, seed) pairs; a zoo is a prefix of it.

    First the grouped models (``groups``: distinct configurations, several seeds each), shuffled
    among themselves so that a group's members are not adjacent; then every remaining pair of the
    population, in uniformly random order. Nothing in it depends on ``n_models``.
    """
    space = params.attribute_space()
    n_comb = math.prod(len(v) for v in space.values())
    rng = StableRng(seed, Purpose.SAMPLE, 0)
    grouped: list[tuple[int, int]] = []
    configs = rng.permutation_prefix(n_comb)
    for g in params.groups:
        for _ in range(g.n_configs):
            config = next(configs)
            seeds = rng.permutation_prefix(params.n_seeds)
            grouped += [(config, next(seeds)) for _ in range(g.n_seeds)]
    for i in StableRng(seed, Purpose.SAMPLE, 1).permutation_prefix(len(grouped)):
        yield grouped[i]
    used = set(grouped)
    for idx in StableRng(seed, Purpose.SAMPLE, 2).permutation_prefix(n_comb * params.n_seeds):
        pair = divmod(idx, params.n_seeds)
        if pair not in used:
            yield pair


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

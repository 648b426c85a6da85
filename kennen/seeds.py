"""Every random seed of the project, derived in one place (style.md rule 7).

A seed is a function of (base seed, purpose, ids): the base seed is params.yaml's
``seed``, the purpose says what the randomness is for (:class:`Purpose`), and the
ids say which one (a model id, a replica, a fold, ...). All three go into one
NumPy ``SeedSequence``, whose hash mixes them, so that:

- two purposes never share a stream, whatever the base seeds: additive offsets
  did (base 2018 + offset 7 = base 2019 + offset 6);
- streams do not depend on the number of workers or the order tasks finish in.

The entropy is ``[base, purpose, len(ids), *ids]``, every word below 2**32:
``SeedSequence`` pads short entropy with zeros and splits big integers into
32-bit words, so without the length and the bound ``(s, p)`` and ``(s, p, 0)``,
or ``2**32`` and ``(0, 1)``, would be the same stream.

:class:`StableRng` draws integers from PCG64's raw 64-bit output with our own
unbiased reduction, so that samples, queries and splits are the same on every
machine and NumPy version (NumPy keeps PCG64's raw stream stable, not its
``Generator`` methods).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator

import numpy as np
import torch

_WORD = 1 << 32


class Purpose(enum.IntEnum):
    """What a seed is for. Values are part of every stored result: never renumber, only append."""

    SAMPLE = 1  # the zoo's (configuration, seed) draw (kennen/zoo/sample.py)
    TRAIN = 2  # one zoo model's initialisation, id: model id (its torch_seed)
    BATCHES = 3  # one zoo model's batch order, from its torch_seed
    DROPOUT = 4  # one zoo model's dropout masks, from its torch_seed
    QUERIES = 5  # the query images (kennen/queries.py)
    SPLITS = 6  # the R and E splits (kennen/splits.py)
    METAMODEL = 7  # a metamodel's initialisation and batch order, ids: replica
    CARVE = 8  # a metamodel's validation carve, from its model seed
    CRAFTED_INIT = 9  # the starting images of kennen-i / kennen-io
    KENNEN_I = 10  # kennen-i's optimisation
    KENNEN_IO = 11  # kennen-io's optimisation
    BOOTSTRAP = 12  # bootstrap intervals over test boxes
    DEFENCE = 13  # a defence's noise, ids: crc32 of the setting, box
    PROBE = 14  # the ImageNet family probe's draws, ids: fold, draw
    IMAGENET_ZOO = 15  # the offline ImageNet surrogate zoo, ids: family, seed
    ATTACK = 16  # the family-aware attack's draws
    ATTACK_IMAGES = 17  # the attacked digits
    TRANSFER_CONFIG = 18  # foreign boxes' configurations, ids: regime crc32
    TRANSFER_TORCH = 19  # foreign boxes' training seeds
    TRANSFER_PERM = 20  # foreign boxes' training-image permutation
    CHOICES = 21  # the validation carve of the R training boxes that chooses defaults (kennen/metamodel/choices.py)


def _entropy(base: int, purpose: Purpose, ids: tuple[int, ...]) -> list[int]:
    words = [int(base), int(purpose), len(ids), *(int(i) for i in ids)]
    for w in words:
        if not 0 <= w < _WORD:
            raise ValueError(f"seed words must be in [0, 2**32), got {w} in {words}")
    return words


def sequence(base: int, purpose: Purpose, *ids: int) -> np.random.SeedSequence:
    """The SeedSequence of (base seed, purpose, ids)."""
    return np.random.SeedSequence(_entropy(base, purpose, ids))


def derive(base: int, purpose: Purpose, *ids: int) -> int:
    """A 32-bit seed for (base seed, purpose, ids), e.g. for ``torch.manual_seed``."""
    return int(sequence(base, purpose, *ids).generate_state(1)[0])


def generator(base: int, purpose: Purpose, *ids: int) -> np.random.Generator:
    """A NumPy generator on the stream of (base seed, purpose, ids)."""
    return np.random.default_rng(sequence(base, purpose, *ids))


def torch_generator(base: int, purpose: Purpose, *ids: int, device: str = "cpu") -> torch.Generator:
    """A torch generator seeded with :func:`derive` (base seed, purpose, ids)."""
    return torch.Generator(device=device).manual_seed(derive(base, purpose, *ids))


class StableRng:
    """Uniform integers from PCG64's raw output on the stream of (base seed, purpose, ids)."""

    def __init__(self, base: int, purpose: Purpose, *ids: int):
        self._bits = np.random.PCG64(sequence(base, purpose, *ids))

    def below(self, n: int) -> int:
        """Uniform integer in [0, n), by rejection so every value is equally likely."""
        limit = (1 << 64) - (1 << 64) % n
        while True:
            x = int(self._bits.random_raw())
            if x < limit:
                return x % n

    def permutation_prefix(self, n: int) -> Iterator[int]:
        """Lazily yield a uniformly random permutation of range(n) (sparse Fisher-Yates)."""
        swapped: dict[int, int] = {}
        for i in range(n):
            j = i + self.below(n - i)
            yield swapped.get(j, j)
            swapped[j] = swapped.get(i, i)

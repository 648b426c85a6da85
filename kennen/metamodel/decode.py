"""Decode the most probable *valid* configuration from a metamodel's 12 per-attribute distributions.

A metamodel predicts each attribute of Table 1 on its own head, so the per-head argmax
can name a box that cannot exist: ``n_par`` follows from the architecture and the
ensemble's member count, and ``size`` follows from ``split``. This module picks, per box,
the valid configuration that maximises the sum of the 12 log-probabilities.

How the zoo labels a box (``kennen.zoo.sample``, ``kennen.zoo.ensembles``):

- a single model has ``ens`` No and ``n_par`` = floor(log2(count_params(arch)));
  dropout has no parameters, a PReLU network has one shared slope more;
- an ensemble averages m >= 2 seed-siblings of ONE configuration (m <= ``max_members``),
  has ``ens`` Yes and ``n_par`` of the *summed* count, floor(log2(m * count_params(arch))),
  so ensembles reach classes (16, 17, 20, 21) no single network has;
- ``size`` is ``size_of_split(split)``; ``alg`` and ``bs`` are free.

The score factorises over three independent blocks, so decoding is exact without
enumerating all configurations: the architecture block (act, drop, pool, ks, n_conv,
n_fc, n_par, ens) over the table of valid combinations (:func:`valid_architectures`),
``alg`` and ``bs`` by their own argmax, and (split, size) over the 7 splits.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from kennen.attributes import ATTRIBUTES, BY_KEY, KEYS, SPLITS, n_par_class, size_of_split
from kennen.zoo.net import NetConfig, count_params

# The attributes of the architecture block, in ATTRIBUTES order.
ARCH_KEYS: tuple[str, ...] = ("act", "drop", "pool", "ks", "n_conv", "n_fc", "n_par", "ens")
_COL = {k: i for i, k in enumerate(KEYS)}
_ARCH_COLS = np.array([_COL[k] for k in ARCH_KEYS])
# NetConfig's fields, the attributes that fix a single network's parameter count.
_NET_KEYS: tuple[str, ...] = tuple(NetConfig.__dataclass_fields__)
# Label index of the size that each split (by label index) implies.
_SIZE_OF_SPLIT = np.array([BY_KEY["size"].index(size_of_split(s)) for s in SPLITS])


class ArchTable(NamedTuple):
    """The valid architecture combinations, one row per (architecture, ensemble member count).

    Attributes:
        labels: int64 [R, 8] label indices of ``ARCH_KEYS`` (act, drop, pool, ks, n_conv, n_fc, n_par, ens).
        members: int64 [R] the member count m (1 for a single model, 2..max_members for an ensemble).
    """

    labels: np.ndarray
    members: np.ndarray


@functools.cache
def valid_architectures(max_members: int) -> ArchTable:
    """Every (act, drop, pool, ks, n_conv, n_fc, ens, m) with its ``n_par`` label, within Table 1's range.

    Built once per ``max_members`` (cached); the arrays are read-only.

    Args:
        max_members: the largest ensemble (params.yaml ``ensembles.max_members``); 1 allows no ensembles.

    Returns:
        The table; combinations whose ``n_par`` falls outside Table 1's classes are left out.
    """
    if max_members < 1:
        raise ValueError(f"max_members must be at least 1, got {max_members}")
    n_par_values = BY_KEY["n_par"].values
    labels, members = [], []
    net_attrs = [BY_KEY[k] for k in _NET_KEYS]
    for idx in itertools.product(*(range(a.n_classes) for a in net_attrs)):
        cfg = NetConfig(**{a.key: a.values[i] for a, i in zip(net_attrs, idx, strict=True)})
        n_params = count_params(cfg)
        for m in range(1, max_members + 1):
            n_par = n_par_class(m * n_params)  # an ensemble's members share one configuration, so one count
            if n_par not in n_par_values:
                continue
            row = dict(zip(_NET_KEYS, idx, strict=True)) | {
                "n_par": BY_KEY["n_par"].index(n_par),
                "ens": BY_KEY["ens"].index(m > 1),
            }
            labels.append([row[k] for k in ARCH_KEYS])
            members.append(m)
    table = ArchTable(np.array(labels, dtype=np.int64), np.array(members, dtype=np.int64))
    for a in table:
        a.setflags(write=False)
    return table


@functools.cache
def _arch_rows(max_members: int) -> np.ndarray:
    """The distinct label rows [R', 8] of the table (several m can give the same labels)."""
    rows = np.unique(valid_architectures(max_members).labels, axis=0)
    rows.setflags(write=False)
    return rows


def _arch_code(labels: np.ndarray) -> np.ndarray:
    """One integer per row of architecture labels [N, 8] (mixed radix over the 8 attributes)."""
    code = np.zeros(len(labels), dtype=np.int64)
    for j, k in enumerate(ARCH_KEYS):
        code = code * BY_KEY[k].n_classes + labels[:, j]
    return code


def is_valid(labels: np.ndarray, max_members: int) -> np.ndarray:
    """Whether each row of label indices is a configuration the zoo can produce.

    Args:
        labels: int [N, 12] label indices in ATTRIBUTES order.
        max_members: the largest ensemble (params.yaml ``ensembles.max_members``).

    Returns:
        bool [N]: every index within its attribute's classes, the architecture block in
        :func:`valid_architectures`, and ``size`` the one ``split`` implies.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1, len(ATTRIBUTES))
    n_classes = np.array([a.n_classes for a in ATTRIBUTES])
    ok = ((labels >= 0) & (labels < n_classes)).all(axis=1)
    # Out-of-range rows are masked to 0 only so that the lookups below cannot index out of bounds.
    safe = np.where(ok[:, None], labels, 0)
    ok &= np.isin(_arch_code(safe[:, _ARCH_COLS]), _arch_code(_arch_rows(max_members)))
    ok &= _SIZE_OF_SPLIT[safe[:, _COL["split"]]] == safe[:, _COL["size"]]
    return ok


def decode_valid(log_probs: Sequence[np.ndarray], max_members: int) -> np.ndarray:
    """Label indices of the most probable valid configuration of each box.

    The score of a configuration is the sum of its 12 log-probabilities; ties go to the
    lowest label indices (the first of the sorted architecture rows, the first alg, bs and
    split). ``-inf`` entries (probability 0) are allowed: a box whose every valid
    configuration scores ``-inf`` still gets a valid one.

    Args:
        log_probs: 12 arrays in ATTRIBUTES order; ``log_probs[a]`` is [N, n_classes_a]
            log-probabilities (or any scores that add up) of attribute ``a``.
        max_members: the largest ensemble (params.yaml ``ensembles.max_members``).

    Returns:
        int64 [N, 12] label indices, every row valid (:func:`is_valid`).
    """
    if len(log_probs) != len(ATTRIBUTES):
        raise ValueError(f"expected {len(ATTRIBUTES)} arrays of log-probabilities, got {len(log_probs)}")
    lp = [np.asarray(x, dtype=np.float64) for x in log_probs]
    n = len(lp[0])
    for a, x in zip(ATTRIBUTES, lp, strict=True):
        if x.shape != (n, a.n_classes):
            raise ValueError(f"log_probs for {a.key}: expected shape ({n}, {a.n_classes}), got {x.shape}")
    out = np.zeros((n, len(ATTRIBUTES)), dtype=np.int64)

    # Architecture block: score every valid combination at once, [N, R'].
    rows = _arch_rows(max_members)
    score = np.zeros((n, len(rows)))
    for j, col in enumerate(_ARCH_COLS):
        score += lp[col][:, rows[:, j]]
    out[:, _ARCH_COLS] = rows[_argmax(score)]

    # alg and bs constrain nothing else.
    for k in ("alg", "bs"):
        out[:, _COL[k]] = _argmax(lp[_COL[k]])

    # (split, size): each split implies its size.
    split_score = lp[_COL["split"]] + lp[_COL["size"]][:, _SIZE_OF_SPLIT]
    split = _argmax(split_score)
    out[:, _COL["split"]] = split
    out[:, _COL["size"]] = _SIZE_OF_SPLIT[split]
    return out


def _argmax(score: np.ndarray) -> np.ndarray:
    """Row-wise argmax [N] that never lands on a NaN column (a NaN input counts as -inf)."""
    return np.argmax(np.where(np.isnan(score), -np.inf, score), axis=1)

"""The MNIST-NETS attribute space (paper Table 1), written once, as data.

Sampling, the network builder, the zoo table, metamodel heads, reports and
tests all read :data:`ATTRIBUTES`. A label index is the position of a value in
``Attribute.values``. The official code instead orders labels by ``sorted()``
of its own value strings (elu=0, prelu=1, ...); the order has no effect on the
metrics, only on how confusion matrices are laid out.

Nine attributes are *sampled* (their product is the 18,144 controllable
combinations); ``n_par``, ``size`` and ``ens`` are *derived*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Attribute:
    """One row of Table 1.

    Attributes:
        key: the name used everywhere (params, table columns, metric keys).
        title: the paper's short name, for tables and plots.
        group: ``arch``, ``opt`` or ``data``.
        values: the allowed values; a label is the index of a value here.
        sampled: True for the nine attributes drawn when sampling the zoo.
        labels: display names of the values, in the same order.
    """

    key: str
    title: str
    group: str
    values: tuple[Any, ...]
    sampled: bool
    labels: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.values)

    @property
    def chance(self) -> float:
        """Chance-level class-balanced accuracy in percent (1 / #classes)."""
        return 100.0 / self.n_classes

    def index(self, value: Any) -> int:
        """Label index of ``value``; raises ValueError for a value outside Table 1."""
        return self.values.index(value)


def _attr(key, title, group, values, sampled, labels=None) -> Attribute:
    values = tuple(values)
    return Attribute(key, title, group, values, sampled, tuple(labels or (str(v) for v in values)))


SPLITS = ("all", "half_0", "half_1", "quarter_0", "quarter_1", "quarter_2", "quarter_3")

# Table 1, in the paper's column order (Table 2 reorders them; see REPORT_ORDER).
ATTRIBUTES: tuple[Attribute, ...] = (
    _attr("act", "act", "arch", ("relu", "prelu", "elu", "tanh"), True, ("ReLU", "PReLU", "ELU", "Tanh")),
    _attr("drop", "drop", "arch", (False, True), True, ("No", "Yes")),
    _attr("pool", "pool", "arch", (False, True), True, ("No", "Yes")),
    _attr("ks", "ks", "arch", (3, 5), True),
    _attr("n_conv", "#conv", "arch", (2, 3, 4), True),
    _attr("n_fc", "#fc", "arch", (2, 3, 4), True),
    _attr("n_par", "#par", "arch", tuple(range(14, 22)), False, tuple(f"2^{p}" for p in range(14, 22))),
    _attr("ens", "ens", "arch", (False, True), False, ("No", "Yes")),
    _attr("alg", "alg", "opt", ("sgd", "adam", "rmsprop"), True, ("SGD", "ADAM", "RMSprop")),
    _attr("bs", "bs", "opt", (64, 128, 256), True),
    _attr(
        "split",
        "split",
        "data",
        SPLITS,
        True,
        ("All0", "Half0", "Half1", "Quarter0", "Quarter1", "Quarter2", "Quarter3"),
    ),
    _attr("size", "size", "data", ("all", "half", "quarter"), False, ("All", "Half", "Quarter")),
)

BY_KEY: dict[str, Attribute] = {a.key: a for a in ATTRIBUTES}
KEYS: tuple[str, ...] = tuple(a.key for a in ATTRIBUTES)
SAMPLED: tuple[Attribute, ...] = tuple(a for a in ATTRIBUTES if a.sampled)
# Column order of the paper's Table 2.
REPORT_ORDER: tuple[str, ...] = (
    "act",
    "drop",
    "pool",
    "ks",
    "n_conv",
    "n_fc",
    "n_par",
    "ens",
    "alg",
    "bs",
    "size",
    "split",
)


def mean_chance() -> float:
    """Mean chance accuracy over the 12 attributes in percent (the paper prints it: ``paper.TABLE2["chance"]``)."""
    return sum(a.chance for a in ATTRIBUTES) / len(ATTRIBUTES)


def size_of_split(split: str) -> str:
    """Derived ``size`` attribute of a training-data ``split`` ('half_1' -> 'half')."""
    return split.split("_")[0]


def n_par_class(n_params: int) -> int:
    """Derived ``n_par`` attribute: floor(log2(parameter count)) (code: ``etc/n_param``)."""
    return int(math.floor(math.log2(n_params)))


def parse_value(key: str, text: str) -> Any:
    """Parse a value of attribute ``key`` from its CSV text form; ValueError for a value outside Table 1."""
    attr = BY_KEY[key]
    kind = type(attr.values[0])
    if kind is bool:
        flags = {"1": True, "True": True, "true": True, "0": False, "False": False, "false": False}
        if text not in flags:
            raise ValueError(f"{text!r} is not a value of {key}")
        return flags[text]
    value = kind(text)
    if value not in attr.values:
        raise ValueError(f"{text!r} is not a value of {key}")
    return value

"""The white-box end of the ladder: attributes predicted from a box's weights, not its outputs.

Features follow Unterthiner et al. 2020 ("Predicting Neural Network Accuracy from
Weights", arXiv:2002.11448): per layer, the mean, variance and the 0/25/50/75/100%
quantiles of its weights and of its biases. Their networks share one architecture;
Table 1's do not (2-4 convolutions, 2-4 linear layers, kernel 3 or 5, pooling or not,
PReLU or not), so each layer goes into a fixed *slot* by its role:

- ``conv1``, ``conv2``: the first two convolutions (always present);
- ``conv3``, ``conv4``: the extra padded convolutions (absent: NaN);
- ``fc1``, ``fc2``, ``fc3``: the hidden linear layers in order (``fc1`` always present);
- ``out``: the last linear layer (always present).

Each slot adds its fan-in (in-features, or in-channels x kernel area), which a holder
of the weights reads off their shapes; then come the PReLU slope (NaN without PReLU),
the log2 of the parameter count and the number of member networks (1 for a single
model; an ensemble's features are the mean of its members', as its output is the
mean of theirs). A missing slot is NaN, which scikit-learn's histogram
gradient-boosting classifier routes natively, so every structure of Table 1 has the
same :data:`N_FEATURES` columns. One classifier per attribute, trained on the R
split's training boxes and tested on its test boxes, as kennen-o is.

This is a deliberate upper rung, not a fair fight: with the weights in hand the
architecture attributes are read off shapes and slots; the interesting rows are the
training attributes (optimiser, batch size, data split and size).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kennen.attributes import ATTRIBUTES
from kennen.metamodel.crafted import load_members
from kennen.metamodel.kennen_o import targets
from kennen.zoo.net import MnistNet

SLOTS = ("conv1", "conv2", "conv3", "conv4", "fc1", "fc2", "fc3", "out")
STATS = ("mean", "var", "q0", "q25", "q50", "q75", "q100")
COLUMNS = tuple(
    [f"{s}.{part}.{stat}" for s in SLOTS for part in ("w", "b") for stat in STATS]
    + [f"{s}.fan_in" for s in SLOTS]
    + ["prelu", "log2_params", "members"]
)
N_FEATURES = len(COLUMNS)


def _stats(t: torch.Tensor) -> list[float]:
    v = t.detach().double().flatten()
    q = torch.quantile(v, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
    return [float(v.mean()), float(v.var(unbiased=False)), *q.tolist()]


def slots(net: MnistNet) -> dict[str, torch.nn.Module]:
    """The network's conv and linear layers by slot (absent slots missing)."""
    convs, fcs, _ = net.layers()
    out = {f"conv{i + 1}": c for i, c in enumerate(convs)}
    out |= {f"fc{i + 1}": f for i, f in enumerate(fcs[:-1])}
    out["out"] = fcs[-1]
    return out


def network_features(net: MnistNet) -> np.ndarray:
    """[N_FEATURES] float64 for one network; NaN where its structure has no such slot."""
    by_slot = slots(net)
    values: list[float] = []
    for s in SLOTS:
        layer = by_slot.get(s)
        values += (_stats(layer.weight) + _stats(layer.bias)) if layer is not None else [np.nan] * 2 * len(STATS)
    for s in SLOTS:
        layer = by_slot.get(s)
        values.append(float(layer.weight[0].numel()) if layer is not None else np.nan)
    prelu = net.layers()[2]
    values += [float(prelu.detach().mean()) if prelu is not None else np.nan, float(np.log2(_n_params(net))), 1.0]
    return np.asarray(values, dtype=np.float64)


def box_features(members: Sequence[MnistNet]) -> np.ndarray:
    """A box's features from its member networks (one for a single model)."""
    return _combine([network_features(n) for n in members], [_n_params(n) for n in members])


def _combine(rows: Sequence[np.ndarray], n_params: Sequence[int]) -> np.ndarray:
    """The members' mean (their NaN slots agree: members share one configuration), the box's total parameter
    count and its number of members."""
    x = np.mean(rows, axis=0)
    x[-2] = np.log2(sum(n_params))
    x[-1] = float(len(rows))
    return x


def _n_params(net: MnistNet) -> int:
    return sum(p.numel() for p in net.parameters())


def zoo_features(boxes: list[dict[str, Any]], models_csv: Path, shards_dir: Path) -> np.ndarray:
    """[N_boxes, N_FEATURES]: every box's weight features (``boxes``: the rows of ``boxes.csv``, in box order)."""
    nets, members = load_members(shards_dir, models_csv, boxes, [b["box"] for b in boxes])
    feats = [network_features(n) for n in nets]  # each network once, however many boxes it is in
    sizes = [_n_params(n) for n in nets]
    return np.stack([_combine([feats[j] for j in ms], [sizes[j] for j in ms]) for ms in members])


def fit_predict(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int, max_iter: int = 200
) -> np.ndarray:
    """One gradient-boosted classifier per attribute; predicted label indices [N_test, 12] in ATTRIBUTES order.

    An attribute with one class among the training boxes predicts that class; columns that are NaN
    for every training box (a slot no training structure has) are left out.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier  # imported here: only this stage needs it

    keep = ~np.isnan(x_train).all(0)  # a slot no training box has carries nothing (and sklearn cannot bin it)
    x_train, x_test = x_train[:, keep], x_test[:, keep]
    pred = np.zeros((len(x_test), len(ATTRIBUTES)), dtype=np.int64)
    for i in range(len(ATTRIBUTES)):
        classes = np.unique(y_train[:, i])
        if len(classes) == 1:
            pred[:, i] = classes[0]
            continue
        clf = HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=0.1, random_state=seed)
        pred[:, i] = clf.fit(x_train, y_train[:, i]).predict(x_test)
    return pred


def whitebox(
    x: np.ndarray, boxes: list[dict[str, Any]], split: Mapping[str, list[int]], seed: int, max_iter: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """(y_true, y_pred) [N_test, 12] of the weight-space metamodel on ``split`` (features ``x``: zoo_features)."""
    y = targets(boxes).numpy()
    train, test = list(split["train"]), list(split["test"])
    return y[test], fit_predict(x[train], y[train], x[test], seed, max_iter)

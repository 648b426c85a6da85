"""The white-box metamodel's weight-statistics features (kennen/metamodel/weights.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from kennen.attributes import BY_KEY
from kennen.metamodel.weights import COLUMNS, N_FEATURES, STATS, box_features, fit_predict, network_features
from kennen.zoo.net import MnistNet, NetConfig

STRUCTURES = list(
    itertools.product(
        BY_KEY["act"].values, BY_KEY["pool"].values, BY_KEY["ks"].values, BY_KEY["n_conv"].values, BY_KEY["n_fc"].values
    )
)


def _present(x: np.ndarray, slot: str) -> bool:
    return not np.isnan(x[COLUMNS.index(f"{slot}.w.mean")])


@pytest.mark.parametrize(("act", "pool", "ks", "n_conv", "n_fc"), STRUCTURES)
def test_every_table1_structure_has_the_same_columns_nan_exactly_where_a_slot_is_absent(act, pool, ks, n_conv, n_fc):
    torch.manual_seed(0)
    net = MnistNet(NetConfig(act, True, pool, ks, n_conv, n_fc))
    x = network_features(net)
    assert x.shape == (N_FEATURES,)
    assert [_present(x, f"conv{i}") for i in range(1, 5)] == [i <= n_conv for i in range(1, 5)]
    assert [_present(x, f"fc{i}") for i in range(1, 4)] == [i <= n_fc - 1 for i in range(1, 4)]
    assert _present(x, "out")
    n_absent = (4 - n_conv) + (4 - n_fc)  # conv slots 4, hidden fc slots 3 (n_fc counts the output layer)
    assert np.isnan(x).sum() == n_absent * (2 * len(STATS) + 1) + (act != "prelu")
    assert x[COLUMNS.index("conv1.fan_in")] == ks * ks
    assert x[COLUMNS.index("log2_params")] == pytest.approx(np.log2(sum(p.numel() for p in net.parameters())))


def test_statistics_are_unterthiners_per_layer_mean_variance_and_quantiles():
    net = MnistNet(NetConfig("relu", False, True, 5, 2, 2))
    w = net.classifier[-1].weight.detach().double().flatten().numpy()
    x = network_features(net)
    got = [x[COLUMNS.index(f"out.w.{s}")] for s in STATS]
    want = [w.mean(), w.var(), *np.quantile(w, [0, 0.25, 0.5, 0.75, 1])]
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_an_ensemble_is_its_members_mean_with_its_total_size_and_member_count():
    torch.manual_seed(1)
    a, b = (MnistNet(NetConfig("tanh", False, False, 3, 3, 2)) for _ in range(2))
    x = box_features([a, b])
    fa, fb = network_features(a), network_features(b)
    np.testing.assert_allclose(x[:-2], ((fa + fb) / 2)[:-2], equal_nan=True)
    assert x[-1] == 2 and x[-2] == pytest.approx(fa[-2] + 1)  # twice the parameters: one more in log2


def test_gradient_boosting_reads_nan_slots_and_learns_a_readable_attribute():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    x[::2, 1] = np.nan
    y = np.zeros((60, 12), dtype=np.int64)
    y[:, 0] = (x[:, 0] > 0).astype(int)  # attribute 0 follows feature 0; the rest have one class
    x[:, 4] = np.nan  # a slot no box has (a zoo of one structure)
    pred = fit_predict(x[:40], y[:40], x[40:], seed=0, max_iter=20)
    assert pred.shape == (20, 12) and (pred[:, 1:] == 0).all()
    assert (pred[:, 0] == y[40:, 0]).mean() >= 0.9

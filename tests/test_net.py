import itertools

import pytest
import torch
from torch import nn

from kennen.zoo.net import MnistNet, NetConfig, count_params, feature_size, n_par

ARCHS = [
    NetConfig(*c)
    for c in itertools.product(
        ("relu", "prelu", "elu", "tanh"), (False, True), (False, True), (3, 5), (2, 3, 4), (2, 3, 4)
    )
]


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        (NetConfig("relu", False, True, 5, 2, 2), 21_840),
        (NetConfig("relu", False, True, 3, 4, 4), 39_820),
        (NetConfig("relu", False, True, 5, 4, 4), 46_980),
        (NetConfig("relu", False, False, 5, 2, 2), 405_840),
        (NetConfig("relu", True, False, 3, 4, 4), 590_820),
        (NetConfig("elu", True, False, 5, 4, 4), 430_980),
        (NetConfig("prelu", False, True, 5, 2, 2), 21_841),  # one shared PReLU slope, as in the official code
    ],
)
def test_golden_parameter_counts(cfg, expected):
    assert count_params(cfg) == expected


def test_single_models_fall_in_four_n_par_classes():
    assert {n_par(c) for c in ARCHS} == {14, 15, 18, 19}
    assert {n_par(c) for c in ARCHS if c.pool} == {14, 15}


@pytest.mark.parametrize(
    ("ks", "pool", "size"), [(3, True, 500), (5, True, 320), (3, False, 11_520), (5, False, 8_000)]
)
def test_feature_sizes(ks, pool, size):
    assert feature_size(ks, pool) == size


@pytest.mark.parametrize("cfg", ARCHS[::7])
def test_forward_gives_log_probabilities(cfg):
    out = MnistNet(cfg)(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 10)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(3))


def test_activation_applies_in_every_block_and_dropout_only_after_fc():
    # Paper §2: the sampled activation in every block (the official code hard-codes ReLU in extra blocks).
    net = MnistNet(NetConfig("tanh", True, False, 3, 4, 4))
    layers = list(net.features) + list(net.classifier)
    assert not any(isinstance(m, nn.ReLU) for m in layers)
    assert sum(isinstance(m, nn.Tanh) for m in net.features) == 4
    assert sum(isinstance(m, nn.Tanh) for m in net.classifier) == 3
    assert sum(isinstance(m, nn.Dropout) for m in net.classifier) == 3
    assert not any(isinstance(m, nn.Dropout | nn.MaxPool2d) for m in net.features)
    pooled = MnistNet(NetConfig("relu", False, True, 5, 3, 2))
    assert sum(isinstance(m, nn.MaxPool2d) for m in pooled.features) == 2  # conv1 and conv2 only

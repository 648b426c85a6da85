"""The fused trainer makes the per-model trainer's models (kennen/zoo/fused.py)."""

import contextlib
from dataclasses import replace

import numpy as np
import pytest
import torch

from kennen import data as mnist_data
from kennen.seeds import Purpose, torch_generator
from kennen.zoo.fused import _masks, _Member, evaluate_group, fusion_groups, train_group
from kennen.zoo.net import MnistNet, NetConfig
from kennen.zoo.stacked import Stacked
from kennen.zoo.train import TrainSpec, evaluate, load_train_data, train_model

# One structure (pool, ks 5, 3 conv, 3 fc); everything a fused group may vary varies.
MIXED = [
    ("relu", True, "sgd", 64, "all"),
    ("prelu", False, "adam", 128, "half_0"),
    ("tanh", True, "rmsprop", 64, "quarter_1"),
    ("prelu", True, "adam", 64, "all"),
    ("elu", False, "sgd", 256, "all"),
    ("relu", False, "rmsprop", 64, "half_1"),
]


TOL32 = 1e-4  # measured: up to 1.7e-5 after one step on a 2-core AMD EPYC (AVX2)


def _specs(pool: bool = True, epochs: int = 1) -> list[TrainSpec]:
    return [
        TrainSpec(i, NetConfig(act, drop, pool, 5, 3, 3), alg, bs, split, torch_seed=100 + i, epochs=epochs)
        for i, (act, drop, alg, bs, split) in enumerate(MIXED)
    ]


@pytest.fixture(scope="module")
def train_data(idx_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("d") / "mnist.npz"
    mnist_data.save(mnist_data.read_idx_dir(idx_dir), path)
    return load_train_data(str(path), 400, 20, 64)


@pytest.fixture
def data64(train_data):
    """The data and every new network in float64 while the test runs.

    The two trainers do the same arithmetic in a different order (grouped convolutions and batched
    matrix products against one network at a time), so in float32 they agree to rounding only, and
    Adam's and RMSprop's division by running gradient norms amplifies that rounding chaotically where
    gradients are near zero: on an AVX2 machine two epochs moved some weights by 0.013. In float64 the
    rounding is ~1e-16, far below any amplification two epochs can reach, so a tight tolerance tests
    what matters: the same batches, masks, optimiser steps and bookkeeping for every member.
    """
    with _float64():
        yield _double(train_data)


@contextlib.contextmanager
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _double(data):
    return replace(data, train_x=data.train_x.double(), test_x=data.test_x.double())


def _assert_same_models(fused, loop, tol=1e-9):
    for f, r in zip(fused, loop, strict=True):
        assert f.model_id == r.model_id and f.state.keys() == r.state.keys()
        for k in r.state:
            np.testing.assert_allclose(f.state[k], r.state[k], rtol=tol, atol=tol, err_msg=f"model {r.model_id} {k}")
        assert f.train_loss == pytest.approx(r.train_loss, rel=1e-5)
        assert abs(f.test_acc - r.test_acc) <= 0.5  # at most one test image in 200 on a rounding tie


@pytest.mark.slow
def test_one_step_of_each_agrees(data64):
    """Every member's first step (its own batch size, optimiser, activation, dropout) equals the per-model step."""
    data = replace(data64, subsets={k: v[:64] for k, v in data64.subsets.items()})  # one batch per member
    specs = _specs()
    _assert_same_models(train_group(specs, data), [train_model(s, data) for s in specs])


def test_one_float32_step_agrees_to_rounding(train_data):
    """The production dtype: one step of each member agrees with the per-model step to float32 rounding."""
    data = replace(train_data, subsets={k: v[:64] for k, v in train_data.subsets.items()})
    specs = _specs()
    _assert_same_models(train_group(specs, data), [train_model(s, data) for s in specs], tol=TOL32)


@pytest.mark.parametrize("pool", [True, False])
@pytest.mark.slow
def test_whole_training_agrees(data64, pool):
    """Two epochs with members of different subset sizes, batch sizes and partial last batches finishing apart."""
    specs = _specs(pool, epochs=2)
    _assert_same_models(train_group(specs, data64), [train_model(s, data64) for s in specs])


@pytest.mark.slow
def test_members_honour_their_own_optimiser(data64):
    """SGD, Adam and RMSprop side by side from the same start and data: three different models, each its own."""
    base = TrainSpec(0, NetConfig("relu", False, True, 5, 2, 2), "sgd", 64, "half_0", torch_seed=7, epochs=1)
    specs = [replace(base, model_id=i, alg=alg) for i, alg in enumerate(("sgd", "adam", "rmsprop"))]
    fused = train_group(specs, data64)
    key = "classifier.0.weight"
    assert not np.allclose(fused[0].state[key], fused[1].state[key])
    assert not np.allclose(fused[1].state[key], fused[2].state[key])
    _assert_same_models(fused, [train_model(s, data64) for s in specs])


def test_dropout_masks_differ_across_members_and_match_the_per_model_draws(train_data):
    specs = [TrainSpec(i, NetConfig("relu", i != 2, True, 5, 2, 4), "sgd", 8, "all", 50 + i, 1) for i in range(3)]
    members = [_Member(s, train_data, "cpu") for s in specs]
    x = torch.zeros(3, 8, 1, 28, 28)
    masks = _masks(members, 3, x)
    assert len(masks) == 3 and masks[0].shape == (3, 8, 50)
    assert not torch.equal(masks[0][0], masks[0][1])  # two members, two seeds
    assert not torch.equal(masks[0][0], masks[1][0])  # one member, two layers
    assert torch.equal(masks[0][2], torch.ones(8, 50))  # no dropout: no mask
    assert set(masks[0][0].unique().tolist()) == {0.0, 2.0}  # inverted dropout, p = 0.5
    # The per-model network draws the same masks from the same seed.
    net = MnistNet(specs[0].net)
    net.seed_dropout(torch_generator(specs[0].torch_seed, Purpose.DROPOUT))
    net.train()
    drop = next(m for m in net.modules() if isinstance(m, torch.nn.Dropout))
    h = torch.ones(8, 50)
    assert all(torch.equal(drop(h), masks[j][0]) for j in range(3))


def test_groups_are_deterministic_and_share_a_structure():
    specs = [
        TrainSpec(i, NetConfig(act, False, pool, 5, 2, n_fc), "sgd", 64, "all", i, 1)
        for i, (act, pool, n_fc) in enumerate(
            [("tanh", True, 2), ("relu", False, 2), ("relu", True, 2), ("elu", True, 3), ("relu", True, 2)] * 3
        )
    ]
    groups = fusion_groups(specs, max_size=4)
    assert fusion_groups(list(reversed(specs)), max_size=4) == groups
    assert sorted(s.model_id for g in groups for s in g) == list(range(len(specs)))
    assert all(len(g) <= 4 and len({(s.net.pool, s.net.ks, s.net.n_conv, s.net.n_fc) for s in g}) == 1 for g in groups)
    assert [len(g) for g in groups] == [3, 4, 4, 1, 3]  # no-pool 3; pooled 2-fc 9 (4+4+1); pooled 3-fc 3
    with pytest.raises(ValueError, match="one pooling"):
        train_group(specs[:2], None)


@pytest.mark.slow
def test_stacked_forward_equals_each_network(train_data):
    """Shared-input (evaluation) and per-member-input stacks both equal the networks one by one."""
    torch.manual_seed(3)
    nets = [MnistNet(NetConfig(act, False, False, 3, 4, 2)).eval() for act in ("elu", "prelu", "prelu", "tanh")]
    with torch.no_grad():
        nets[1].layers()[2].fill_(0.1)
    x = train_data.test_x[:16]
    want = torch.stack([n(x) for n in nets])
    stacked = Stacked.of(nets, detach=True)
    torch.testing.assert_close(stacked.forward(x), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stacked.forward(x.expand(4, -1, -1, -1, -1)), want, rtol=1e-5, atol=1e-5)
    accs = evaluate_group(nets, train_data)
    assert accs == pytest.approx([evaluate(n, train_data.test_x, train_data.test_y, 64) for n in nets], abs=0.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fused_training_on_cuda_agrees_with_the_cuda_loop(idx_dir, tmp_path):
    path = tmp_path / "m.npz"
    mnist_data.save(mnist_data.read_idx_dir(idx_dir), path)
    data = _double(load_train_data(str(path), 400, 20, 64, "cuda"))
    specs = _specs()
    with _float64():  # as data64 explains
        _assert_same_models(train_group(specs, data, "cuda"), [train_model(s, data, "cuda") for s in specs])

from dataclasses import replace

import numpy as np
import pytest
import torch

from kennen import data as mnist_data
from kennen.attributes import SPLITS
from kennen.zoo.net import NetConfig
from kennen.zoo.train import TrainParams, TrainSpec, load_train_data, make_optimiser, subset_indices, train_model

NET = NetConfig("relu", False, True, 5, 2, 2)


@pytest.fixture(scope="module")
def train_data(idx_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("d") / "mnist.npz"
    mnist_data.save(mnist_data.read_idx_dir(idx_dir), path)
    return load_train_data(str(path), 400, 20, 256)


def test_subsets_are_disjoint_halves_and_quarters():
    perm = np.random.RandomState(20).permutation(60_000)
    subsets = {s: set(subset_indices(perm, s).tolist()) for s in SPLITS}
    assert len(subsets["all"]) == 60_000
    assert [len(subsets[f"half_{k}"]) for k in range(2)] == [30_000] * 2
    assert [len(subsets[f"quarter_{k}"]) for k in range(4)] == [15_000] * 4
    assert not subsets["half_0"] & subsets["half_1"]
    quarters = [subsets[f"quarter_{k}"] for k in range(4)]
    assert set.union(*quarters) == subsets["all"] and sum(map(len, quarters)) == 60_000


def test_subsets_come_from_the_official_permutation():
    # Official code: np.random.seed(20); np.random.permutation(60000); the halves are its two ends.
    perm = np.random.RandomState(20).permutation(60_000)
    np.testing.assert_array_equal(subset_indices(perm, "half_1"), perm[30_000:])


def test_optimiser_settings_follow_the_official_code():
    p = [torch.nn.Parameter(torch.zeros(1))]
    sgd, adam, rms = (make_optimiser(k, p).defaults for k in ("sgd", "adam", "rmsprop"))
    assert (sgd["lr"], sgd["momentum"]) == (0.1, 0.5)
    assert adam["lr"] == 1e-3
    assert (rms["lr"], rms["momentum"]) == (1e-3, 0.5)


def test_training_is_deterministic_and_learns(train_data):
    spec = TrainSpec(0, NET, "adam", 64, "all", torch_seed=123, epochs=4)
    a, b = train_model(spec, train_data), train_model(spec, train_data)
    assert a.test_acc == b.test_acc
    for k in a.state:
        np.testing.assert_array_equal(a.state[k], b.state[k])
    # The synthetic digits are easy (chance is 10%): 4 epochs gave 86.5-100% over torch seeds 118-129.
    assert a.test_acc > 80
    c = train_model(TrainSpec(0, NET, "adam", 64, "all", torch_seed=124, epochs=4), train_data)
    assert not np.array_equal(a.state["classifier.0.weight"], c.state["classifier.0.weight"])


def test_training_uses_only_its_subset(train_data):
    idx = set(train_data.subsets["quarter_2"].tolist())
    poisoned = train_data.train_x.clone()
    poisoned[torch.tensor(sorted(set(range(len(poisoned))) - idx))] = float("nan")
    # Any image outside quarter_2 would turn the loss and the weights into NaN.
    result = train_model(
        TrainSpec(0, NET, "sgd", 64, "quarter_2", torch_seed=5, epochs=1), replace(train_data, train_x=poisoned)
    )
    assert not result.diverged and np.isfinite(result.train_loss)


def test_worker_cache_reloads_a_changed_data_file(idx_dir, tmp_path):
    """A long-lived worker must not keep training on a previous run's data."""
    import os

    path = tmp_path / "m.npz"
    mnist = mnist_data.read_idx_dir(idx_dir)
    mnist_data.save(mnist, path)
    first = load_train_data(str(path), 400, 20, 256)
    assert load_train_data(str(path), 400, 20, 256) is first  # cached
    mnist_data.save(replace(mnist, train_labels=(mnist.train_labels + 1) % 10), path)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert not torch.equal(load_train_data(str(path), 400, 20, 256).train_y, first.train_y)


def test_trainer_layout_does_not_change_the_model(train_data):
    """Channels-last (the default) and the default layout train the same model, up to rounding."""
    spec = TrainSpec(0, NetConfig("prelu", True, False, 3, 3, 3), "rmsprop", 64, "half_0", torch_seed=9, epochs=1)
    a, b = train_model(spec, train_data), train_model(spec, train_data, channels_last=False)
    assert a.state.keys() == b.state.keys()
    for k in a.state:  # RMSprop's division by running gradient norms amplifies rounding where gradients are ~0
        np.testing.assert_allclose(a.state[k], b.state[k], rtol=1e-3, atol=1e-3)
    assert a.state["features.0.weight"].flags["C_CONTIGUOUS"]  # shards store the default layout


def test_dropout_masks_come_from_the_model_seed(train_data):
    """Dropout draws from the model's own generator: a model never depends on what else ran in the process."""
    spec = TrainSpec(0, replace(NET, drop=True, n_fc=3), "sgd", 64, "all", torch_seed=11, epochs=1)
    a = train_model(spec, train_data)
    torch.manual_seed(0)
    torch.rand(1000)  # the global generator moves; the model must not
    b = train_model(spec, train_data)
    for k in a.state:
        np.testing.assert_array_equal(a.state[k], b.state[k])
    c = train_model(replace(spec, torch_seed=12), train_data)
    assert not np.array_equal(a.state["classifier.0.weight"], c.state["classifier.0.weight"])


@pytest.mark.parametrize(
    "key, value, message",
    [("trainer", "vmap", "train_zoo.trainer: expected one of loop, fused"), ("device", "tpu", "train_zoo.device"),
     ("fuse_max", 0, "train_zoo.fuse_max: must be at least 1")],
)  # fmt: skip
def test_trainer_params_are_checked(key, value, message):
    from kennen.config import from_dict
    from kennen.errors import KennenError

    with pytest.raises(KennenError, match=message):
        from_dict(TrainParams, {"shards": [0], key: value}, "train_zoo")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_a_gpu_is_a_one_line_error(idx_dir, tmp_path):
    from kennen.errors import KennenError

    path = tmp_path / "m.npz"
    mnist_data.save(mnist_data.read_idx_dir(idx_dir), path)
    with pytest.raises(KennenError, match="train_zoo.device: cuda, but torch sees no CUDA device"):
        load_train_data(str(path), 400, 20, 256, "cuda")


def test_checkpoints_record_the_outputs_part_way_and_leave_the_weights_alone(train_data):
    from kennen.zoo.net import MnistNet
    from kennen.zoo.train import probe_outputs

    probes = train_data.test_x[:30]
    spec = TrainSpec(0, NET, "adam", 64, "all", torch_seed=5, epochs=2)
    plain = train_model(spec, train_data)
    recorded = train_model(replace(spec, checkpoints=(0.5, 1.0)), train_data, probe_x=probes)
    for k in plain.state:  # recording reads the weights and draws no random numbers
        np.testing.assert_array_equal(plain.state[k], recorded.state[k])
    assert plain.checkpoints.shape == (0, 0, 10) and recorded.checkpoints.shape == (2, 30, 10)
    # after one of two epochs: the model that a one-epoch training of the same seed ends with
    one = train_model(replace(spec, epochs=1), train_data)
    net = MnistNet(NET)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in one.state.items()})
    np.testing.assert_allclose(recorded.checkpoints[1], probe_outputs(net, probes, 256), atol=1e-4)
    assert np.abs(recorded.checkpoints[0] - recorded.checkpoints[1]).max() > 1e-2  # half an epoch earlier


def test_checkpoints_need_probe_images_and_distinct_steps(train_data):
    from kennen.errors import KennenError

    spec = TrainSpec(0, NET, "sgd", 64, "quarter_0", torch_seed=5, epochs=1, checkpoints=(0.5,))
    with pytest.raises(KennenError, match="no probe images"):
        train_model(spec, train_data)
    # a quarter of 400 images in batches of 64 is 2 steps an epoch: 0.4 and 0.6 both round to step 1
    with pytest.raises(KennenError, match="repeated steps"):
        train_model(replace(spec, checkpoints=(0.4, 0.6)), train_data, probe_x=train_data.test_x[:4])


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"checkpoints": (0.5, 2.0)}, "train_zoo.checkpoints: each must lie between 0 and epochs (2)"),
        ({"checkpoints": (1.0, 0.5)}, "train_zoo.checkpoints: must increase"),
        ({"checkpoints": (0.5,), "trainer": "fused"}, "train_zoo.checkpoints: are recorded by the loop trainer"),
        ({"checkpoint_queries": 0}, "train_zoo.checkpoint_queries: must be within 1..10000"),
    ],
)
def test_checkpoint_params_are_checked(override, needle):
    from kennen.errors import KennenError

    with pytest.raises(KennenError, match=needle.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        TrainParams(shards=(0,), epochs=2, **override).check("train_zoo")

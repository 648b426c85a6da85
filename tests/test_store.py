import numpy as np
import pytest
import torch

from kennen import data as mnist_data
from kennen.zoo.net import MnistNet, NetConfig
from kennen.zoo.store import load_model, read_table, shard_tables, state_dicts, write_shard
from kennen.zoo.train import TrainSpec, load_train_data, train_model


def test_shard_round_trip_rebuilds_identical_models(idx_dir, tmp_path):
    mnist_data.save(mnist_data.read_idx_dir(idx_dir), tmp_path / "m.npz")
    d = load_train_data(str(tmp_path / "m.npz"), 400, 20, 256)
    cfgs = {3: NetConfig("prelu", True, True, 3, 3, 3), 1: NetConfig("tanh", False, True, 5, 2, 2)}
    results = [train_model(TrainSpec(i, c, "adam", 128, "half_1", torch_seed=i, epochs=1), d) for i, c in cfgs.items()]
    write_shard(tmp_path / "shards", 7, results)

    assert [p.name for p in shard_tables(tmp_path / "shards")] == ["shard-7.csv"]
    rows = read_table(tmp_path / "shards" / "shard-7.csv")
    assert [r["model_id"] for r in rows] == [1, 3]  # sorted by id whatever the completion order
    assert not list((tmp_path / "shards").glob(".*.tmp"))
    assert set(state_dicts(tmp_path / "shards" / "shard-7.safetensors")) == {1, 3}

    x = d.test_x[:16]
    for r in results:
        cfg = cfgs[r.model_id]
        row = {"model_id": r.model_id, "shard": 7, **cfg.__dict__}
        model = load_model(tmp_path / "shards", row)
        net = MnistNet(cfg)
        net.load_state_dict({k: torch.from_numpy(v) for k, v in r.state.items()})
        with torch.no_grad():
            np.testing.assert_array_equal(model(x).numpy(), net.eval()(x).numpy())


@pytest.mark.slow
def test_shard_bytes_do_not_depend_on_the_process(tmp_path):
    """Two processes writing the same results give byte-identical shards (DVC hashes them)."""
    import subprocess
    import sys

    code = """
import sys, numpy as np
from pathlib import Path
from kennen.zoo.store import write_shard
from kennen.zoo.train import TrainResult
r = [TrainResult(i, {"a.weight": np.full(3, i, np.float32), "b.bias": np.ones(2, np.float32)}, 90.0, 0.1, 1.0, False)
     for i in (4, 2)]
write_shard(Path(sys.argv[1]), 3, r)
"""
    for name in ("a", "b"):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / name)], check=True)
    assert (tmp_path / "a/shard-3.safetensors").read_bytes() == (tmp_path / "b/shard-3.safetensors").read_bytes()


def test_outputs_get_the_umask_mode_and_a_folder_is_not_a_file(tmp_path):
    """Every output, safetensors files included (safetensors recreates the file it writes), is created as
    any other file is: 0666 less the umask."""
    import os

    from safetensors.numpy import save_file

    from kennen.errors import KennenError
    from kennen.io import atomic_path, save_npz, write_json

    old = os.umask(0o027)
    try:
        write_json(tmp_path / "m.json", {"a": 1})
        save_npz(tmp_path / "a.npz", x=np.zeros(2))
        with atomic_path(tmp_path / "w.safetensors") as tmp:  # as write_shard writes a shard
            save_file({"w": np.zeros(2, np.float32)}, str(tmp))
    finally:
        os.umask(old)
    for name in ("m.json", "a.npz", "w.safetensors"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640, name
    with pytest.raises(KennenError, match="is a folder"):
        write_json(tmp_path, {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "m.json", "w.safetensors"]


def _with_checkpoints(model_id: int, epochs: int, queries: int):
    from kennen.zoo.train import TrainResult

    outputs = np.log(np.random.default_rng(model_id).dirichlet(np.ones(10), (epochs, queries))).astype(np.float32)
    return TrainResult(model_id, {"w": np.arange(3, dtype=np.float32)}, 91.0, 0.2, 1.0, False, outputs)


def test_partials_keep_the_checkpoint_outputs(tmp_path):
    from kennen.zoo.store import load_partials, save_partial

    r = _with_checkpoints(5, 2, 7)
    save_partial(tmp_path, r, "digest")
    back = load_partials(tmp_path, {5: "digest"})[5]
    assert set(back.state) == {"w"}  # the outputs are not a weight
    np.testing.assert_array_equal(back.checkpoints, r.checkpoints)


def test_checkpoint_file_round_trip_and_refusals(tmp_path):
    from kennen.errors import KennenError
    from kennen.zoo.store import read_checkpoints, write_checkpoints

    results = [_with_checkpoints(i, 2, 7) for i in (9, 4)]
    write_checkpoints(tmp_path, 1, results, (0.5, 1.0), np.arange(100, 107))
    c = read_checkpoints(tmp_path, 1, [4, 9])
    assert c.epochs == (0.5, 1.0) and c.query_index.tolist() == list(range(100, 107))
    np.testing.assert_array_equal(c.outputs[9], results[0].checkpoints)
    with pytest.raises(KennenError, match="holds no checkpoint outputs of model 3"):
        read_checkpoints(tmp_path, 1, [3])
    with pytest.raises(KennenError, match=r"shard-2\.safetensors: checkpoint file not found"):
        read_checkpoints(tmp_path, 2, [4])
    with pytest.raises(KennenError, match=r"expected \(3, 7, 10\)"):
        write_checkpoints(tmp_path, 3, results, (0.5, 1.0, 1.5), np.arange(7))
    (tmp_path / "shard-5.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(KennenError, match=r"shard-5\.safetensors: unreadable checkpoint file"):
        read_checkpoints(tmp_path, 5, [4])
    write_checkpoints(tmp_path, 6, results, (), np.zeros(0, int))  # none recorded: an empty file
    assert read_checkpoints(tmp_path, 6, [4, 9]).outputs == {}

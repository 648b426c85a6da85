"""Shared fixtures: synthetic MNIST-like IDX data and a tiny copy of the pipeline."""

from __future__ import annotations

import contextlib
import importlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from kennen.data import IDX_FILES, write_idx

REPO = Path(__file__).resolve().parents[1]
# git with an identity, for commits in temporary repos on machines that have none configured.
GIT = ["git", "-c", "user.name=kennen-tests", "-c", "user.email=tests@kennen.invalid"]

# Tiny overrides of params.yaml: every key DVC tracks must still exist, so tests start from the real file.
TINY = {
    "seed": 7,
    "sample_zoo": {
        "n_models": 8,
        "shard_size": 4,
        "groups": [{"n_configs": 1, "n_seeds": 3}],
        "space": {"pool": [True], "n_conv": [2], "n_fc": [2], "ks": [5]},
    },
    "train_zoo": {"shards": [0, 1], "epochs": 2, "pool_size": 400, "checkpoints": [1.0], "checkpoint_queries": 20},
    "prune": {"min_acc": 0},
    "ensembles": {"max_members": 3, "max_boxes_per_config": None},  # every subset: 3 pairs + 1 triple
    "queries": {"n_max": 20},
    "splits": {"test_fraction": 0.3},
    "kennen_o": {"n_queries": 5, "hidden": 16, "optimisers": {"default": {"epochs": 3}, "official": {"epochs": 3}}},
    "kennen_o_sweep": {
        "n_train": [2, 4, 5000],
        "n_queries": [1, 5],
        "outputs": ["prob", "top1", "bottom1"],
        "subsets": 2,
        "checkpoint_subsets": 1,
    },
    "levers": {"n_queries": [2, 5], "small_hidden": 4, "pca_dim": 3, "knn_k": 2},
    "kennen_i": {"epochs": 1, "step": {"batch": 4}},
    "kennen_io": {
        "n_queries": 5,
        "schedule": [
            {"train": "metamodel", "epochs": 2},
            {"train": "queries", "epochs": 1},
            {"train": "metamodel", "epochs": 1},
        ],
        "e_schedule": [{"train": "metamodel", "epochs": 2}, {"train": "queries", "epochs": 1}],
        "query_boxes": 4,
        "step": {"batch": 4},
    },
    "defences": {
        "settings": [
            "round:1",
            "topk:1",
            "label",
            "noise:0.1",
            "temperature:5",
            "reverse_sigmoid:1.0",
            "misinformation:0.9",
        ],
        "whitebox_iter": 5,
    },
    "imagenet_probe": {
        "families": {"squeezenet": ["squeezenet1_0", "squeezenet1_1"], "resnet": ["resnet18", "resnet34"]},
        "n_queries": [5, 20],
        "folds": 2,
        "draws": 1,
        "hidden": 16,
        "optimiser": {"epochs": 3, "batch": 4},
        "offline": {"seeds": 2, "steps": 1, "batch": 4, "pool": 20},
    },
    "imagenet_attack": {"steps": 1, "images": 6, "probe_queries": 5},
    "transfer": {
        "regimes": {"zoo": {"n_boxes": 2, "epochs": 1, "pool": 400}, "long": {"n_boxes": 2, "epochs": 2, "pool": 400}},
        "min_acc": 0,
    },
}


def free_port() -> int:
    """A loopback TCP port nothing listens on (the OS picks it, then it is released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def synthetic_mnist(n_train: int = 600, n_test: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """Learnable stand-in for MNIST: one random stroke template per digit plus noise, as uint8."""
    rng = np.random.default_rng(seed)
    templates = (rng.random((10, 28, 28)) > 0.8) * 200.0

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 10, n)
        x = np.clip(templates[y] + rng.normal(0, 40, (n, 28, 28)), 0, 255).astype(np.uint8)
        return x, y.astype(np.uint8)

    xtr, ytr = make(n_train)
    xte, yte = make(n_test)
    return {"train_images": xtr, "train_labels": ytr, "test_images": xte, "test_labels": yte}


@pytest.fixture(scope="session")
def idx_dir(tmp_path_factory) -> Path:
    """A folder of gzipped IDX files, laid out as torchvision stores MNIST."""
    folder = tmp_path_factory.mktemp("idx")
    for key, array in synthetic_mnist().items():
        write_idx(folder / f"{IDX_FILES[key]}.gz", array)
    return folder


def deep_update(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and v else v
    return out


def tiny_params(idx: Path, base: str = "params.yaml", **overrides) -> dict:
    """``TINY`` over the params file ``base`` (a profile, relative to the repository), then ``overrides``."""
    params = yaml.safe_load((REPO / base).read_text())
    params = deep_update(params, TINY)
    params["imagenet_probe"]["families"] = TINY["imagenet_probe"]["families"]  # a replacement, not a merge
    params["transfer"]["regimes"] = TINY["transfer"]["regimes"]
    params["data"] = params["data"] | {"source": "idx", "idx_dir": str(idx)}
    return deep_update(params, overrides)


def dvc_env() -> dict[str, str]:
    """Environment for DVC subprocesses: stages run ``python``, which must be this interpreter."""
    bin_dir = str(Path(sys.executable).parent)
    return os.environ | {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "KENNEN_EXECUTOR": os.environ.get("KENNEN_EXECUTOR", "serial"),
    }


def dvc(cwd: Path, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run the DVC CLI of this interpreter's environment in ``cwd``."""
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True, env=dvc_env(), **kw
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def pipeline_copy(tmp_path, idx_dir) -> Path:
    """A temporary git + DVC repo holding this project's pipeline with tiny params."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("kennen", "stages"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(idx_dir), sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    dvc(root, "init", "-q")
    dvc(root, "config", "core.analytics", "false")
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "tiny pipeline"], cwd=root, check=True)
    return root


def ctrl_c_default() -> None:
    """In the child: Ctrl-C's default action, as from a terminal. A suite started in the background (``nohup``,
    ``cmd &``) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt for it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# Fixtures that train a tiny zoo or run pipeline stages: every test that uses one is slow, whatever its own time.
TRAINING_FIXTURES = {"tiny_upstream", "tiny_zoo", "tiny_pipeline", "pipeline_copy"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


# --- a tiny pipeline built by the real stages, in-process, from their dvc.yaml command lines ---------------------

# The stages every metamodel stage reads; early stopping that a tiny zoo can carve.
TINY_UPSTREAM = ("data", "sample_zoo", ("train_zoo", 0), ("train_zoo", 1), "zoo_table", "prune", "ensembles",
                 "queries", "splits", "transfer_boxes")  # fmt: skip
TINY_EARLY_STOP = {"val_fraction": 0.25, "patience": 2, "min_val": 1}


@contextlib.contextmanager
def chdir(path: Path):
    """``contextlib.chdir`` (Python 3.11+), for Python 3.10."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def run_stage(root: Path, stage: str | tuple[str, int | str], *extra: str) -> int:
    """``main`` of a pipeline stage (``name`` or ``(name, shard or foreach item)``) with its ``dvc.yaml`` command
    line, in ``root``; ``extra`` arguments are appended."""
    name, item = stage if isinstance(stage, tuple) else (stage, None)
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][name]
    cmd = spec["do"]["cmd"] if "foreach" in spec else spec["cmd"]
    argv = shlex.split(cmd.replace("${item.shard}", str(item)).replace("${item}", str(item)))
    assert argv[:2] == ["python", "-m"]
    with chdir(root):
        return importlib.import_module(argv[2]).main([*argv[3:], *extra])


@pytest.fixture(scope="session")
def tiny_upstream(tmp_path_factory, idx_dir) -> Path:
    """``TINY_UPSTREAM`` run once on the tiny params (with ``TINY_EARLY_STOP``), serially: copy it with
    :func:`tiny_copy` rather than writing into it."""
    root = tmp_path_factory.mktemp("tiny_upstream")
    params = tiny_params(idx_dir, kennen_o={"early_stop": TINY_EARLY_STOP})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KENNEN_EXECUTOR", "serial")
        for stage in TINY_UPSTREAM:
            assert run_stage(root, stage) == 0, stage
    return root


def tiny_copy(upstream: Path, tmp_path_factory, name: str) -> Path:
    """A module's own copy of the tiny upstream pipeline, to run further stages in."""
    root = tmp_path_factory.mktemp(name) / "repo"
    shutil.copytree(upstream, root)
    return root

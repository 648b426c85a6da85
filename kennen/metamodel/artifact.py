"""Trained metamodels on disk: what ``kennen whiten`` loads.

Each metamodel is two files next to each other:

- ``<name>.safetensors``: the tensors. ``mlp.<parameter>`` for kennen-o and
  kennen-io (a ``KennenO`` state dict), ``queries`` for their query images;
  kennen-i has ``queries.<target>`` and ``fallback.<target>``. Query images
  are pixels in [0, 1], [Q, 1, 28, 28].
- ``<name>.json``: what the tensors mean (method, output type, attribute order,
  hidden width), the held-out accuracy per attribute, and the zoo and params
  they came from (``zoo``), so that a user can tell which run made them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from kennen.errors import KennenError
from kennen.io import atomic_path, write_text
from kennen.limits import loads_bounded, read_bounded
from kennen.schemas import check_metamodel

ZOO_PARAMS = {  # section -> keys that say which zoo a metamodel learned from
    "sample_zoo": ("n_models",),
    "train_zoo": ("epochs", "pool_size"),
    "prune": ("min_acc",),
    "ensembles": ("max_members", "max_boxes_per_config"),
}


def zoo_provenance(params: dict[str, Any], n_train: int, n_test: int) -> dict[str, Any]:
    """The zoo's defining params and the R split's sizes, for a metamodel's JSON."""
    zoo = {f"{s}.{k}": params.get(s, {}).get(k) for s, keys in ZOO_PARAMS.items() for k in keys}
    return {"seed": params["seed"], **zoo, "n_train_boxes": n_train, "n_test_boxes": n_test}


def data_digest(paths: list[Path]) -> str:
    """SHA-256 over the bytes of the files a metamodel learned from (folders: their files, sorted), in order.

    With the zoo params it names the data exactly: an audit can tell whether two metamodels saw the same boxes.
    """
    h = hashlib.sha256()
    for path in paths:
        root = Path(path)
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for f in files:
            h.update((f.relative_to(root).as_posix() if root.is_dir() else f.name).encode() + b"\0")
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def save_metamodel(stem: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Atomically write ``stem.safetensors`` and ``stem.json``."""
    with atomic_path(stem.with_suffix(".safetensors")) as tmp:
        save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(tmp))
    write_text(stem.with_suffix(".json"), json.dumps(meta, indent=1) + "\n")


def load_metamodel(stem: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, meta) of a metamodel written by ``save_metamodel``; a missing or corrupt file is a KennenError."""
    name = stem.name
    hint = f"run `dvc repro {name}` (or `dvc pull`) to build it"
    weights, meta_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    for path in (weights, meta_path):
        if not path.is_file():
            raise KennenError(f"{path}: metamodel not found; {hint}")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise KennenError(f"{weights}: corrupt metamodel file ({e}); {hint}") from None
    try:
        meta = loads_bounded(read_bounded(meta_path), meta_path)  # a stranger's metamodel may be handed over
    except (OSError, ValueError) as e:
        raise KennenError(f"{meta_path}: corrupt metamodel description ({e}); {hint}") from None
    check_metamodel(stem, tensors, meta)
    return tensors, meta

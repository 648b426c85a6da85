"""Zoo storage: shard files of about ``shard_size`` models plus flat tables.

A shard is two files written by one ``train_zoo@<shard>`` stage:

- ``shard-N.safetensors``: every model's state_dict, keys ``<model_id>/<param>``
  (safetensors: no pickles, memory-mapped reads);
- ``shard-N.csv``: one row per model with the training outcome
  (:data:`OUTCOME_COLUMNS`).

The weights file is written first and the table last, each atomically; DVC
records the stage only after both exist, so a killed stage leaves no
half-written shard and reruns only the unfinished ones.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.numpy import save_file
from safetensors.torch import load_file

from kennen.attributes import KEYS
from kennen.errors import KennenError
from kennen.io import atomic_path, write_csv
from kennen.zoo.net import MnistNet, NetConfig
from kennen.zoo.train import TrainResult

if TYPE_CHECKING:
    from kennen.schemas import TableSchema

OUTCOME_COLUMNS = ("model_id", "test_acc", "train_loss", "train_seconds", "diverged")
# Columns of the sample table (data/zoo/sample.csv), one row per model to train.
SAMPLE_COLUMNS = ("model_id", "shard", "config", "seed", "torch_seed", *KEYS, "n_params")
# Columns of the flat zoo table (data/zoo/models.csv), one row per trained model.
TABLE_COLUMNS = (*SAMPLE_COLUMNS, "test_acc", "train_loss", "train_seconds", "diverged")
INT_COLUMNS = {"model_id", "shard", "config", "seed", "torch_seed", "n_params", "diverged", "ensemble_id", "n_members"}
FLOAT_COLUMNS = {"test_acc", "train_loss", "train_seconds"}


def shard_name(shard: int) -> str:
    return f"shard-{shard}"  # unpadded: DVC's matrix writes ${item.shard} as is


def write_shard(folder: Path, shard: int, results: Iterable[TrainResult]) -> None:
    """Write one shard's weights and outcome table atomically, in model-id order."""
    results = sorted(results, key=lambda r: r.model_id)
    tensors = {f"{r.model_id}/{k}": np.ascontiguousarray(v) for r in results for k, v in r.state.items()}
    # One metadata entry: safetensors writes several in random (hash-map) order, which would make
    # identical shards differ in bytes from run to run.
    meta = {
        "kennen": json.dumps(
            {"format": "kennen-zoo-shard/1", "shard": shard, "model_ids": [r.model_id for r in results]}
        )
    }
    with atomic_path(folder / f"{shard_name(shard)}.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    rows = [
        {
            "model_id": r.model_id,
            "test_acc": round(r.test_acc, 4),
            "train_loss": "nan" if math.isnan(r.train_loss) else round(r.train_loss, 6),
            "train_seconds": round(r.seconds, 3),
            "diverged": int(r.diverged),
        }
        for r in results
    ]
    write_csv(folder / f"{shard_name(shard)}.csv", rows, OUTCOME_COLUMNS)


def shard_tables(folder: Path) -> list[Path]:
    """The shard outcome tables in ``folder`` (DVC also keeps a .gitignore there)."""
    return sorted(folder.glob("shard-[0-9]*.csv"), key=lambda p: int(p.stem.split("-")[1]))


def read_table(path: Path, schema: TableSchema | None = None) -> list[dict[str, Any]]:
    """Read a zoo table with typed values, checked against ``schema``; any violation is a KennenError.

    Args:
        path: a sample, models, shard outcome, ensembles or boxes table.
        schema: one of :mod:`kennen.schemas`' table schemas; None: the one for the file's name.
    """
    # Imported here: kennen.schemas reads this module's column constants.
    from kennen import schemas

    return schemas.read_table(path, schema)


def load_model(shards_dir: Path, row: dict[str, Any]) -> MnistNet:
    """Rebuild one zoo model from its table row and its shard's weights."""
    path = shards_dir / f"{shard_name(row['shard'])}.safetensors"
    if not path.is_file():
        raise KennenError(f"{path}: shard file not found (run `dvc repro` or `dvc pull`)")
    prefix = f"{row['model_id']}/"
    state = {k[len(prefix) :]: v for k, v in load_file(str(path)).items() if k.startswith(prefix)}
    model = MnistNet(NetConfig.of(row))
    model.load_state_dict(state)
    return model.eval()


def state_dicts(path: Path) -> dict[int, dict[str, torch.Tensor]]:
    """All state_dicts of one shard, keyed by model id."""
    out: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in load_file(str(path)).items():
        model_id, name = key.split("/", 1)
        out.setdefault(int(model_id), {})[name] = value
    return out

"""Zoo storage: shard files of about ``shard_size`` models plus flat tables.

A shard is two files written by one ``train_zoo@<shard>`` stage:

- ``shard-N.safetensors``: every model's state_dict, keys ``<model_id>/<param>``
  (safetensors: no pickles, memory-mapped reads);
- ``shard-N.csv``: one row per model with the training outcome
  (:data:`OUTCOME_COLUMNS`).

The weights file is written first and the table last, each atomically; DVC
records the stage only after both exist, so a killed stage leaves no
half-written shard and reruns only the unfinished ones.

Within a shard, the unit of resume is one model: each finished model is kept
in a side folder (:func:`save_partial`, outside every DVC output) under a
fingerprint of everything that shapes it, and a rerun trains only the models
whose partial is missing (:func:`load_partials`). Partials hold the exact
floats, so the assembled shard has the bytes of an uninterrupted run.

The sample is written one table per shard (:func:`write_sample`), so that
``train_zoo@N`` depends only on its own rows: growing the zoo leaves the
shards already trained untouched. Wall-clock times are never in these tables
(identical weights give identical tables, so nothing downstream reruns); they
go to the log and to ``train_zoo``'s timing metrics.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file
from safetensors.torch import load_file

from kennen import schemas
from kennen.errors import KennenError
from kennen.io import atomic_path, write_csv
from kennen.zoo.net import MnistNet, NetConfig
from kennen.zoo.train import TrainResult

# The tables' columns, defined with their schemas.
OUTCOME_COLUMNS, SAMPLE_COLUMNS, TABLE_COLUMNS = schemas.OUTCOME_COLUMNS, schemas.SAMPLE_COLUMNS, schemas.TABLE_COLUMNS


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
            "diverged": int(r.diverged),
        }
        for r in results
    ]
    write_csv(folder / f"{shard_name(shard)}.csv", rows, OUTCOME_COLUMNS)


def write_checkpoints(
    folder: Path, shard: int, results: Iterable[TrainResult], epochs: Sequence[float], query_index: np.ndarray
) -> None:
    """Write one shard's checkpoint outputs atomically: ``folder/shard-N.safetensors``, key ``<model_id>``.

    Each tensor is the model's log-probabilities on the first ``len(query_index)`` query images at each of
    ``epochs``, float32 [checkpoints, queries, 10]; the metadata names the epochs and the images.
    """
    results = sorted(results, key=lambda r: r.model_id)
    tensors = {str(r.model_id): np.ascontiguousarray(r.checkpoints, np.float32) for r in results if len(epochs)}
    for model_id, t in tensors.items():
        if t.shape != (len(epochs), len(query_index), 10):
            raise KennenError(f"model {model_id}: checkpoint outputs of shape {t.shape}, expected "
                              f"{(len(epochs), len(query_index), 10)} (train_zoo.checkpoints)")  # fmt: skip
    meta = {"kennen": json.dumps({
        "format": "kennen-zoo-checkpoints/1", "shard": shard, "model_ids": [r.model_id for r in results],
        "epochs": [float(e) for e in epochs], "query_index": [int(i) for i in query_index],
    })}  # fmt: skip
    with atomic_path(Path(folder) / f"{shard_name(shard)}.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata=meta)


@dataclass(frozen=True)
class Checkpoints:
    """The checkpoint outputs of some zoo models: what :func:`read_checkpoints` returns."""

    epochs: tuple[float, ...]
    query_index: np.ndarray  # int64 [queries]: MNIST test-image indices
    outputs: dict[int, np.ndarray]  # model id -> float32 [len(epochs), queries, 10]


def read_checkpoints(folder: Path, shard: int, model_ids: Iterable[int]) -> Checkpoints:
    """The checkpoint outputs of ``model_ids`` in one shard's file, checked; a bad file is one KennenError line."""
    path = Path(folder) / f"{shard_name(shard)}.safetensors"
    if not path.is_file():
        raise KennenError(f"{path}: checkpoint file not found (run the train_zoo stage, or `dvc pull`)")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = json.loads((f.metadata() or {}).get("kennen", "{}"))
            if meta.get("format") != "kennen-zoo-checkpoints/1":
                raise KennenError(f"{path}: not a kennen checkpoint file (format {meta.get('format')!r})")
            epochs, index = tuple(float(e) for e in meta["epochs"]), np.asarray(meta["query_index"], np.int64)
            want = (len(epochs), len(index), 10)
            outputs = {}
            for model_id in model_ids if epochs else ():
                if str(model_id) not in f.keys():  # noqa: SIM118 (safe_open has no iterator)
                    raise KennenError(f"{path}: holds no checkpoint outputs of model {model_id}")
                t = f.get_tensor(str(model_id))
                if t.shape != want or t.dtype != np.float32 or not np.isfinite(t).all():
                    raise KennenError(f"{path}: model {model_id}'s checkpoint outputs are {t.dtype} {t.shape}, "
                                      f"expected finite float32 {want}")  # fmt: skip
                outputs[int(model_id)] = t
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as e:
        raise KennenError(f"{path}: unreadable checkpoint file ({type(e).__name__}: {e})") from None
    return Checkpoints(epochs, index, outputs)


def shard_tables(folder: Path) -> list[Path]:
    """The shard outcome tables in ``folder`` (DVC also keeps a .gitignore there)."""
    return sorted(folder.glob("shard-[0-9]*.csv"), key=lambda p: int(p.stem.split("-")[1]))


def read_table(path: Path, schema: schemas.TableSchema | None = None) -> list[dict[str, Any]]:
    """Read a zoo table with typed values, checked against ``schema``; any violation is a KennenError.

    Args:
        path: a sample, models, shard outcome, ensembles or boxes table.
        schema: one of :mod:`kennen.schemas`' table schemas; None: the one for the file's name.
    """
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


def write_sample(folder: Path, rows: list[dict[str, Any]]) -> None:
    """Write the sample as one table per shard, ``folder/shard-N.csv``, and drop stale shard tables."""
    folder = Path(folder)
    shards = sorted({r["shard"] for r in rows})
    for shard in shards:
        write_csv(folder / f"{shard_name(shard)}.csv", [r for r in rows if r["shard"] == shard], SAMPLE_COLUMNS)
    for stale in shard_tables(folder) if folder.is_dir() else []:
        if int(stale.stem.split("-")[1]) not in shards:
            stale.unlink()


def read_sample(path: Path) -> list[dict[str, Any]]:
    """The sample table: a folder of per-shard tables (in shard order) or one CSV file."""
    path = Path(path)
    if not path.is_dir():
        return read_table(path, schemas.SAMPLE)
    tables = shard_tables(path)
    if not tables:
        raise KennenError(f"{path}: holds no shard-N.csv sample tables (run the sample_zoo stage)")
    return [row for table in tables for row in read_table(table, schemas.SAMPLE)]


def fingerprint(spec: Any, **settings: Any) -> str:
    """A digest of everything that shapes one trained model: its task and the training settings."""
    text = json.dumps({"spec": repr(spec), "torch": torch.__version__, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


CHECKPOINTS_KEY = "checkpoints/outputs"  # a partial's checkpoint outputs (no state_dict key holds a slash)


def _partial_path(folder: Path, model_id: int) -> Path:
    return Path(folder) / f"model-{model_id}.safetensors"


def save_partial(folder: Path, result: TrainResult, digest: str) -> None:
    """Keep one finished model of a shard in flight (weights, exact outcome floats and its fingerprint)."""
    meta = {
        "kennen": json.dumps(
            {
                "format": "kennen-zoo-partial/1",
                "fingerprint": digest,
                "model_id": result.model_id,
                "test_acc": result.test_acc,
                "train_loss": result.train_loss,
                "seconds": result.seconds,
                "diverged": result.diverged,
            }
        )
    }
    tensors = {k: np.ascontiguousarray(v) for k, v in result.state.items()}
    if len(result.checkpoints):
        tensors[CHECKPOINTS_KEY] = np.ascontiguousarray(result.checkpoints)
    Path(folder).mkdir(parents=True, exist_ok=True)
    with atomic_path(_partial_path(folder, result.model_id)) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_partials(folder: Path, digests: dict[int, str]) -> dict[int, TrainResult]:
    """The kept models whose fingerprint still matches ``digests`` (model id -> fingerprint).

    A partial that is unreadable, or was made with other settings, is ignored: that model trains again.
    """
    out: dict[int, TrainResult] = {}
    for model_id, digest in digests.items():
        path = _partial_path(folder, model_id)
        if not path.is_file():
            continue
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = json.loads(f.metadata()["kennen"])
                state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iterator)
        except Exception:  # a torn or foreign file: train the model again
            continue
        if meta.get("fingerprint") != digest or meta.get("model_id") != model_id:
            continue
        ckpt = state.pop(CHECKPOINTS_KEY, None)
        scores = (meta["test_acc"], meta["train_loss"], meta["seconds"], bool(meta["diverged"]))
        out[model_id] = (
            TrainResult(model_id, state, *scores) if ckpt is None else TrainResult(model_id, state, *scores, ckpt)
        )
    return out

"""Query images and the black boxes' outputs on them (paper §4).

The queries are ``n_max`` MNIST *test* images drawn with the base seed (the
paper says "validation images"; the official ``mnist_val.pkl`` appears to be
the test set, unverified). Every kept single model and every ensemble answers
all of them once; metamodels later read the first ``n`` queries, so the
query sets of a sweep are nested, as in the official code.

The black boxes are one table (``boxes.csv``): kept single models first, then
ensembles, with their 12 attributes; row ``i`` of the output array is box ``i``.
An ensemble's output is the mean of its members' log-softmax outputs (§2).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from kennen.attributes import KEYS
from kennen.config import require
from kennen.data import query_indices
from kennen.errors import KennenError
from kennen.io import save_npz
from kennen.limits import load_arrays
from kennen.schemas import BOXES, check_outputs
from kennen.zoo.ensembles import ensemble_mean
from kennen.zoo.net import MnistNet, NetConfig
from kennen.zoo.store import read_checkpoints, read_table


@dataclass(frozen=True)
class QueryParams:
    """``queries`` section of params.yaml."""

    n_max: int = 1000

    def check(self, where: str) -> None:
        require(
            1 <= self.n_max <= 10_000,
            f"{where}.n_max",
            f"must be within 1..10000 (MNIST test images), got {self.n_max}",
        )


def draw_queries(n_images: int, n_max: int, seed: int) -> np.ndarray:
    """Indices of ``n_max`` distinct test images, deterministic from ``seed`` (:func:`kennen.data.query_indices`)."""
    return query_indices(n_images, n_max, seed)


def box_table(models: list[dict[str, Any]], kept: list[int], ensembles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Black boxes in output-row order: kept single models (by id), then ensembles (by id)."""
    by_id = {m["model_id"]: m for m in models}
    rows = [
        {"kind": "single", "id": i, "members": str(i), **{k: by_id[i][k] for k in ("config", *KEYS)}}
        for i in sorted(kept)
    ]
    rows += [
        {"kind": "ensemble", "id": e["ensemble_id"], "members": e["members"], **{k: e[k] for k in ("config", *KEYS)}}
        for e in ensembles
    ]
    return [{"box": i, **r} for i, r in enumerate(rows)]


@torch.inference_mode()
def model_outputs(
    shard_path: str, models: list[tuple[int, NetConfig]], images: np.ndarray, batch: int = 250
) -> dict[int, np.ndarray]:
    """Log-probabilities [Q, 10] of the listed models of one shard on ``images`` [Q, 1, 28, 28].

    Reads only these models' tensors from the shard, and feeds the queries in batches of
    ``batch`` (measured: large batches of full-resolution activations are slower on one core).
    """
    torch.set_num_threads(1)
    x = torch.from_numpy(images)
    out = {}
    with safe_open(shard_path, framework="pt") as f:
        keys = list(f.keys())
        for model_id, cfg in models:
            prefix = f"{model_id}/"
            net = MnistNet(cfg)
            net.load_state_dict({k[len(prefix) :]: f.get_tensor(k) for k in keys if k.startswith(prefix)})
            net.eval()
            out[model_id] = torch.cat([net(x[i : i + batch]) for i in range(0, len(x), batch)]).numpy()
    return out


def shard_task(task: tuple[str, list[tuple[int, NetConfig]]], images: np.ndarray) -> dict[int, np.ndarray]:
    """Executor entry point (picklable, importable on Dask workers): (shard path, models) -> outputs."""
    return model_outputs(task[0], task[1], images)


def ensemble_outputs(single: dict[int, np.ndarray], members: list[list[int]], n_queries: int) -> np.ndarray:
    """[E, Q, 10]: the mean of the members' log-softmax outputs, per ensemble (E may be 0)."""
    if not members:
        return np.zeros((0, n_queries, 10), dtype=np.float32)
    ids = sorted({m for ms in members for m in ms})
    pos = {m: i for i, m in enumerate(ids)}
    stacked = torch.from_numpy(np.stack([single[m] for m in ids]).astype(np.float32))
    return ensemble_mean(stacked, [[pos[m] for m in ms] for ms in members]).numpy()


def save_outputs(path: Path, outputs: np.ndarray, query_index: np.ndarray) -> None:
    """Atomically write outputs [N, Q, 10] float32 and the queries' test-image indices."""
    save_npz(path, outputs=outputs.astype(np.float32), query_index=query_index)


def load_outputs(path: Path, boxes: list[dict[str, Any]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(outputs [N, Q, 10] float32, query_index [Q]), checked (:func:`kennen.schemas.check_outputs`); with
    ``boxes``, one row per box, and each ensemble's row the mean of its members'."""
    try:
        arrays = load_arrays(path, ("outputs", "query_index"))
        outputs, query_index = arrays["outputs"], arrays["query_index"]
    except FileNotFoundError:
        raise KennenError(f"{path}: file not found (run `dvc repro queries` or `dvc pull`)") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise KennenError(f"{path}: corrupt outputs file ({e})") from None
    if outputs.ndim != 3 or outputs.shape[2] != 10 or outputs.dtype != np.float32:
        raise KennenError(f"{path}: outputs must be float32 [boxes, queries, 10], got {outputs.dtype} {outputs.shape}")
    if query_index.shape != (outputs.shape[1],) or query_index.dtype.kind not in "iu":
        raise KennenError(
            f"{path}: query_index must be {outputs.shape[1]} integers, got {query_index.dtype} {query_index.shape}"
        )
    if boxes is not None and len(boxes) != len(outputs):
        raise KennenError(
            f"{path}: {len(outputs)} rows of outputs for {len(boxes)} boxes in the boxes table (rerun queries)"
        )
    check_outputs(path, outputs, query_index, boxes)
    return outputs, query_index


@dataclass(frozen=True)
class CheckpointBoxes:
    """Extra training boxes (ours): kept zoo models caught part-way through their training.

    Row ``i`` is the outputs of the model of box ``box[i]`` (a single-model row of ``boxes.csv``, whose
    attributes it shares) after ``epoch[i]`` epochs. They are never test boxes: a metamodel may learn from
    the checkpoints of the models of its training boxes only (:func:`kennen.metamodel.cv.checkpoint_rows`).
    """

    outputs: np.ndarray  # float32 [K, Q, 10] log-probabilities on the stage's queries
    box: np.ndarray  # int64 [K]: the row of the final model in boxes.csv
    epoch: np.ndarray  # float32 [K]

    def save(self, path: Path) -> None:
        """Atomically write the three arrays to ``path`` (``.npz``)."""
        save_npz(path, outputs=self.outputs.astype(np.float32), box=self.box, epoch=self.epoch.astype(np.float32))


def checkpoint_boxes(
    models: list[dict[str, Any]], kept: list[int], folder: Path, query_index: np.ndarray
) -> CheckpointBoxes:
    """The checkpoint boxes of the kept models, from the ``train_zoo`` stage's checkpoint files in ``folder``.

    Every shard must have recorded the same epochs, on a prefix of the queries that holds ``query_index``.
    """
    by_id, position = {m["model_id"]: m for m in models}, {i: pos for pos, i in enumerate(sorted(kept))}
    by_shard: dict[int, list[int]] = {}
    for i in sorted(kept):
        by_shard.setdefault(by_id[i]["shard"], []).append(i)
    n = len(query_index)
    outputs, box, epoch, epochs = [], [], [], None
    for shard, ids in sorted(by_shard.items()):
        c = read_checkpoints(folder, shard, ids)
        if epochs is not None and c.epochs != epochs:
            raise KennenError(f"{folder}: shards recorded different checkpoints ({list(epochs)}, {list(c.epochs)}); "
                              "retrain the zoo with one train_zoo.checkpoints")  # fmt: skip
        epochs = c.epochs
        if c.epochs and not np.array_equal(c.query_index[:n], query_index):
            raise KennenError(f"{folder}/shard-{shard}.safetensors: checkpoint outputs on {len(c.query_index)} "
                              f"query images that do not begin with the queries stage's {n}: train_zoo.checkpoint_queries "
                              "must be at least queries.n_max, with the same seed")  # fmt: skip
        for i in ids:
            for k, e in enumerate(c.epochs):
                outputs.append(c.outputs[i][k, :n])
                box.append(position[i])
                epoch.append(e)
    stacked = np.stack(outputs) if outputs else np.zeros((0, n, 10), np.float32)
    return CheckpointBoxes(stacked.astype(np.float32), np.asarray(box, np.int64), np.asarray(epoch, np.float32))


def load_checkpoint_boxes(path: Path, boxes: list[dict[str, Any]], n_queries: int) -> CheckpointBoxes:
    """The ``queries`` stage's checkpoint boxes, checked against the boxes table and the outputs' queries."""
    try:
        a = load_arrays(path, ("outputs", "box", "epoch"))
    except FileNotFoundError:
        raise KennenError(f"{path}: file not found (run `dvc repro queries` or `dvc pull`)") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise KennenError(f"{path}: corrupt checkpoint boxes file ({e})") from None
    outputs, box, epoch = a["outputs"], a["box"], a["epoch"]
    k = len(outputs)
    if outputs.dtype != np.float32 or outputs.shape[1:] != (n_queries, 10):
        raise KennenError(
            f"{path}: outputs must be float32 [boxes, {n_queries}, 10], got {outputs.dtype} {outputs.shape}"
        )
    if box.shape != (k,) or box.dtype.kind not in "iu" or epoch.shape != (k,):
        raise KennenError(f"{path}: box and epoch must hold {k} values each, got {box.shape} and {epoch.shape}")
    singles = {b["box"] for b in boxes if b["kind"] == "single"}
    bad = [int(b) for b in box if int(b) not in singles]
    if bad:
        raise KennenError(f"{path}: box {bad[0]} is not a single model's row of the boxes table (rerun queries)")
    if not np.isfinite(outputs).all() or (outputs > 1e-4).any():
        raise KennenError(f"{path}: outputs must be finite log-probabilities (<= 0)")
    return CheckpointBoxes(outputs, box.astype(np.int64), epoch.astype(np.float32))


def read_boxes(path: Path) -> list[dict[str, Any]]:
    """The black-box table written by the ``queries`` stage, typed and checked (:data:`kennen.schemas.BOXES`)."""
    return read_table(path, BOXES)

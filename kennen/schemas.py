"""One schema per table and JSON file the stages read, and the readers that enforce them.

A table schema names the file's required columns (taken from the writers'
column constants, so the reader and the writer cannot drift apart), its id
column and whether it may have no rows. What each column may hold is declared
once, in :data:`COLUMNS`: Table 1's values for the attribute columns (from
:mod:`kennen.attributes`), non-negative integers for ids and counts, and so on.

Every violation is a :class:`~kennen.errors.KennenError` of one line that names
the file, the line (the header is line 1) or key, and the bad value. Readers
check everything before a stage writes anything, so a bad input never touches
an output.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kennen.attributes import ATTRIBUTES, BY_KEY, KEYS, SAMPLED, n_par_class, parse_value, size_of_split
from kennen.errors import KennenError

# The columns each table is written with (the writers import them from here; this module imports no
# writer, so that a stage depends on the schemas without depending on every module that writes a table).
# A shard's outcome table (data/zoo/shards/shard-N.csv): no wall-clock column (kennen/zoo/store.py).
OUTCOME_COLUMNS = ("model_id", "test_acc", "train_loss", "diverged")
# The sample tables (data/zoo/sample/shard-N.csv), one row per model to train.
SAMPLE_COLUMNS = ("model_id", "shard", "config", "seed", "torch_seed", *KEYS, "n_params")
# The flat zoo table (data/zoo/models.csv), one row per trained model.
TABLE_COLUMNS = (*SAMPLE_COLUMNS, *OUTCOME_COLUMNS[1:])
# The ensembles table (data/zoo/ensembles.csv).
ENSEMBLE_COLUMNS = (
    "ensemble_id", "members", "n_members", "config", *(a.key for a in SAMPLED), "n_par", "ens", "size", "n_params",
)  # fmt: skip
# The black boxes (data/queries/boxes.csv): single models and ensembles, one row per row of outputs.npz.
BOX_COLUMNS = ("box", "kind", "id", "members", "config", *KEYS)
INT_COLUMNS = {"model_id", "shard", "config", "seed", "torch_seed", "n_params", "diverged", "ensemble_id", "n_members"}
FLOAT_COLUMNS = {"test_acc", "train_loss"}

_INT = re.compile(r"-?[0-9]+")


def _show(value: Any) -> str:
    """``value`` for a one-line message: repr, escaped, at most 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _int(text: str) -> int:
    if not _INT.fullmatch(text):
        raise ValueError(f"{_show(text)} is not an integer")
    value = int(text)
    if value < 0:
        raise ValueError(f"{_show(text)} is negative")
    if value >= 1 << 63:
        raise ValueError(f"{_show(text)} does not fit in 64 bits")
    return value


def _seed(text: str) -> int:
    value = _int(text)
    if value >= 1 << 32:
        raise ValueError(f"{_show(text)} is not a 32-bit seed (below 2**32)")
    return value


def _flag(text: str) -> int:
    if text not in ("0", "1"):
        raise ValueError(f"{_show(text)} is not 0 or 1")
    return int(text)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{_show(text)} is not a number") from None


def _accuracy(text: str) -> float:
    value = _float(text)
    if not 0.0 <= value <= 100.0:
        raise ValueError(f"{_show(text)} is not an accuracy within 0..100")
    return value


def _seconds(text: str) -> float:
    value = _float(text)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{_show(text)} is not a duration in seconds")
    return value


def _loss(text: str) -> float:
    value = _float(text)
    if value < 0 or value == math.inf:  # NaN is the loss of a diverged model
        raise ValueError(f"{_show(text)} is not a training loss (>= 0, or nan)")
    return value


def _members(text: str) -> str:
    parts = text.split(";")
    if not all(p.isascii() and p.isdigit() for p in parts) or len(set(parts)) != len(parts):
        raise ValueError(f"{_show(text)} is not a list of distinct model ids separated by ';'")
    return text  # kept as text, as the stages expect it


def _kind(text: str) -> str:
    if text not in ("single", "ensemble"):
        raise ValueError(f"{_show(text)} is not 'single' or 'ensemble'")
    return text


def _attribute(key: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return parse_value(key, text)
        except ValueError:
            allowed = ", ".join(str(int(v) if isinstance(v, bool) else v) for v in BY_KEY[key].values)
            raise ValueError(f"{_show(text)} is not in Table 1 ({allowed})") from None

    return parse


# What each column may hold: a parser from CSV text to the Python value, raising ValueError.
COLUMNS: dict[str, Callable[[str], Any]] = {
    **{c: _int for c in INT_COLUMNS},
    **{c: _seconds for c in FLOAT_COLUMNS},
    "seed": _seed,
    "torch_seed": _seed,
    "box": _int,
    "id": _int,
    "diverged": _flag,
    "test_acc": _accuracy,
    "train_loss": _loss,
    "members": _members,
    "kind": _kind,
    **{k: _attribute(k) for k in KEYS},
}


@dataclass(frozen=True)
class TableSchema:
    """The columns a CSV table must have, its unique id column, and whether it may be empty.

    Attributes:
        what: a short name for messages ("sample table").
        columns: the required columns; any other column is dropped (older zoos have more).
        key: the column whose values are unique (None: no such column).
        may_be_empty: True if a header without rows is a valid table.
        fixed: columns whose value is the same in every row (ens = 0 for single models).
    """

    what: str
    columns: tuple[str, ...]
    key: str | None = None
    may_be_empty: bool = False
    fixed: dict[str, Any] = field(default_factory=dict)


SAMPLE = TableSchema("sample table", SAMPLE_COLUMNS, "model_id", fixed={"ens": False})
MODELS = TableSchema("models table", TABLE_COLUMNS, "model_id", fixed={"ens": False})
OUTCOMES = TableSchema("shard outcome table", OUTCOME_COLUMNS, "model_id")
# A zoo too small for two kept models of one configuration has no ensemble.
ENSEMBLES = TableSchema("ensembles table", ENSEMBLE_COLUMNS, "ensemble_id", may_be_empty=True, fixed={"ens": True})
BOXES = TableSchema("boxes table", BOX_COLUMNS, "box")
# The pipeline's file names, for readers not told which table they read. A per-shard sample table and
# a shard outcome table share the name shard-N.csv; only the sample has a shard column.
BY_NAME: tuple[tuple[str, TableSchema], ...] = (
    ("sample*.csv", SAMPLE),
    ("models.csv", MODELS),
    ("shard-[0-9]*.csv", OUTCOMES),
    ("ensembles.csv", ENSEMBLES),
    ("boxes.csv", BOXES),
)


def schema_for(path: Path, header: list[str]) -> TableSchema:
    """The schema of a table known by its file name (``sample.csv``, ``shard-3.csv``, ...)."""
    for pattern, schema in BY_NAME:
        if path.match(pattern):
            return SAMPLE if schema is OUTCOMES and "shard" in header else schema
    names = ", ".join(pattern for pattern, _ in BY_NAME)
    raise KennenError(f"{path}: not a table name the pipeline writes ({names}), so its columns are unknown")


def read_text(path: Path) -> str:
    """The UTF-8 text of ``path`` (a leading byte-order mark is dropped); unreadable text is a KennenError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KennenError(f"{path}: file not found (run the stage that writes it, or `dvc pull`)") from None
    except OSError as e:
        raise KennenError(f"{path}: cannot read ({e.strerror or e})") from None
    data = data.removeprefix(codecs.BOM_UTF8)  # as spreadsheet programs write UTF-8
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise KennenError(f"{path}: line {line}: not UTF-8 text (byte {data[e.start]:#04x})") from None
    if "\x00" in text:
        raise KennenError(f"{path}: line {text[: text.index(chr(0))].count(chr(10)) + 1}: NUL byte, not text")
    return text


def read_table(path: Path, schema: TableSchema | None = None) -> list[dict[str, Any]]:
    """Read and check a CSV table: header, field counts, every value, unique ids.

    Args:
        path: the table.
        schema: what it must hold; None: the schema for its file name (:func:`schema_for`).

    Returns:
        One dict per row, column -> typed value (ints, floats, Table 1 values; ``members`` stays text).
    """
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, [])
        schema = schema or schema_for(path, header)
        if not text.strip():
            raise KennenError(f"{path}: empty file (every {schema.what} starts with a header line)")
        _check_header(path, schema, header)
        rows = []
        seen: set[Any] = set()
        for fields in reader:
            if not fields:  # a blank line
                continue
            where = f"{path}: line {reader.line_num}"
            if len(fields) != len(header):
                raise KennenError(f"{where}: {len(fields)} fields, the header has {len(header)}")
            row = {}
            for column, value in zip(header, fields, strict=True):
                if column not in schema.columns:
                    continue  # a column the pipeline no longer writes: harmless, and never read
                try:
                    row[column] = COLUMNS.get(column, str)(value)
                except ValueError as e:
                    raise KennenError(f"{where}, column {column}: {e}") from None
            _check_row(where, schema, row, seen)
            rows.append(row)
    except csv.Error as e:
        raise KennenError(f"{path}: line {reader.line_num}: not a CSV table ({e})") from None
    if not rows and not schema.may_be_empty:
        raise KennenError(f"{path}: no rows (every {schema.what} has at least one)")
    return rows


def _check_header(path: Path, schema: TableSchema, header: list[str]) -> None:
    duplicate = sorted({c for c in header if header.count(c) > 1})
    if duplicate:
        raise KennenError(f"{path}: line 1: column {_show(duplicate[0])} appears twice")
    missing = [c for c in schema.columns if c not in header]
    if missing:
        raise KennenError(f"{path}: line 1: no column {_show(missing[0])} (every {schema.what} has one)")


def _check_row(where: str, schema: TableSchema, row: dict[str, Any], seen: set[Any]) -> None:
    """Unique ids, fixed values, and the derived attributes agreeing with what they derive from."""
    if schema.key is not None:
        if row[schema.key] in seen:
            raise KennenError(f"{where}, column {schema.key}: {row[schema.key]} appears twice")
        seen.add(row[schema.key])
    for column, value in schema.fixed.items():
        if row[column] != value:
            raise KennenError(f"{where}, column {column}: {int(row[column])}, expected {int(value)} in every row")
    if schema is BOXES and row["box"] != len(seen) - 1:  # box i is row i of the outputs array
        raise KennenError(f"{where}, column box: {row['box']}, expected {len(seen) - 1} (boxes are numbered by row)")
    if "kind" in row and row["ens"] != (row["kind"] == "ensemble"):
        raise KennenError(f"{where}, column ens: {int(row['ens'])} does not match kind {row['kind']!r}")
    if "split" in row and row["size"] != size_of_split(row["split"]):
        raise KennenError(f"{where}, column size: {row['size']!r} does not match split {row['split']!r}")
    if "n_params" in row and row["n_par"] != n_par_class(max(row["n_params"], 1)):
        raise KennenError(f"{where}, column n_par: {row['n_par']} does not match n_params {row['n_params']}")


def read_json(path: Path, keys: dict[str, Callable[[Any], Any]], what: str) -> dict[str, Any]:
    """Read a JSON object and check that it has exactly ``keys``, each passing its check."""
    text = read_text(path)

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [k for k, _ in pairs]
        for k in names:
            if names.count(k) > 1:
                raise KennenError(f"{path}: key {_show(k)} appears twice")
        return dict(pairs)

    try:
        obj = json.loads(text, object_pairs_hook=no_duplicates)
    except ValueError as e:
        raise KennenError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise KennenError(f"{path}: a {what} is a JSON object, got {type(obj).__name__}")
    for key in keys:
        if key not in obj:
            raise KennenError(f"{path}: no key {_show(key)} (a {what} needs it)")
    for key in obj:
        if key not in keys:
            raise KennenError(f"{path}: unexpected key {_show(key)} in a {what}")
    try:
        return {key: check(obj[key]) for key, check in keys.items()}
    except _BadKey as e:
        raise KennenError(f"{path}: key {e.key!r}: {e.reason}") from None


class _BadKey(Exception):
    def __init__(self, key: str, reason: str) -> None:
        super().__init__(key, reason)
        self.key, self.reason = key, reason


def _ids(key: str) -> Callable[[Any], list[int]]:
    """Check a list of distinct non-negative integer ids (JSON true/false and 1.0 are not ids)."""

    def check(value: Any) -> list[int]:
        if not isinstance(value, list):
            raise _BadKey(key, f"{_show(value)} is not a list of ids")
        for i, v in enumerate(value):
            if type(v) is not int or v < 0:
                raise _BadKey(key, f"item {i + 1}, {_show(v)}, is not an id (a non-negative integer)")
        if len(set(value)) != len(value):
            raise _BadKey(key, "an id appears twice")
        return value

    return check


def _number(key: str, low: float, high: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if type(value) not in (int, float) or not low <= value <= high:
            raise _BadKey(key, f"{_show(value)} is not a number within {low:g}..{high:g}")
        return value

    return check


def _count(key: str) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if type(value) is not int or value < 0:
            raise _BadKey(key, f"{_show(value)} is not a count")
        return value

    return check


# The JSON files, by key: what each key must hold.
KEPT = {"min_acc": _number("min_acc", 0.0, 100.0), "n_models": _count("n_models"), "model_ids": _ids("model_ids")}
SPLIT = {"train": _ids("train"), "test": _ids("test")}


def read_kept(path: Path) -> list[int]:
    """The kept model ids of ``kept.json`` (written by the ``prune`` stage)."""
    kept = read_json(path, KEPT, "kept-ids file")
    if len(kept["model_ids"]) > kept["n_models"]:
        raise KennenError(f"{path}: key 'model_ids': {len(kept['model_ids'])} ids, more than n_models")
    return kept["model_ids"]


def read_split(path: Path) -> dict[str, list[int]]:
    """One split file (``data/splits/<name>.json``): {'train': box ids, 'test': box ids}, disjoint."""
    split = read_json(path, SPLIT, "split file")
    both = sorted(set(split["train"]) & set(split["test"]))
    if both:
        raise KennenError(f"{path}: box {both[0]} is in both train and test")
    return split


def require_known(ids: Iterable[int], known: Iterable[int], path: Path, what: str, source: Path | str) -> None:
    """Every id in ``ids`` (read from ``path``) must be one of ``known`` (read from ``source``).

    Args:
        ids: the ids to check, e.g. kept model ids.
        known: the ids that exist, e.g. the model ids of the models table.
        path: the file the ids come from, for the message.
        what: what an id names ("model", "box").
        source: the file that defines the known ids, for the message.
    """
    known = set(known)
    missing = sorted(set(ids) - known)
    if missing:
        raise KennenError(f"{path}: {what} {missing[0]} is not in {source} ({len(missing)} unknown {what} ids)")


def check_zoo(
    models: list[dict[str, Any]],
    kept: list[int],
    ensembles: list[dict[str, Any]],
    models_path: Path,
    kept_path: Path,
    ensembles_path: Path,
) -> None:
    """The zoo's three files agree: kept ids are models, an ensemble's members are kept models of its config."""
    require_known(kept, (m["model_id"] for m in models), kept_path, "model", models_path)
    config = {m["model_id"]: m["config"] for m in models}
    for line, e in enumerate(ensembles, start=2):
        members = [int(m) for m in e["members"].split(";")]
        unknown = sorted(set(members) - set(kept))
        if unknown:
            raise KennenError(
                f"{ensembles_path}: line {line}, column members: model {unknown[0]} is not in {kept_path}"
            )
        other = [m for m in members if config[m] != e["config"]]
        if other:
            raise KennenError(
                f"{ensembles_path}: line {line}, column config: {e['config']}, but member {other[0]} has config "
                f"{config[other[0]]} in {models_path}"
            )
        if len(members) != e["n_members"]:
            raise KennenError(
                f"{ensembles_path}: line {line}, column n_members: {e['n_members']}, members lists {len(members)}"
            )


# --- the stored outputs (data/queries/outputs.npz) ------------------------------------------------------------

MNIST_TEST = 10_000  # the query images are drawn from the MNIST test set
# float32 log-softmax is normalised to about 1e-6; 1e-3 leaves room for any summation order.
LOG_PROB_TOL = 1e-3


def _first(mask: np.ndarray) -> tuple[int, ...]:
    """The index of the first True of ``mask`` (C order), as a tuple of ints."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


def check_outputs(
    path: Path,
    outputs: np.ndarray,
    query_index: np.ndarray,
    boxes: list[dict[str, Any]] | None = None,
    n_images: int = MNIST_TEST,
) -> None:
    """The values of ``outputs.npz``: finite log-probabilities, valid and distinct query indices.

    A single model's row [Q, 10] is a log-softmax: every value <= 0 and the log-sum-exp over the
    classes 0. An ensemble's row is the mean of its members' log-softmax outputs (paper §2), whose
    log-sum-exp is <= 0 (the geometric mean of probabilities sums to at most 1); with ``boxes``, an
    ensemble row must be that mean of its members' rows, and without, every row only <= 0.

    Args:
        path: the file, for messages.
        outputs: [N, Q, 10] float32 (shape already checked).
        query_index: [Q] integers (shape already checked).
        boxes: the boxes table (row i: box i), or None.
        n_images: the number of candidate query images (the MNIST test set).
    """
    bad = query_index < 0
    if bad.any():
        i = _first(bad)[0]
        raise KennenError(f"{path}: query_index[{i}] = {query_index[i]} is negative")
    bad = query_index >= n_images
    if bad.any():
        i = _first(bad)[0]
        raise KennenError(f"{path}: query_index[{i}] = {query_index[i]} is not below the {n_images} test images")
    _, first, counts = np.unique(query_index, return_index=True, return_counts=True)
    if (counts > 1).any():
        value = int(query_index[first[counts > 1].min()])
        i, j = np.flatnonzero(query_index == value)[:2]
        raise KennenError(f"{path}: query_index[{j}] = {value} repeats query_index[{i}] (queries are distinct)")
    bad = ~np.isfinite(outputs)
    if bad.any():
        b, q, c = _first(bad)
        raise KennenError(f"{path}: outputs[{b}, {q}, {c}] = {outputs[b, q, c]} is not finite")
    bad = outputs > LOG_PROB_TOL
    if bad.any():
        b, q, c = _first(bad)
        raise KennenError(f"{path}: outputs[{b}, {q}, {c}] = {outputs[b, q, c]:.4g} > 0 is not a log-probability")
    peak = outputs.max(axis=2, keepdims=True)
    lse = (peak + np.log(np.exp(outputs - peak).sum(axis=2, keepdims=True)))[..., 0]  # [N, Q]
    single = np.ones(len(outputs), dtype=bool)
    if boxes is not None:
        single = np.array([b["kind"] == "single" for b in boxes], dtype=bool)
    bad = (np.abs(lse) > LOG_PROB_TOL) & single[:, None] if boxes is not None else lse > LOG_PROB_TOL
    if bad.any():
        b, q = _first(bad)
        raise KennenError(
            f"{path}: outputs[{b}, {q}] sums to probability {np.exp(lse[b, q]):.4g}, not 1 (not log-probabilities)"
        )
    if boxes is not None:
        _check_ensemble_rows(path, outputs, boxes)


def _check_ensemble_rows(path: Path, outputs: np.ndarray, boxes: list[dict[str, Any]]) -> None:
    """Each ensemble's row is the mean of its members' rows (the members are single boxes by model id)."""
    row_of = {b["id"]: b["box"] for b in boxes if b["kind"] == "single"}
    for b in boxes:
        if b["kind"] != "ensemble":
            continue
        members = [int(m) for m in b["members"].split(";")]
        missing = [m for m in members if m not in row_of]
        if missing:
            raise KennenError(f"{path}: box {b['box']} is an ensemble of model {missing[0]}, which is not a box")
        mean = outputs[[row_of[m] for m in members]].mean(axis=0)
        gap = np.abs(outputs[b["box"]] - mean)
        if (gap > LOG_PROB_TOL).any():
            q, c = _first(gap > LOG_PROB_TOL)
            raise KennenError(
                f"{path}: outputs[{b['box']}, {q}, {c}] = {outputs[b['box'], q, c]:.4g}, but box {b['box']} is "
                f"the ensemble {b['members']} whose mean there is {mean[q, c]:.4g}"
            )


# --- trained metamodels (models/<name>.safetensors and .json) -------------------------------------------------

METHODS = ("kennen-o", "kennen-io", "kennen-i")
HIDDEN_MAX = 10_000  # kennen_o.hidden's bound (kennen/metamodel/kennen_o.py)


class _BadMetamodel(Exception):
    pass


def check_metamodel(stem: Path, tensors: dict[str, Any], meta: Any) -> None:
    """A metamodel's tensors agree with its description, and every number in them is usable.

    The method's tensors are all there with the shapes its ``hidden`` width, Table 1's heads and its
    query images [Q, 1, 28, 28] imply; every tensor is finite; query pixels are in [0, 1];
    temperatures are finite and > 0; the abstention and out-of-zoo thresholds are finite.

    Args:
        stem: the metamodel's path without suffix (``models/kennen_o``), for messages.
        tensors: name -> torch tensor, from ``stem.safetensors``.
        meta: the parsed ``stem.json``.
    """
    try:
        _check_metamodel(tensors, meta)
    except _BadMetamodel as e:
        raise KennenError(f"{stem}: not a metamodel this version can read ({e}); run `dvc repro {stem.name}`") from None


def _check_metamodel(tensors: dict[str, Any], meta: Any) -> None:
    if not isinstance(meta, dict):
        raise _BadMetamodel(f"its description is a JSON {type(meta).__name__}, not an object")
    method = meta.get("method")
    if method not in METHODS:
        raise _BadMetamodel(f"method {_show(method)} is not one of {', '.join(METHODS)}")
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(t.isfinite().all()):
            flat = int((~t.isfinite()).flatten().int().argmax())
            raise _BadMetamodel(f"tensor {name!r} has {float(t.flatten()[flat])} at flat index {flat}")

    def shape(name: str, *dims: int | None) -> Any:
        if name not in tensors:
            raise _BadMetamodel(f"no tensor {name!r}")
        t = tensors[name]
        if t.dim() != len(dims) or any(d is not None and d != s for d, s in zip(dims, t.shape, strict=True)):
            want = ", ".join("?" if d is None else str(d) for d in dims)
            raise _BadMetamodel(f"tensor {name!r} is {list(t.shape)}, expected [{want}]")
        return t

    def pixels(name: str) -> int:
        q = shape(name, None, 1, 28, 28)
        if len(q) == 0 or not q.is_floating_point() or bool(((q < 0) | (q > 1)).any()):
            raise _BadMetamodel(f"tensor {name!r} is not one or more images of pixels in [0, 1]")
        return len(q)

    if method == "kennen-i":
        target = meta.get("target")
        if not isinstance(target, str) or f"queries.{target}" not in tensors:
            raise _BadMetamodel(f"target {_show(target)} has no tensor 'queries.<target>'")
        pixels(f"queries.{target}")
        fallback = shape(f"fallback.{target}", len(ATTRIBUTES))
        for i, a in enumerate(ATTRIBUTES):
            if fallback.is_floating_point() or not 0 <= int(fallback[i]) < a.n_classes:
                raise _BadMetamodel(f"fallback.{target}[{i}] is not a value index of {a.key}")
        width = None
    else:
        hidden = meta.get("hidden")
        if type(hidden) is not int or not 1 <= hidden <= HIDDEN_MAX:
            raise _BadMetamodel(f"hidden {_show(hidden)} is not a width within 1..{HIDDEN_MAX:,}")
        width = 10 * pixels("queries")  # every encoding gives 10 values per query
        body = {"mean": (width,), "std": (width,), "body.0.weight": (hidden, width), "body.0.bias": (hidden,)}
        body |= {"body.2.weight": (hidden, hidden), "body.2.bias": (hidden,)}
        for name, dims in body.items():
            shape(f"mlp.{name}", *dims)
        if bool((tensors["mlp.std"] <= 0).any()):
            raise _BadMetamodel("tensor 'mlp.std' has a value <= 0")
        for a in ATTRIBUTES:
            shape(f"mlp.heads.{a.key}.weight", a.n_classes, hidden)
            shape(f"mlp.heads.{a.key}.bias", a.n_classes)
        expected = set(body)
        expected |= {f"heads.{a.key}.{p}" for a in ATTRIBUTES for p in ("weight", "bias")}
        extra = sorted(k for k in tensors if k.startswith("mlp.") and k[4:] not in expected)
        if extra:
            raise _BadMetamodel(f"unexpected tensor {extra[0]!r}")
    if "calibration.temperature" in tensors:
        temperature = shape("calibration.temperature", len(ATTRIBUTES))
        if bool((temperature <= 0).any()):
            i = int((temperature <= 0).int().argmax())
            raise _BadMetamodel(f"temperature {float(temperature[i])} of {ATTRIBUTES[i].key} is not > 0")
    if "calibration.table" in tensors:
        table = shape("calibration.table", len(ATTRIBUTES), 10)
        if bool(((table < 0) | (table > 1)).any()):
            raise _BadMetamodel("tensor 'calibration.table' has a probability outside [0, 1]")
    if "ood.reference" in tensors:
        shape("ood.reference", None, width)
    for block, key, low, high in (("calibration", "min_confidence", 0.0, 1.0), ("ood", "threshold", 0.0, math.inf)):
        value = meta.get(block, {}).get(key) if isinstance(meta.get(block, {}), dict) else "not an object"
        if value is not None and not (type(value) in (int, float) and math.isfinite(value) and low <= value <= high):
            raise _BadMetamodel(f"{block}.{key} {_show(value)} is not a finite number within {low:g}..{high:g}")
    accuracy = meta.get("test_accuracy", {})
    if not isinstance(accuracy, dict) or any(
        type(v) not in (int, float) or not math.isfinite(v) for v in accuracy.values()
    ):
        raise _BadMetamodel("test_accuracy is not an object of finite numbers")


# --- the zoo's weights (data/zoo/shards/shard-N.safetensors) --------------------------------------------------


def box_members(boxes: list[dict[str, Any]]) -> list[int]:
    """The model ids of the boxes' members (every single model and every ensemble member), sorted."""
    return sorted({int(m) for b in boxes for m in str(b["members"]).split(";")})


def check_shards(shards: Path, models: list[dict[str, Any]], model_ids: Iterable[int], models_path: Path) -> None:
    """Each listed model's shard exists, opens as safetensors, and holds that model's tensors.

    A model's tensors are ``<model_id>/<parameter>`` with the names and shapes of the network its row of
    the models table describes (built on the meta device: no memory, no arithmetic). Only the
    headers are read, not the weights.

    Args:
        shards: the folder of shard files.
        models: the models table's rows.
        model_ids: the models whose weights a stage reads (kept models, or the members of boxes).
        models_path: the models table, for messages.
    """
    import torch
    from safetensors import SafetensorError, safe_open

    from kennen.zoo.net import MnistNet, NetConfig  # imported here: the zoo's network imports torch

    by_id = {m["model_id"]: m for m in models}
    by_shard: dict[int, list[int]] = {}
    for i in sorted(set(model_ids)):
        if i not in by_id:
            raise KennenError(f"{models_path}: model {i} is not in the table, but its weights are needed")
        by_shard.setdefault(by_id[i]["shard"], []).append(i)
    expected: dict[NetConfig, dict[str, list[int]]] = {}
    for shard, ids in sorted(by_shard.items()):
        path = shards / f"shard-{shard}.safetensors"
        if not path.is_file():
            raise KennenError(f"{path}: shard file not found (run `dvc repro train_zoo` or `dvc pull`)")
        try:
            with safe_open(str(path), framework="pt") as f:
                found = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
        except (SafetensorError, OSError, ValueError) as e:
            raise KennenError(f"{path}: not a safetensors file ({str(e).splitlines()[0][:120]})") from None
        for i in ids:
            cfg = NetConfig.of(by_id[i])
            if cfg not in expected:
                with torch.device("meta"):
                    expected[cfg] = {k: list(v.shape) for k, v in MnistNet(cfg).state_dict().items()}
            for name, shape in expected[cfg].items():
                key = f"{i}/{name}"
                if key not in found:
                    raise KennenError(f"{path}: no tensor {key!r} (model {i} of {models_path} is in this shard)")
                if found[key] != shape:
                    raise KennenError(f"{path}: tensor {key!r} is {found[key]}, model {i}'s network has {shape}")


# --- the metrics files later stages read (reports/metrics/*.json) ---------------------------------------------

_METAMODEL = tuple(
    [(key, "number") for key in ("acc.mean", "cv.acc.mean", *(f"{cv}acc.{k}" for cv in ("", "cv.") for k in KEYS))]
    + [(key, "count") for key in ("cv.n_boxes", "cv.n_configs", "cv.k")]
)
# Per kind (the stage that writes it), the keys later stages read and what each holds.
METRICS: dict[str, tuple[tuple[str, str], ...]] = {
    "kennen_o": _METAMODEL,
    "kennen_i": _METAMODEL,
    "kennen_io": _METAMODEL,
    "zoo": (("n_final", "count"),),
    "imagenet_probe": (
        ("mode", "text"),
        ("n_models", "count"),
        ("n_architectures", "count"),
        ("folds", "count"),
        ("draws", "count"),
        ("chance", "number"),
    ),
    "attack": (
        ("attack", "object"),
        ("table4", "object"),
        ("probe", "object"),
        ("label", "text"),
        ("mode", "text"),
        ("targets", "count"),
        ("images", "count"),
        ("table4_diagonal_mean", "number"),
    ),
    "defences": (
        ("utility_queries", "count"),
        ("n_queries", "count"),
        ("n_folds", "count"),
        ("n_boxes", "count"),
        ("n_configs", "count"),
        ("chance", "number"),
        ("whitebox", "object"),
    ),
    "transfer": (),
    "learning_curve": (),
    "levers": (("reference", "text"), ("n_boxes", "count"), ("n_configs", "count"), ("n_folds", "count")),
}
_HOLDS = {
    "number": lambda v: type(v) in (int, float),
    "count": lambda v: type(v) is int and v >= 0,
    "text": lambda v: isinstance(v, str),
    "object": lambda v: isinstance(v, dict),
}
_NAMES = {"number": "a number", "count": "a count", "text": "text", "object": "a JSON object"}


def read_metrics(path: Path, kind: str) -> dict[str, Any]:
    """A stage's metrics JSON, checked: an object, NaN/Infinity refused, every value a number, text, true/false,
    null, or a list or object of those, and the keys later stages read (:data:`METRICS`) present and typed.

    Args:
        path: the file.
        kind: the stage that wrote it (a key of :data:`METRICS`).
    """
    from kennen.io import read_json as read_any  # the one JSON reader: it refuses NaN and Infinity

    obj = read_any(path)
    if not isinstance(obj, dict):
        raise KennenError(f"{path}: a {kind} metrics file is a JSON object, got {type(obj).__name__}")
    for key, value in obj.items():
        bad = _bad_value(value)
        if bad is not None:
            raise KennenError(f"{path}: key {_show(key)}: {bad}")
    for key, holds in METRICS[kind]:
        if key not in obj:
            raise KennenError(f"{path}: no key {_show(key)} (rerun the {kind} stage)")
        if not _HOLDS[holds](obj[key]):
            raise KennenError(f"{path}: key {_show(key)}: {_show(obj[key])} is not {_NAMES[holds]}")
    return obj


def _bad_value(value: Any, depth: int = 0) -> str | None:
    """Why ``value`` cannot be in a metrics file, or None."""
    if value is None or isinstance(value, bool | int | float | str):
        return None
    if depth < 4 and isinstance(value, list | dict):
        for item in value.values() if isinstance(value, dict) else value:
            bad = _bad_value(item, depth + 1)
            if bad is not None:
                return bad
        return None
    return "nested deeper than a metrics file is"
